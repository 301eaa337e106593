"""Feature preprocessing for density estimation: min-max -> logit -> standardise, with its log-Jacobian.

Flows fit the preprocessed features z; a density of the physical features follows from
``log p_x(x) = log p_z(z(x)) + log|det dz/dx|``, which :meth:`LogitScaler.transform` returns
alongside z. The fit uses training data only; the min-max range is widened by ``margin`` (a
fraction of the range on each side) so the training extremes do not map to +-infinity.

Events outside the fitted range have no image under the logit. They are handled explicitly by
``out_of_range``: ``"clip"`` moves them to the edge of the range (and counts them in
:attr:`LogitScaler.n_clipped`), ``"raise"`` stops with an error naming how many there are.
"""

from __future__ import annotations

import numpy as np
import torch

from twinflow.core.settings import ConfigError

OUT_OF_RANGE = ("clip", "raise")


class LogitScaler:
    """Invertible map x -> z = (logit((x - lo) / (hi - lo)) - mean) / std, per feature."""

    def __init__(self, margin: float = 0.01, out_of_range: str = "clip"):
        if out_of_range not in OUT_OF_RANGE:
            raise ConfigError(
                f"out_of_range = {out_of_range!r} is invalid: choose one of {list(OUT_OF_RANGE)}"
            )
        self.margin = margin
        self.out_of_range = out_of_range
        self.n_clipped = 0

    def fit(self, x: np.ndarray | torch.Tensor) -> LogitScaler:
        x = torch.as_tensor(x, dtype=torch.float64)
        lo, hi = x.min(dim=0).values, x.max(dim=0).values
        span = torch.clamp(hi - lo, min=1e-12)
        self.lo, self.hi = lo - self.margin * span, hi + self.margin * span
        y = torch.logit(self._unit(x))
        self.mean, self.std = y.mean(dim=0), y.std(dim=0).clamp(min=1e-12)
        return self

    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.lo.to(x)) / (self.hi - self.lo).to(x)

    def inside(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Return a mask of events inside the fitted range (all features)."""
        x = torch.as_tensor(x)
        return ((x > self.lo.to(x)) & (x < self.hi.to(x))).all(dim=1)

    def transform(self, x: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return z [N, D] and log|det dz/dx| [N] (differentiable in x)."""
        x = torch.as_tensor(x, dtype=torch.float64) if not torch.is_tensor(x) else x
        inside = self.inside(x.detach())
        n_out = int((~inside).sum())
        if n_out:
            if self.out_of_range == "raise":
                raise ConfigError(
                    f"{n_out} event(s) lie outside the fitted feature range "
                    f"[{self.lo.tolist()}, {self.hi.tolist()}]"
                )
            self.n_clipped += n_out
        u = self._unit(x)
        eps = 1e-6
        u = torch.clamp(u, eps, 1 - eps) if n_out else u
        z = (torch.logit(u) - self.mean.to(x)) / self.std.to(x)
        # dz/dx = 1 / ((hi - lo) * u (1 - u) * std), diagonal
        log_det = (
            -(torch.log(u) + torch.log1p(-u)).sum(dim=1)
            - torch.log((self.hi - self.lo) * self.std).to(x).sum()
        )
        return z, log_det

    def inverse(self, z: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Return x for preprocessed features z."""
        z = torch.as_tensor(z, dtype=torch.float64) if not torch.is_tensor(z) else z
        u = torch.sigmoid(z * self.std.to(z) + self.mean.to(z))
        return self.lo.to(z) + u * (self.hi - self.lo).to(z)

    def state_dict(self) -> dict:
        return {
            "lo": self.lo,
            "hi": self.hi,
            "mean": self.mean,
            "std": self.std,
            "margin": self.margin,
        }

    def load_state_dict(self, state: dict) -> LogitScaler:
        self.lo, self.hi, self.mean, self.std = (
            state[k].to(torch.float64) for k in ("lo", "hi", "mean", "std")
        )
        self.margin = float(state["margin"])
        return self


class MassScaler:
    """Affine map of the resonant feature m to roughly [-1, 1] over the fitted range (flow context)."""

    def fit(self, m: np.ndarray) -> MassScaler:
        self.lo, self.hi = float(np.min(m)), float(np.max(m))
        return self

    def __call__(self, m: np.ndarray | torch.Tensor) -> torch.Tensor:
        m = torch.as_tensor(np.array(m, dtype=np.float32)) if not torch.is_tensor(m) else m.float()
        return (2 * (m - self.lo) / max(self.hi - self.lo, 1e-12) - 1).reshape(-1, 1)

    def state_dict(self) -> dict:
        return {"lo": self.lo, "hi": self.hi}

    def load_state_dict(self, state: dict) -> MassScaler:
        self.lo, self.hi = float(state["lo"]), float(state["hi"])
        return self
