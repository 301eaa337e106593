"""Conditional normalizing flows p(x | m) for the density-based methods (zuko neural spline flows).

:class:`ConditionalFlow` is a density estimator with the scikit-learn-like interface every
generative piece of the anomaly branch shares::

    flow = ConditionalFlow(**settings).fit(x, m, x_val, m_val)
    flow.log_prob(x, m)    # [N] log density of the physical features (log-Jacobian included)
    flow.sample(n, m)      # [n, D] features, m: [n] masses (or one mass for all)

Features go through :class:`~twinflow.anomaly.preprocessing.LogitScaler` (fitted on the
training data); the flow models the preprocessed features, conditioned on a rescaled m.
Training keeps the state with the best validation loss (early stopping).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import zuko

from twinflow.anomaly.persistence import SavedDensityModel
from twinflow.anomaly.preprocessing import LogitScaler, MassScaler
from twinflow.core.checkpoint import EarlyStopping
from twinflow.core.device import select_device
from twinflow.core.progress import progress
from twinflow.core.seeding import numpy_rng

FLOW_KIND = "anomaly-flow"


def train_validation_split(
    n: int, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return (train, validation) index arrays, the validation part a ``fraction`` of ``n``."""
    order = rng.permutation(n)
    n_val = int(round(fraction * n))
    return order[n_val:], order[:n_val]


def fit_subsets(
    x: np.ndarray,
    m: np.ndarray,
    x_val: np.ndarray | None,
    m_val: np.ndarray | None,
    settings: Mapping,
    rng: np.random.Generator,
) -> tuple[np.ndarray, ...]:
    """Return (x, m, x_val, m_val) a density model trains and validates on.

    Without a validation set, a ``validation_fraction`` of (x, m) is split off; the training
    part is then subsampled to ``max_events`` (0: all).
    """
    if x_val is None:
        train, val = train_validation_split(len(x), settings["validation_fraction"], rng)
        x, m, x_val, m_val = x[train], m[train], x[val], m[val]
    if settings["max_events"] and len(x) > settings["max_events"]:
        keep = rng.choice(len(x), settings["max_events"], replace=False)
        x, m = x[keep], m[keep]
    return x, m, x_val, m_val


class ConditionalFlow(SavedDensityModel):
    """A neural spline flow for p(x | m) (or p(x) with ``conditional=False``).

    Arguments: ``transforms`` (autoregressive spline transforms), ``hidden`` (hidden layer
    widths), ``bins`` (spline bins), ``epochs``, ``batch_size``, ``learning_rate``,
    ``weight_decay``, ``patience`` (epochs without validation improvement before stopping),
    ``validation_fraction`` (split off the training data when no validation set is given),
    ``max_events`` (random subset of the training data, 0 = all), ``seed``, ``device``.
    """

    KIND = FLOW_KIND

    def __init__(
        self,
        *,
        features: int = 4,
        conditional: bool = True,
        transforms: int = 4,
        hidden: Sequence[int] = (64, 64),
        bins: int = 8,
        epochs: int = 20,
        batch_size: int = 512,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int = 5,
        validation_fraction: float = 0.2,
        max_events: int = 0,
        seed: int = 0,
        device: str = "auto",
        name: str = "flow",
    ):
        self.settings = dict(
            features=features,
            conditional=conditional,
            transforms=transforms,
            hidden=list(hidden),
            bins=bins,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            patience=patience,
            validation_fraction=validation_fraction,
            max_events=max_events,
            seed=seed,
            device=device,
            name=name,
        )
        self.device = select_device(device)
        torch.manual_seed(seed)
        self.net = zuko.flows.NSF(
            features=features,
            context=1 if conditional else 0,
            transforms=transforms,
            hidden_features=list(hidden),
            bins=bins,
        ).to(self.device)
        self.scaler = LogitScaler()
        self.mass = MassScaler()
        self.history: list[dict] = []
        self.fit_seconds = 0.0

    # -- torch-level pieces (used by R-ANODE, which trains through them) -----------------------
    def distribution(self, m: torch.Tensor | None):
        return self.net(m) if self.settings["conditional"] else self.net()

    def log_prob_tensor(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """log p_z(z | c) on the device; z, c already preprocessed."""
        return self.distribution(c).log_prob(z)

    def preprocess(
        self, x: np.ndarray, m: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Return (z, c, log-Jacobian) as float32 tensors on the device."""
        z, log_det = self.scaler.transform(np.asarray(x, dtype=np.float64))
        c = self.mass(m).to(self.device) if self.settings["conditional"] else None
        return z.float().to(self.device), c, log_det.float().to(self.device)

    # -- the estimator interface ---------------------------------------------------------------
    def fit(
        self,
        x: np.ndarray,
        m: np.ndarray,
        x_val: np.ndarray | None = None,
        m_val: np.ndarray | None = None,
    ) -> ConditionalFlow:
        """Train on (x, m); validate on (x_val, m_val) or on a split of the training data."""
        s = self.settings
        start = time.perf_counter()
        x, m, x_val, m_val = fit_subsets(
            x, m, x_val, m_val, s, numpy_rng(s["seed"], "flow-fit", s["name"])
        )
        self.scaler.fit(x)
        self.mass.fit(m)
        z, c, _ = self.preprocess(x, m)
        z_val, c_val, _ = self.preprocess(x_val, m_val)
        opt = torch.optim.AdamW(
            self.net.parameters(), lr=s["learning_rate"], weight_decay=s["weight_decay"]
        )
        steps_per_epoch = max(1, int(np.ceil(len(z) / s["batch_size"])))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=s["epochs"] * steps_per_epoch
        )
        stopper = EarlyStopping(s["patience"])
        best = copy.deepcopy(self.net.state_dict())
        gen = torch.Generator().manual_seed(s["seed"])
        bar = progress(range(s["epochs"]), desc=f"train {s['name']}", unit="epoch")
        for epoch in bar:
            self.net.train()
            order = torch.randperm(len(z), generator=gen).to(self.device)
            total = 0.0
            for i in range(steps_per_epoch):
                idx = order[i * s["batch_size"] : (i + 1) * s["batch_size"]]
                loss = -self.log_prob_tensor(z[idx], None if c is None else c[idx]).mean()
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
            val_loss = self._mean_nll(z_val, c_val)
            self.history.append(
                {"epoch": epoch, "train_loss": total / len(z), "val_loss": val_loss}
            )
            bar.set_postfix(train=f"{total / len(z):.3f}", val=f"{val_loss:.3f}")
            stop = stopper.step(val_loss)
            if stopper.improved:
                best = copy.deepcopy(self.net.state_dict())
            if stop:
                break
        self.net.load_state_dict(best)
        self.net.eval()
        self.fit_seconds = time.perf_counter() - start
        return self

    @torch.no_grad()
    def _mean_nll(self, z: torch.Tensor, c: torch.Tensor | None, chunk: int = 65536) -> float:
        self.net.eval()
        total = 0.0
        for i in range(0, len(z), chunk):
            total += float(
                -self.log_prob_tensor(
                    z[i : i + chunk], None if c is None else c[i : i + chunk]
                ).sum()
            )
        return total / max(len(z), 1)

    @torch.no_grad()
    def log_prob(self, x: np.ndarray, m: np.ndarray | None, chunk: int = 65536) -> np.ndarray:
        """Return log p(x | m) [N] of the physical features."""
        self.net.eval()
        z, c, log_det = self.preprocess(x, m)
        out = [
            self.log_prob_tensor(z[i : i + chunk], None if c is None else c[i : i + chunk])
            for i in range(0, len(z), chunk)
        ]
        return (torch.cat(out) + log_det).double().cpu().numpy()

    @torch.no_grad()
    def sample(
        self, n: int, m: np.ndarray | float | None = None, chunk: int = 65536
    ) -> np.ndarray:
        """Return n samples of x [n, D], the i-th drawn at mass m[i] (or at one mass m)."""
        self.net.eval()
        if self.settings["conditional"]:
            m = np.broadcast_to(np.asarray(m, dtype=np.float64), (n,))
        parts = []
        for i in range(0, n, chunk):
            k = min(chunk, n - i)
            if self.settings["conditional"]:
                dist = self.distribution(self.mass(m[i : i + k]).to(self.device))
                z = dist.sample()
            else:
                z = self.distribution(None).sample((k,))
            parts.append(self.scaler.inverse(z.double().cpu()))
        return torch.cat(parts).numpy() if parts else np.zeros((0, self.settings["features"]))


def flow_from_settings(
    settings: Mapping,
    *,
    seed: int,
    name: str,
    device: str = "auto",
    features: int = 4,
    **overrides,
) -> ConditionalFlow:
    """Build a :class:`ConditionalFlow` from an ``anomaly.flow`` settings section."""
    kw = dict(
        transforms=settings["transforms"],
        hidden=settings["hidden"],
        bins=settings["bins"],
        epochs=settings["epochs"],
        batch_size=settings["batch-size"],
        learning_rate=settings["learning-rate"],
        weight_decay=settings["weight-decay"],
        patience=settings["patience"],
        validation_fraction=settings["validation-fraction"],
        max_events=settings["max-events"],
    )
    kw.update(overrides)
    return ConditionalFlow(features=features, seed=seed, name=name, device=device, **kw)
