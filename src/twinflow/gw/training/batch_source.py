"""Where training batches come from: the waveform shards, streamed in shuffled blocks and
assembled into tokens on the fly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from twinflow.core.seeding import derive_seed, numpy_rng
from twinflow.core.settings import ConfigError
from twinflow.gw.dataset.shards import shuffled_batches


class BatchSource(Protocol):
    """What the trainer needs from the data: reproducible batches and parameter statistics.

    Batches follow the batch contract of :mod:`twinflow.gw.training.model` (``tokens``,
    ``detector_index``, ``token_frequency``, ``padding_mask``, ``parameters``).
    """

    parameter_names: list[str]

    def statistics(self) -> tuple[Sequence[float], Sequence[float]]:
        """Return (mean, std) of each parameter under the training distribution."""

    def metadata(self) -> dict:
        """Return what the model checkpoint should carry for inference (analysis, domain, masks)."""

    def epoch_batches(self, epoch: int, steps: int, batch_size: int, rank: int) -> Iterator[dict]:
        """Yield ``steps`` training batches for ``epoch``, a pure function of its arguments."""

    def validation_batches(self, batch_size: int, rank: int, world_size: int) -> Iterator[dict]:
        """Yield this rank's share of the fixed validation set."""

    def noise_free_batches(self, n: int, batch_size: int = 512) -> Iterator[dict]:
        """Yield unmasked batches of ``n`` training waveforms without noise (for an SVD basis)."""


class ShardBatchSource:
    """Training batches from the waveform shards, assembled on the fly on the training device.

    The last ``validation-fraction`` of the dataset's rows is held out: its waveforms are never
    trained on. Training rows are streamed a block at a time (blocks visited in a seeded random
    order per epoch and rank, rows shuffled within a buffer of about two blocks), so memory
    stays at a few blocks whatever the dataset size. Each batch of waveforms becomes a batch of
    tokens through the :class:`~twinflow.gw.dataset.tokens.BatchAssembler` (extrinsic parameters,
    projection, PSD draw, noise, whitening, tokens and masks), whose random streams are reseeded
    from ``(seed, epoch, step, rank)`` before every batch.
    """

    def __init__(
        self,
        dataset,
        assembler,
        *,
        parameter_names: Sequence[str],
        statistics,
        metadata: Mapping,
        seed: int,
        validation_fraction: float,
        validation_size: int,
        block_size: int = 4096,
        masks: bool = True,
    ):
        self.dataset, self.assembler, self.seed = dataset, assembler, seed
        self.masks = masks  # False for an embedding that cannot take token masks (svd-mlp)
        self.parameter_names = list(parameter_names)
        self._statistics, self._metadata = statistics, dict(metadata)
        n = len(dataset)
        self.n_validation = max(1, int(round(validation_fraction * n)))
        if self.n_validation >= n:
            raise ConfigError(
                f"validation-fraction = {validation_fraction!r} leaves no training waveforms "
                f"in a dataset of {n}"
            )
        boundary = n - self.n_validation  # global row index where the held-out rows start
        self.train_blocks, self.validation_blocks = [], []
        for shard, (offset, count) in enumerate(zip(dataset.offsets[:-1], dataset.counts)):
            offset, count = int(offset), int(count)
            for start in range(0, count, block_size):
                stop = min(count, start + block_size)
                if offset + start < boundary:
                    self.train_blocks.append((shard, start, min(stop, boundary - offset)))
                if offset + stop > boundary:
                    self.validation_blocks.append((shard, max(start, boundary - offset), stop))
        self.n_train = boundary
        self.block_size = block_size
        self.validation_size = validation_size
        self._validation: list[dict] | None = None

    def statistics(self):
        return self._statistics

    def metadata(self) -> dict:
        return dict(self._metadata)

    def assemble(self, waveforms: Mapping, *keys: int | str) -> dict:
        """Return the batch of ``waveforms``, its random draws seeded by ``(seed, *keys)``."""
        # The assembler keeps its streams as attributes; reseeding them per batch makes every
        # batch a pure function of its keys, which is what makes resumption exact.
        self.assembler.rng = numpy_rng(self.seed, "extrinsic", *keys)
        self.assembler.generator.manual_seed(derive_seed(self.seed, "noise-and-masks", *keys))
        return self.assembler(waveforms, masks=self.masks)

    def noise_free_batches(self, n: int, batch_size: int = 512) -> Iterator[dict]:
        """Yield unmasked, noise-free batches of the first ``n`` training waveforms (cycled).

        Each waveform gets its own seeded extrinsic parameters and PSD, as in training.
        """
        rows, need = [], min(n, self.n_train)
        for shard, start, stop in self.train_blocks:  # training rows in storage order
            if need <= 0:
                break
            rows.append(self.dataset.read(shard, start, min(stop, start + need)))
            need -= len(rows[-1]["h_plus"])
        held = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
        for i, start in enumerate(range(0, n, batch_size)):
            take = np.arange(start, min(n, start + batch_size)) % len(held["h_plus"])
            self.assembler.rng = numpy_rng(self.seed, "svd-extrinsic", i)
            self.assembler.generator.manual_seed(derive_seed(self.seed, "svd-psd", i))
            yield self.assembler({k: v[take] for k, v in held.items()}, masks=False, noise=False)

    def _waveform_stream(self, epoch: int, rank: int, batch_size: int) -> Iterator[dict]:
        """Yield training waveform batches without end (passes over the training rows)."""
        rng = numpy_rng(self.seed, "train-order", epoch, rank)
        reserve = min(self.block_size, self.n_train // 2)  # rows kept back to mix with the next
        yield from shuffled_batches(
            self.dataset.read, self.train_blocks, batch_size, rng, reserve=reserve
        )

    def epoch_batches(self, epoch: int, steps: int, batch_size: int, rank: int) -> Iterator[dict]:
        waveforms = self._waveform_stream(epoch, rank, batch_size)
        for step in range(steps):
            yield self.assemble(next(waveforms), "train", epoch, step, rank)

    def validation_batches(self, batch_size: int, rank: int, world_size: int) -> Iterator[dict]:
        if self._validation is None:
            # The held-out rows (cycled if validation-size exceeds them), each with its own fixed
            # extrinsic parameters, noise and mask: the same set every epoch, on every rank.
            rows = [self.dataset.read(*blk) for blk in self.validation_blocks]
            held = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
            take = np.arange(self.validation_size) % len(held["h_plus"])
            self._validation = [
                self.assemble({k: v[take[s : s + 512]] for k, v in held.items()}, "validation", i)
                for i, s in enumerate(range(0, self.validation_size, 512))
            ]
        count = 0
        for full in self._validation:
            n = len(full["tokens"])
            mine = torch.nonzero(torch.arange(count, count + n) % world_size == rank).squeeze(1)
            count += n
            for start in range(0, len(mine), batch_size):
                yield _index_batch(
                    full, mine[start : start + batch_size].to(full["tokens"].device)
                )


def _index_batch(batch: Mapping, idx: Tensor) -> dict:
    """Return the rows ``idx`` of every tensor in a (nested) batch dict."""
    return {
        k: _index_batch(v, idx) if isinstance(v, Mapping) else v[idx] for k, v in batch.items()
    }
