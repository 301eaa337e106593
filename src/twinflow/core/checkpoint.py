"""Training checkpoints that resume exactly and load without unpickling.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, saved with
:func:`torch.save` and read back with ``torch.load(..., weights_only=True)``, so a file from
elsewhere can never execute code. It holds the model settings (so the model rebuilds from the
file alone), model/optimizer/scheduler state, the epoch and the RNG states of Python, numpy
and torch, so a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

import twinflow
from twinflow.core.io import CorruptFileError, atomic_path, content_sha256
from twinflow.core.settings import ConfigError

#: Key of the content checksum inside a checkpoint (verified on load).
CHECKSUM_KEY = "content-sha256"


class CheckpointError(ConfigError):
    """A checkpoint file is missing, truncated, or was not written by this stage."""


class CorruptCheckpointError(CheckpointError, CorruptFileError):
    """A checkpoint file is damaged: unreadable, truncated, or no longer matching its checksum."""


def capture_rng_state() -> dict[str, Any]:
    """Return the RNG states of Python, numpy and torch (CPU and CUDA) as plain data."""
    np_state = np.random.get_state()  # noqa: NPY002 - the global stream is part of the RNG state
    state = {
        "python": list(random.getstate()[1]),
        "python_gauss": random.getstate()[2],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_gauss": [int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore RNG states captured by :func:`capture_rng_state`."""
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    has_gauss, cached = state["numpy_gauss"]
    np.random.set_state(  # noqa: NPY002
        (
            "MT19937",
            state["numpy_keys"].numpy().astype(np.uint32),
            state["numpy_pos"],
            has_gauss,
            cached,
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, *, kind: str, settings: Mapping, **state: Any) -> None:
    """Write a checkpoint atomically.

    ``kind`` names the stage that wrote it (e.g. ``"gw-posterior-model"``) so a foreign file is
    recognised on load; ``settings`` are what rebuild the model; ``state`` holds state dicts,
    counters and anything else made of tensors and plain Python values.
    """
    payload = {
        "format": "twinflow-checkpoint",
        "kind": kind,
        "version": twinflow.__version__,
        "settings": dict(settings),
        **state,
    }
    payload[CHECKSUM_KEY] = content_sha256(payload)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(
    path: str | Path, *, kind: str, map_location: str | torch.device = "cpu"
) -> dict:
    """Return the checkpoint at ``path``, checking that it is intact and of ``kind``.

    Raises :class:`CheckpointError` naming the file for a missing, truncated or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r}: no such file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated/garbled archives
        raise CorruptCheckpointError(
            f"checkpoint {str(path)!r} could not be read ({type(err).__name__}: {err}); "
            "the file is truncated, corrupted, or not a twinflow checkpoint"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != "twinflow-checkpoint":
        raise CheckpointError(f"checkpoint {str(path)!r} is not a twinflow checkpoint")
    stored = payload.pop(CHECKSUM_KEY, None)
    if stored is not None and stored != content_sha256(payload):
        raise CorruptCheckpointError(
            f"checkpoint {str(path)!r} is corrupt: its content no longer matches the checksum "
            "written with it"
        )
    if payload.get("kind") != kind:
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds a {payload.get('kind')!r}, expected a {kind!r}"
        )
    return payload


class EarlyStopping:
    """Track the best validation loss; ``step`` returns True once ``patience`` epochs passed
    without an improvement larger than ``min_delta``."""

    def __init__(self, patience: int, min_delta: float = 0.0):
        self.patience = patience
        self.min_delta = min_delta
        self.best = float("inf")
        self.bad_epochs = 0

    def step(self, loss: float) -> bool:
        if loss < self.best - self.min_delta:
            self.best = loss
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    @property
    def improved(self) -> bool:
        """Whether the last ``step`` set a new best."""
        return self.bad_epochs == 0

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: Mapping) -> None:
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
