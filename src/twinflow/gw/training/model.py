"""The posterior model q(θ | d, S_n, m): tokens in, a normalizing-flow density over θ out.

Dingo-T1 (arXiv:2512.02968) in three parts (``architecture.embedding: transformer``):

1. a **tokenizer** shared by every token: a residual MLP mapping the 48 numbers of a token
   (16 frequency bins × Re, Im of the whitened strain and a PSD feature) to ``d-model``,
   conditioned on the token's detector and frequency edges;
2. a pre-LayerNorm **transformer encoder** (multi-head attention through
   :func:`torch.nn.functional.scaled_dot_product_attention`) with a learnable summary token in
   front; a key-padding mask keeps dropped tokens out of every attention, so the context is
   exactly that of the shorter sequence of kept tokens;
3. a conditional **neural spline flow** (zuko, coupling transforms: ``passes=2``, so sampling
   is one pass) over the standardised parameters, conditioned on the summary token's output.

With ``architecture.embedding: svd-mlp`` the first two parts are replaced by Dingo's earlier
embedding (:mod:`twinflow.gw.training.svd_mlp`: SVD projection of the whitened strain and a
residual MLP), which takes the same token batches but no token masks; the flow is the same.

Everything is built from one plain settings dict, stored in the checkpoint, so
:func:`load_posterior_model` rebuilds the model from the file alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import zuko
from torch import Tensor, nn

from twinflow.core.checkpoint import load_checkpoint, save_checkpoint
from twinflow.core.settings import ConfigError, require
from twinflow.gw.training.embedding import (
    TransformerEncoder,
)
from twinflow.gw.training.svd_mlp import SVDResidualEmbedding
from twinflow.gw.validation import check_architecture

CHECKPOINT_KIND = "gw-posterior-model"
EMBEDDINGS = ("transformer", "svd-mlp")
#: Settings key of the svd-mlp embedding's input grid: lower edges [Hz] of the trained band's tokens.
SVD_TOKEN_EDGES = "svd-token-lower-edges"

#: Model sizes of the embedded CPU default (overridden by ``gw.train.model``).
DEFAULT_ARCHITECTURE = {
    "tokenizer": {"hidden": 64, "blocks": 2},
    "transformer": {"d-model": 64, "layers": 2, "heads": 4, "feed-forward": 128, "dropout": 0.0},
    "flow": {"transforms": 5, "hidden": [128, 128], "bins": 8},
}


# --------------------------------------------------------------------------------------------
# Settings


def check_model_settings(settings: Mapping) -> None:
    """Raise :class:`ConfigError` for settings that cannot build a :class:`PosteriorModel`."""
    names = settings["parameters"]
    require(
        isinstance(names, (list, tuple)) and len(names) >= 1 and len(set(names)) == len(names),
        "parameters",
        names,
        "a non-empty list of distinct parameter names",
    )
    std = settings["standardisation"]
    for key in ("mean", "std"):
        require(
            len(std[key]) == len(names),
            f"standardisation.{key}",
            std[key],
            f"one value per parameter ({len(names)})",
        )
    require(all(s > 0 for s in std["std"]), "standardisation.std", std["std"], "positive numbers")
    require(
        len(settings["detectors"]) >= 1,
        "detectors",
        settings["detectors"],
        "at least one detector",
    )
    require(
        settings["frequency-scale"] > 0,
        "frequency-scale",
        settings["frequency-scale"],
        "a frequency > 0 Hz",
    )
    check_architecture(settings["architecture"])
    if embedding_of(settings["architecture"]) == "svd-mlp":
        edges = settings.get(SVD_TOKEN_EDGES)
        require(
            isinstance(edges, (list, tuple)) and len(edges) >= 1,
            SVD_TOKEN_EDGES,
            edges,
            "the lower edges [Hz] of the trained band's tokens (the svd-mlp input grid)",
        )


def embedding_of(architecture: Mapping) -> str:
    """Return the embedding of an architecture block (checkpoints before svd-mlp: transformer)."""
    return architecture.get("embedding", "transformer")


# --------------------------------------------------------------------------------------------
# Building blocks


# --------------------------------------------------------------------------------------------
# The posterior model


def _batched(batch: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], bool]:
    """Return the batch's tensors with a leading batch axis, and whether it was added."""
    single = batch["tokens"].dim() == 2  # one event, [N, 48]
    out = {
        k: v.unsqueeze(0) if single else v
        for k, v in batch.items()
        if k in ("tokens", "detector_index", "token_frequency", "padding_mask") and v is not None
    }
    return out, single


class PosteriorModel(nn.Module):
    """q(θ | tokens): an embedding (transformer or SVD + MLP) and a conditional neural spline flow.

    ``settings`` (all stored in the checkpoint):

    - ``parameters``: the names of θ, in the flow's order; ``standardisation``: ``mean`` and
      ``std`` per parameter (the flow sees ``(θ - mean) / std``; densities are returned in
      physical units, i.e. including ``-Σ log std``);
    - ``detectors`` (``detector_index`` indexes this list) and ``frequency-scale`` [Hz];
    - ``architecture``: ``embedding`` (transformer or svd-mlp), ``tokenizer`` (hidden,
      blocks), ``transformer`` (d-model, layers, heads, feed-forward, dropout), ``svd-mlp``
      (basis-size, hidden, blocks, context, dropout), ``flow`` (transforms, hidden, bins);
    - for svd-mlp, ``svd-token-lower-edges``: the tokens of its fixed input grid;
    - ``seed``: fixes the initial weights and the flow's random feature permutations;
    - anything else (analysis settings, domain, training mask ranges) is carried along for
      the inference stage.
    """

    def __init__(self, settings: Mapping):
        super().__init__()
        check_model_settings(settings)
        self.settings = dict(settings)
        self.parameter_names: list[str] = list(settings["parameters"])
        arch = settings["architecture"]
        std = settings["standardisation"]
        self.register_buffer("mean", torch.tensor(std["mean"], dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std["std"], dtype=torch.float32))
        flow = arch["flow"]
        # The flow's permutations and all initial weights follow the settings' seed, so a
        # model rebuilt from the same settings has the same structure.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(settings.get("seed", 0)))
            self.embedding = embedding_of(arch)
            if self.embedding == "svd-mlp":
                self.encoder = SVDResidualEmbedding(
                    len(settings["detectors"]), settings[SVD_TOKEN_EDGES], arch["svd-mlp"]
                )
                context = arch["svd-mlp"]["context"]
            else:
                self.encoder = TransformerEncoder(
                    len(settings["detectors"]), float(settings["frequency-scale"]), arch
                )
                context = arch["transformer"]["d-model"]
            self.flow = zuko.flows.NSF(
                features=len(self.parameter_names),
                context=context,
                transforms=flow["transforms"],
                bins=flow["bins"],
                hidden_features=list(flow["hidden"]),
                passes=2,
                randperm=len(self.parameter_names) > 2,
            )

    # -- parameters <-> standardised vectors --------------------------------------------------

    def standardise(self, parameters: Mapping[str, Tensor]) -> Tensor:
        """Return [..., P] standardised parameters from a dict of physical values."""
        missing = [n for n in self.parameter_names if n not in parameters]
        if missing:
            raise KeyError(
                f"batch parameters lack {missing}; the model infers {self.parameter_names}"
            )
        theta = torch.stack(
            [parameters[n].to(self.mean.dtype) for n in self.parameter_names], dim=-1
        )
        return (theta - self.mean) / self.std

    def destandardise(self, z: Tensor) -> dict[str, Tensor]:
        """Return a dict name -> physical values from [..., P] standardised parameters."""
        theta = z * self.std + self.mean
        return {name: theta[..., i] for i, name in enumerate(self.parameter_names)}

    @property
    def log_jacobian(self) -> Tensor:
        """log |d z / d θ| = -Σ log std, added to flow densities to give physical densities."""
        return -torch.log(self.std).sum()

    # -- the model ----------------------------------------------------------------------------

    def _encode(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, bool]:
        """Return the context [B, C] and whether the batch was one event without a batch axis."""
        inputs, single = _batched(batch)
        if self.embedding == "svd-mlp":
            return self.encoder(inputs), single
        return self.encoder(
            inputs["tokens"],
            inputs["detector_index"],
            inputs["token_frequency"],
            inputs.get("padding_mask"),
        ), single

    def context(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Return the embedding's context [B, C] for a batch of tokens."""
        ctx, single = self._encode(batch)
        return ctx[0] if single else ctx

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Return log q(θ | d) [B] in physical units for the batch's true parameters."""
        return self.log_prob(batch, batch["parameters"])

    def log_prob(self, batch: Mapping[str, Tensor], parameters: Mapping[str, Tensor]) -> Tensor:
        """Return log q(θ | d) in physical units; ``parameters`` [B] or [B, n] per name."""
        ctx = self.context(batch)
        z = self.standardise(parameters)
        # The encoder may run under mixed precision; the spline flow always runs in float32.
        with torch.autocast(ctx.device.type, enabled=False):
            dist = self.flow(ctx.float())
            if z.dim() == ctx.dim() + 1:  # [B, n, P]: n points per event
                # [B, n, P] -> [n, B, P], the flow's sample-first layout
                return dist.log_prob(z.transpose(0, 1).float()).transpose(0, 1) + self.log_jacobian
            return dist.log_prob(z.float()) + self.log_jacobian

    @torch.no_grad()
    def sample_and_log_prob(
        self, batch: Mapping[str, Tensor], n: int, chunk_size: int = 50_000
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Draw ``n`` samples per event; return (parameters, log q) in physical units.

        For a batch of B events: parameters name -> [B, n] and log q [B, n]; for one event
        given without a batch axis (tokens [N, 48]): name -> [n] and log q [n]. Samples are
        drawn in chunks of ``chunk_size`` to bound memory.
        """
        ctx, single = self._encode(batch)
        zs, lps = [], []
        with torch.autocast(ctx.device.type, enabled=False):
            dist = self.flow(ctx.float())
            for start in range(0, n, chunk_size):
                z, lp = dist.rsample_and_log_prob(
                    (min(chunk_size, n - start),)
                )  # [n_c, B, P], [n_c, B]
                zs.append(z)
                lps.append(lp)
        z = torch.cat(zs).transpose(0, 1)  # [B, n, P]
        log_q = torch.cat(lps).transpose(0, 1) + self.log_jacobian
        samples = self.destandardise(z)
        if single:
            return {k: v[0] for k, v in samples.items()}, log_q[0]
        return samples, log_q


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable weights."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model_settings(
    *,
    parameters: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    detectors: Sequence[str],
    frequency_scale: float,
    architecture: Mapping,
    seed: int = 0,
    **extra: Any,
) -> dict:
    """Return the settings dict of a :class:`PosteriorModel` (what its checkpoint stores)."""
    return {
        "parameters": list(parameters),
        "standardisation": {"mean": [float(m) for m in mean], "std": [float(s) for s in std]},
        "detectors": list(detectors),
        "frequency-scale": float(frequency_scale),
        "architecture": {
            k: dict(v) if isinstance(v, Mapping) else v for k, v in architecture.items()
        },
        "seed": int(seed),
        **extra,
    }


def save_posterior_model(path: str | Path, model: PosteriorModel, **extra: Any) -> None:
    """Write ``model`` (settings and weights) atomically as a ``gw-posterior-model`` checkpoint."""
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    save_checkpoint(
        path, kind=CHECKPOINT_KIND, settings=_unwrap(model).settings, model=state, **extra
    )


def load_posterior_model(path: str | Path, device: str | torch.device = "cpu") -> PosteriorModel:
    """Rebuild the :class:`PosteriorModel` stored at ``path`` (weights only; no unpickling).

    Raises :class:`~twinflow.core.checkpoint.CheckpointError` for a missing, truncated or
    foreign file and :class:`ConfigError` if its weights do not fit its settings.
    """
    payload = load_checkpoint(path, kind=CHECKPOINT_KIND)
    model = PosteriorModel(payload["settings"])
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError) as err:
        raise ConfigError(
            f"checkpoint {str(path)!r}: weights do not match its settings ({err})"
        ) from err
    return model.to(device).eval()


def _unwrap(model: nn.Module) -> nn.Module:
    """Return the module inside a DistributedDataParallel wrapper (or the module itself)."""
    return getattr(model, "module", model)
