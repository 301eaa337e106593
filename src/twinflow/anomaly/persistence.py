"""Saving and loading the anomaly branch's density models (the sideband flows and SIGMA).

Both keep the same state: the settings that rebuild them, the network's weights, the feature
scaler, the mass embedding, the fit time and the loss history; a checkpoint of the wrong kind
is refused by name (:func:`twinflow.core.checkpoint.load_checkpoint`).
"""

from __future__ import annotations

from pathlib import Path

from twinflow.core.checkpoint import load_checkpoint, save_checkpoint
from twinflow.core.io import quarantine_if_damaged


class SavedDensityModel:
    """``save`` / ``load`` for a model with ``settings``, ``net``, ``scaler``, ``mass``,
    ``fit_seconds`` and ``history``; subclasses name their checkpoint ``KIND``."""

    KIND: str

    def save(self, path: str | Path, **extra) -> None:
        """Write the model (and ``extra`` entries) atomically as a ``KIND`` checkpoint."""
        save_checkpoint(
            path,
            kind=self.KIND,
            settings=self.settings,
            model=self.net.state_dict(),
            scaler=self.scaler.state_dict(),
            mass=self.mass.state_dict(),
            fit_seconds=self.fit_seconds,
            history=self.history,
            **extra,
        )

    @classmethod
    def load(cls, path: str | Path, device: str = "auto"):
        """Return the model saved at ``path`` and the whole checkpoint."""
        with quarantine_if_damaged(path):  # a damaged model is remade by its rule
            ckpt = load_checkpoint(path, kind=cls.KIND)
        model = cls(**{**ckpt["settings"], "device": device})
        model.net.load_state_dict(ckpt["model"])
        model.net.eval()
        model.scaler.load_state_dict(ckpt["scaler"])
        model.mass.load_state_dict(ckpt["mass"])
        model.fit_seconds = float(ckpt["fit_seconds"])
        model.history = list(ckpt["history"])
        return model, ckpt
