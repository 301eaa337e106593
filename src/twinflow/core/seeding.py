"""Reproducible random streams.

One integer seed in the config fans out into independent streams with
:class:`numpy.random.SeedSequence` spawn keys, so shard 7 of a dataset or stretch 12 of a PSD
bank is reproducible on its own, whichever job or process makes it.
"""

from __future__ import annotations

import random
import zlib

import numpy as np


def _key(part: int | str) -> int:
    # Strings (detector names, stage names) become stable integers; Python's hash() is salted.
    return part if isinstance(part, int) else zlib.crc32(part.encode())


def numpy_rng(seed: int, *keys: int | str) -> np.random.Generator:
    """Return a generator for the stream ``keys`` under ``seed`` (e.g. ``(seed, "H1", 3)``)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=[_key(k) for k in keys]))


def derive_seed(seed: int, *keys: int | str) -> int:
    """Return a 63-bit integer seed for the stream ``keys`` under ``seed`` (for torch)."""
    seq = np.random.SeedSequence(seed, spawn_key=[_key(k) for k in keys])
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (all devices)."""
    import torch  # imported here so stages without torch start fast

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code draws from the global stream
    torch.manual_seed(seed)
