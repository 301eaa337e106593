"""SIGMA: one conditional flow-matching model for every signal region.

A vector field v(z, t | m) (a ResNet over z and frequency embeddings of m and t) is trained
once, by conditional flow matching with straight paths z_t = (1 - t) z_0 + t z_1 from a standard
normal z_0 to the preprocessed data z_1 (target velocity z_1 - z_0; Lipman et al. 2023), on all
events of the scan. For a signal region [m_lo, m_hi] the background template is generated with
the field *interpolated* from anchor masses just outside the region on either side::

    v_SR(z, t | m) = (1 - a) v(z, t | m_L) + a v(z, t | m_R),   a = (m - m_L) / (m_R - m_L)

(``interpolation="field"``), or in the conditioning: the frequency embedding of m is replaced by
the same mix of the anchors' embeddings, (1 - a) e(m_L) + a e(m_R), and the field evaluated
once there (``interpolation="context"``, half the network passes). Either way the model's view
of the region itself, where a signal would sit, is never used. Generating a new region's
template costs one ODE integration, not a new training: that is SIGMA's point.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from twinflow.anomaly.flows import fit_subsets
from twinflow.anomaly.persistence import SavedDensityModel
from twinflow.anomaly.preprocessing import LogitScaler, MassScaler
from twinflow.core.device import select_device
from twinflow.core.progress import progress
from twinflow.core.seeding import numpy_rng

SIGMA_KIND = "anomaly-sigma"
INTERPOLATIONS = ("field", "context")

# Events per network pass when a template is generated. On a CPU each hidden layer of 4096
# events stays in the core's L2 cache; at 65536 events every layer streams through memory,
# and the same template took 1.4 (width 64, the default) to 2.5 (width 128) times the CPU time
# (one thread, 160k events; `benchmarks/anomaly_cost.py` times both). A GPU wants the large
# batch.
CPU_CHUNK = 4096
GPU_CHUNK = 65536


class FrequencyEmbedding(nn.Module):
    """[s, sin(2^k pi s), cos(2^k pi s)] for k = 0 .. n - 1, for a scalar s of order one."""

    def __init__(self, n_frequencies: int):
        super().__init__()
        self.register_buffer(
            "frequencies", math.pi * 2.0 ** torch.arange(n_frequencies, dtype=torch.float32)
        )

    @property
    def dim(self) -> int:
        return 1 + 2 * len(self.frequencies)

    def forward(self, s: torch.Tensor) -> torch.Tensor:  # [B, 1] -> [B, 1 + 2K]
        phase = s * self.frequencies
        return torch.cat([s, torch.sin(phase), torch.cos(phase)], dim=-1)


class ResidualBlock(nn.Module):
    def __init__(self, width: int, context: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.layers = nn.Sequential(
            nn.Linear(width + context, width), nn.SiLU(), nn.Linear(width, width)
        )

    def forward(self, h: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return h + self.layers(torch.cat([self.norm(h), ctx], dim=-1))


class VectorField(nn.Module):
    """ResNet v(z, t | m); m and t enter through frequency embeddings at every block."""

    def __init__(self, features: int = 4, width: int = 128, blocks: int = 3, frequencies: int = 6):
        super().__init__()
        self.embed = FrequencyEmbedding(frequencies)
        ctx = 2 * self.embed.dim
        self.inp = nn.Linear(features + ctx, width)
        self.blocks = nn.ModuleList(ResidualBlock(width, ctx) for _ in range(blocks))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(width, features))

    def forward(self, z: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # z: [B, D], t: [B, 1] in [0, 1], c: [B, 1] the rescaled mass in [-1, 1]
        return self.forward_embedded(z, t, self.embed(c))

    def forward_embedded(
        self, z: torch.Tensor, t: torch.Tensor, mass_embedding: torch.Tensor
    ) -> torch.Tensor:
        """The field with the mass given by its embedding [B, 1 + 2K] (context interpolation)."""
        ctx = torch.cat([self.embed(2 * t - 1), mass_embedding], dim=-1)
        h = self.inp(torch.cat([z, ctx], dim=-1))
        for block in self.blocks:
            h = block(h, ctx)
        return self.out(h)

    def at_fixed_mass(self, mass_embedding: torch.Tensor):
        """The field v(z, t) for events whose mass embedding [B, 1 + 2K] stays fixed.

        In an ODE integration only z and t move, and t is the same for every event, so each
        layer's input splits into the hidden part (a product per call), the mass part (one
        product, computed here once) and the time part (one row per call). The values are
        ``forward_embedded``'s; a template at the default width takes 1.2 times less CPU time
        than with the concatenated context (one thread, 160k events).
        """
        k = self.embed.dim
        layers = [self.inp] + [block.layers[0] for block in self.blocks]
        w_hidden = [layer.weight[:, : -2 * k].T for layer in layers]
        w_time = [layer.weight[:, -2 * k : -k].T for layer in layers]
        mass_bias = [
            torch.addmm(layer.bias, mass_embedding, layer.weight[:, -k:].T) for layer in layers
        ]

        def field(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t_embedding = self.embed(2 * t[:1] - 1)  # [1, 1 + 2K]: one time for all events
            bias = [b + t_embedding @ w for b, w in zip(mass_bias, w_time)]
            h = torch.addmm(bias[0], z, w_hidden[0])
            for block, b, w in zip(self.blocks, bias[1:], w_hidden[1:]):
                h = h + block.layers[2](block.layers[1](torch.addmm(b, block.norm(h), w)))
            return self.out(h)

        return field


class FlowMatchingModel(SavedDensityModel):
    """Conditional flow-matching density model with ``fit(x, m)`` and ``sample(n, m)``.

    ``sample_interpolated(n, m, m_left, m_right)`` draws from the field interpolated between two
    anchor masses (the SIGMA background template).
    """

    KIND = SIGMA_KIND

    def __init__(
        self,
        *,
        features: int = 4,
        width: int = 128,
        blocks: int = 3,
        frequencies: int = 6,
        epochs: int = 20,
        batch_size: int = 1024,
        learning_rate: float = 1e-3,
        max_events: int = 0,
        validation_fraction: float = 0.1,
        ode_steps: int = 20,
        solver: str = "midpoint",
        seed: int = 0,
        device: str = "auto",
    ):
        self.settings = dict(
            features=features,
            width=width,
            blocks=blocks,
            frequencies=frequencies,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_events=max_events,
            validation_fraction=validation_fraction,
            ode_steps=ode_steps,
            solver=solver,
            seed=seed,
            device=device,
        )
        self.device = select_device(device)
        torch.manual_seed(seed)
        self.net = VectorField(features, width, blocks, frequencies).to(self.device)
        self.scaler = LogitScaler()
        self.mass = MassScaler()
        self.history: list[dict] = []
        self.fit_seconds = 0.0

    def _loss(
        self, z1: torch.Tensor, c: torch.Tensor, gen: torch.Generator | None = None
    ) -> torch.Tensor:
        z0 = torch.randn(z1.shape, generator=gen, device="cpu").to(z1)
        t = torch.rand((len(z1), 1), generator=gen, device="cpu").to(z1)
        zt = (1 - t) * z0 + t * z1
        return ((self.net(zt, t, c) - (z1 - z0)) ** 2).sum(dim=1).mean()

    def fit(
        self,
        x: np.ndarray,
        m: np.ndarray,
        x_val: np.ndarray | None = None,
        m_val: np.ndarray | None = None,
    ) -> FlowMatchingModel:
        s = self.settings
        start = time.perf_counter()
        x, m, x_val, m_val = fit_subsets(x, m, x_val, m_val, s, numpy_rng(s["seed"], "sigma-fit"))
        self.scaler.fit(x)
        self.mass.fit(m)
        z = self.scaler.transform(x)[0].float().to(self.device)
        c = self.mass(m).to(self.device)
        z_val = self.scaler.transform(x_val)[0].float().to(self.device)
        c_val = self.mass(m_val).to(self.device)
        opt = torch.optim.AdamW(self.net.parameters(), lr=s["learning_rate"])
        steps = max(1, int(np.ceil(len(z) / s["batch_size"])))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s["epochs"] * steps)
        gen = torch.Generator().manual_seed(s["seed"])
        val_gen_seed = s["seed"] + 1
        best, best_loss = copy.deepcopy(self.net.state_dict()), float("inf")
        bar = progress(range(s["epochs"]), desc="train SIGMA flow matching", unit="epoch")
        for epoch in bar:
            self.net.train()
            order = torch.randperm(len(z), generator=gen).to(self.device)
            total = 0.0
            for i in range(steps):
                idx = order[i * s["batch_size"] : (i + 1) * s["batch_size"]]
                loss = self._loss(z[idx], c[idx], gen)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
            self.net.eval()
            with torch.no_grad():  # fixed noise for the validation loss, so epochs compare
                val_loss = float(
                    self._loss(z_val, c_val, torch.Generator().manual_seed(val_gen_seed))
                )
            self.history.append(
                {"epoch": epoch, "train_loss": total / len(z), "val_loss": val_loss}
            )
            bar.set_postfix(train=f"{total / len(z):.3f}", val=f"{val_loss:.3f}")
            if val_loss < best_loss:
                best, best_loss = copy.deepcopy(self.net.state_dict()), val_loss
        self.net.load_state_dict(best)
        self.net.eval()
        self.fit_seconds = time.perf_counter() - start
        return self

    @torch.no_grad()
    def _integrate(self, field, z: torch.Tensor) -> torch.Tensor:
        steps, solver = self.settings["ode_steps"], self.settings["solver"]
        dt = 1.0 / steps
        for k in range(steps):
            t = torch.full((len(z), 1), k * dt, device=z.device)
            if solver == "euler":
                z = z + dt * field(z, t)
            elif solver == "midpoint":
                z = z + dt * field(z + 0.5 * dt * field(z, t), t + 0.5 * dt)
            else:  # classical Runge-Kutta
                k1 = field(z, t)
                k2 = field(z + 0.5 * dt * k1, t + 0.5 * dt)
                k3 = field(z + 0.5 * dt * k2, t + 0.5 * dt)
                k4 = field(z + dt * k3, t + dt)
                z = z + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return z

    def _chunk(self, chunk: int | None) -> int:
        if chunk is not None:
            return chunk
        return CPU_CHUNK if self.device.type == "cpu" else GPU_CHUNK

    def _start_points(self, n: int, seed: int) -> torch.Tensor:
        """The ODE's standard-normal start points, drawn at once so that the template does
        not depend on how it is chunked."""
        gen = torch.Generator().manual_seed(seed)
        return torch.randn((n, self.settings["features"]), generator=gen)

    @torch.no_grad()
    def sample_interpolated(
        self,
        m: np.ndarray,
        m_left: float,
        m_right: float,
        seed: int = 0,
        chunk: int | None = None,
        interpolation: str = "field",
    ) -> np.ndarray:
        """Return one sample of x per mass in ``m`` from the model interpolated between anchors.

        ``interpolation``: ``"field"`` mixes the two anchors' vector fields, ``"context"`` mixes
        their mass embeddings and evaluates the field once. ``chunk`` (events per network pass)
        changes only the speed; by default it suits the device.
        """
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {interpolation!r}: choose one of {INTERPOLATIONS}")
        self.net.eval()
        m = np.asarray(m, dtype=np.float64)
        alpha_all = torch.as_tensor(
            (m - m_left) / (m_right - m_left), dtype=torch.float32
        ).reshape(-1, 1)
        z_start = self._start_points(len(m), seed)
        chunk = self._chunk(chunk)
        parts = []
        for i in range(0, len(m), chunk):
            alpha = alpha_all[i : i + chunk].to(self.device)
            n = len(alpha)
            c = torch.cat([self.mass(np.full(n, m_left)), self.mass(np.full(n, m_right))]).to(
                self.device
            )

            e = self.net.embed(c)
            if interpolation == "field":
                both = self.net.at_fixed_mass(e)

                def field(z, t, alpha=alpha, both=both, n=n):
                    v = both(torch.cat([z, z]), torch.cat([t, t]))  # both anchors at once
                    return (1 - alpha) * v[:n] + alpha * v[n:]

            else:  # one field at the mixed embedding [n, 1 + 2K]
                field = self.net.at_fixed_mass((1 - alpha) * e[:n] + alpha * e[n:])

            z0 = z_start[i : i + chunk].to(self.device)
            parts.append(self.scaler.inverse(self._integrate(field, z0).double().cpu()))
        return torch.cat(parts).numpy()

    @torch.no_grad()
    def sample(
        self, n: int, m: np.ndarray | float, seed: int = 0, chunk: int | None = None
    ) -> np.ndarray:
        """Return n samples of x [n, D] conditioned on m (no interpolation)."""
        self.net.eval()
        m = np.broadcast_to(np.asarray(m, dtype=np.float64), (n,))
        z_start = self._start_points(n, seed)
        chunk = self._chunk(chunk)
        parts = []
        for i in range(0, n, chunk):
            c = self.mass(m[i : i + chunk]).to(self.device)
            z0 = z_start[i : i + chunk].to(self.device)
            field = self.net.at_fixed_mass(self.net.embed(c))
            parts.append(self.scaler.inverse(self._integrate(field, z0).double().cpu()))
        return torch.cat(parts).numpy()


def sigma_from_settings(
    settings: Mapping, *, seed: int, device: str = "auto"
) -> FlowMatchingModel:
    """Build a :class:`FlowMatchingModel` from an ``anomaly.sigma`` settings section."""
    return FlowMatchingModel(
        width=settings["width"],
        blocks=settings["blocks"],
        frequencies=settings["frequencies"],
        epochs=settings["epochs"],
        batch_size=settings["batch-size"],
        learning_rate=settings["learning-rate"],
        max_events=settings["max-events"],
        validation_fraction=settings["validation-fraction"],
        ode_steps=settings["ode-steps"],
        solver=settings["solver"],
        seed=seed,
        device=device,
    )
