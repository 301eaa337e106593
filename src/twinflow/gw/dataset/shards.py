"""The waveform dataset: intrinsic prior draws and their polarisations, in HDF5 shards.

Three steps, one Snakemake job each (``workflow/rules/gw_dataset.smk``):

1. :func:`resolve_domain` writes ``domain.json``: the multibanded domain, from the configured
   nodes or (``nodes: auto``) proposed from waveforms of the prior by
   :func:`twinflow.gw.domain.propose_nodes`.
2. :func:`simulate_shard` writes ``shard-{i}.h5``: ``parameters/<name>`` [n] for every
   non-fixed intrinsic parameter, ``h_plus`` and ``h_cross`` [n, n_bins] complex64 at the
   reference distance on the multibanded domain, and the settings as attributes. Shard i
   draws from its own stream (seed, i), so it is reproducible alone; waveforms are made and
   written ``chunk-size`` at a time, so memory stays bounded whatever the shard size.
3. :func:`write_index` writes ``index.json`` (shards, counts, domain and settings).

:class:`WaveformDataset` reads the shards back for training, a block at a time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from twinflow.core.io import (
    atomic_path,
    read_hdf5,
    read_settings,
    verify_intermediate,
    write_checksum,
    write_json,
    write_provenance,
)
from twinflow.core.progress import progress
from twinflow.core.seeding import numpy_rng
from twinflow.core.settings import (
    ConfigError,
    require,
    require_file,
    require_positive,
)
from twinflow.gw.dataset.grid import (
    check_analysis,
    check_intrinsic_prior,
    load_domain,
)
from twinflow.gw.domain import (
    domain_from_settings,
)
from twinflow.gw.prior import sample, sampled_parameters
from twinflow.gw.waveforms import WaveformGenerator, check_approximant

# --------------------------------------------------------------------------------------------
# Shards


def check_shard_settings(settings: Mapping) -> None:
    """Raise :class:`ConfigError` for invalid shard settings, before any work."""
    check_analysis(settings)
    check_approximant(settings["approximant"])
    for key in ("reference-frequency", "reference-distance"):
        require_positive(f"dataset.{key}", settings[key])
    for key in ("shard-size", "chunk-size"):
        require(
            isinstance(settings[key], int) and settings[key] >= 1,
            f"dataset.{key}",
            settings[key],
            "an integer >= 1",
        )
    check_intrinsic_prior(settings["prior"])


def shard_settings_check_index(settings: Mapping, index: int) -> None:
    n = settings.get("n-shards")
    require(
        isinstance(index, int) and index >= 0 and (n is None or index < n),
        "shard",
        index,
        "an index >= 0" + (f" and < n-shards = {n}" if n is not None else ""),
    )


def simulate_shard(
    settings: Mapping, domain_path: str | Path, index: int, out: str | Path, log=print
) -> None:
    """Simulate shard ``index`` and write it to ``out`` (HDF5), streaming chunk by chunk."""
    check_shard_settings(settings)
    shard_settings_check_index(settings, index)
    domain = load_domain(domain_path)
    require(
        domain.base.duration == settings["duration"]
        and domain.base.sampling_frequency == settings["sampling-frequency"],
        "domain",
        str(domain_path),
        f"a domain for duration = {settings['duration']} s and sampling-frequency = "
        f"{settings['sampling-frequency']} Hz",
    )
    generator = WaveformGenerator(
        domain,
        settings["approximant"],
        settings["reference-frequency"],
        settings["reference-distance"],
    )
    intrinsic = check_intrinsic_prior(settings["prior"])
    names = sampled_parameters(intrinsic)
    n, chunk = settings["shard-size"], settings["chunk-size"]
    # All draws first (a few floats each): the shard is the same whatever the chunk size.
    draws = sample(intrinsic, n, numpy_rng(settings["seed"], "dataset", index))
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        group = f.create_group("parameters")
        for name in names:
            group.create_dataset(name, data=draws[name])
        kwargs = dict(
            shape=(n, domain.n_bins), dtype=np.complex64, chunks=(min(chunk, n), domain.n_bins)
        )
        h_plus, h_cross = (
            f.create_dataset("h_plus", **kwargs),
            f.create_dataset("h_cross", **kwargs),
        )
        for start in progress(
            range(0, n, chunk), desc=f"shard {index}", total=-(-n // chunk), unit="chunk"
        ):
            stop = min(n, start + chunk)
            hp, hc = generator({k: v[start:stop] for k, v in draws.items()}, dtype=np.complex64)
            h_plus[start:stop] = hp
            h_cross[start:stop] = hc
        write_provenance(
            f,
            settings,
            shard=index,
            seed=settings["seed"],
            n=n,
            domain=domain.settings,
            parameters=names,
            fixed={k: float(v.peak) for k, v in intrinsic.items() if k not in names},
        )
        write_checksum(f)
    log(f"shard {index}: wrote {n} waveforms on {domain.n_bins} bins to {out}")


# --------------------------------------------------------------------------------------------
# 3. The index


def write_index(shards: Sequence[str | Path], out: str | Path) -> dict:
    """Index the shards (their paths relative to the index, counts, domain, settings)."""
    out = Path(out)
    entries, reference = [], None
    for path in shards:
        path = require_file("shard", path)
        verify_shard(path)
        with read_hdf5(path, "waveform shard") as f:
            settings = read_settings(f)
            attrs = {k: f.attrs[k] for k in ("shard", "n")}
            domain = json.loads(f.attrs["domain"])
            parameters = json.loads(f.attrs["parameters"])
            fixed = json.loads(f.attrs["fixed"])
        if reference is None:
            reference = (settings, domain, parameters, fixed)
        elif (settings, domain) != reference[:2]:
            raise ConfigError(
                f"shard {str(path)!r} was made with other settings than {str(shards[0])!r}: "
                "rerun the dataset"
            )
        entries.append(
            {
                "path": os.path.relpath(Path(path).resolve(), out.resolve().parent),
                "shard": int(attrs["shard"]),
                "n": int(attrs["n"]),
            }
        )
    settings, domain, parameters, fixed = reference
    index = {
        "kind": "gw-waveform-dataset",
        "n-total": sum(e["n"] for e in entries),
        "shards": entries,
        "domain": domain,
        "parameters": parameters,
        "fixed": fixed,
        "settings": settings,
    }
    write_json(out, index)
    return index


def verify_shard(path: str | Path) -> None:
    """Check that a shard opens, holds its datasets and matches its checksum; a shard that
    fails is moved aside to ``<name>.corrupt`` for its own rule to regenerate (see
    :func:`twinflow.core.io.verify_intermediate`)."""
    verify_intermediate(path, "waveform shard", ("h_plus", "h_cross", "parameters"))


class WaveformDataset:
    """The sharded waveform dataset behind an ``index.json``, read a block at a time.

    ``parameters`` names the stored (non-fixed) intrinsic parameters; ``fixed`` holds the
    fixed ones; ``domain`` is the multibanded domain; ``reference_distance`` [Mpc] the
    distance of the stored polarisations.
    """

    def __init__(self, index_path: str | Path):
        index_path = require_file("dataset index", index_path)
        self.index = json.loads(index_path.read_text())
        require(
            self.index.get("kind") == "gw-waveform-dataset",
            "dataset index",
            str(index_path),
            "an index.json written by the gw dataset stage",
        )
        self.paths = [(index_path.parent / e["path"]).resolve() for e in self.index["shards"]]
        self.counts = np.array([e["n"] for e in self.index["shards"]])
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        self.domain = domain_from_settings(self.index["domain"])
        self.parameters: list[str] = list(self.index["parameters"])
        self.fixed: dict[str, float] = dict(self.index["fixed"])
        self.settings: dict = self.index["settings"]
        self.reference_distance = float(self.settings["reference-distance"])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def verify(self) -> None:
        """Check every shard against its checksum (see :func:`verify_shard`) before training."""
        for path in progress(self.paths, desc="verify shards", unit="shard"):
            verify_shard(path)

    def read(self, shard: int, start: int, stop: int) -> dict[str, np.ndarray]:
        """Return rows [start, stop) of one shard: ``h_plus``, ``h_cross`` and each parameter."""
        with read_hdf5(self.paths[shard], "waveform shard") as f:
            block = {"h_plus": f["h_plus"][start:stop], "h_cross": f["h_cross"][start:stop]}
            for name in self.parameters:
                block[name] = f["parameters"][name][start:stop]
        return block

    def load(self) -> dict[str, np.ndarray]:
        """Return the whole dataset in memory (for small datasets; training may stream instead)."""
        blocks = [self.read(i, 0, int(n)) for i, n in enumerate(self.counts)]
        return {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}

    def batches(
        self,
        batch_size: int,
        rng: np.random.Generator,
        block_size: int = 4096,
        drop_last: bool = True,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Yield shuffled batches for one pass over the data, reading ``block_size`` rows at a time.

        Blocks (contiguous rows of one shard) are visited in random order, and rows are
        shuffled within a buffer of two blocks, so memory stays at a few blocks whatever the
        dataset size while every row is seen once per pass.
        """
        blocks = [
            (i, s, min(int(n), s + block_size))
            for i, n in enumerate(self.counts)
            for s in range(0, int(n), block_size)
        ]
        yield from shuffled_batches(
            self.read, blocks, batch_size, rng, reserve=block_size, passes=1, drop_last=drop_last
        )


# --------------------------------------------------------------------------------------------
# Plots


def shuffled_batches(
    read,
    blocks: Sequence[tuple[int, int, int]],
    batch_size: int,
    rng: np.random.Generator,
    *,
    reserve: int,
    passes: int | None = None,
    drop_last: bool = True,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield batches of rows streamed block by block through a shuffle buffer.

    ``blocks`` are ``(shard, start, stop)`` row ranges, read with ``read(*block)``. Each pass
    visits them in a random order; every block read is mixed with the rows still buffered
    and the buffer is reshuffled, and batches are taken while more than ``reserve`` rows
    would remain to mix with the next block. So memory stays at a few blocks whatever the
    dataset size, and every row is used once per pass. ``passes=None`` streams without end;
    after the last pass the remaining rows are yielded too (a short last batch unless
    ``drop_last``).
    """
    buffer: dict[str, np.ndarray] | None = None
    done = 0
    while passes is None or done < passes:
        for b in rng.permutation(len(blocks)):
            block = read(*blocks[b])
            if buffer is not None:
                block = {k: np.concatenate([buffer[k], block[k]]) for k in block}
            perm = rng.permutation(len(next(iter(block.values()))))
            buffer = {k: v[perm] for k, v in block.items()}
            while len(next(iter(buffer.values()))) >= batch_size + reserve:
                yield {k: v[:batch_size] for k, v in buffer.items()}
                buffer = {k: v[batch_size:] for k, v in buffer.items()}
        done += 1
    while buffer is not None and len(next(iter(buffer.values()))) >= (
        batch_size if drop_last else 1
    ):
        yield {k: v[:batch_size] for k, v in buffer.items()}
        buffer = {k: v[batch_size:] for k, v in buffer.items()}
