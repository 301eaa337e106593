"""Training the posterior model: NLL on simulated data, streamed from the waveform shards.

Each step draws a batch of waveforms from the training shards, and on the training device
draws extrinsic parameters, a PSD per detector, noise and a token mask, whitens and tokenizes
(``twinflow.gw.tokens``), and minimises ``-log q(θ | d)`` with AdamW, gradient clipping and a
cosine or plateau learning-rate schedule. A fixed validation set (held-out waveforms with
seeded noise) decides the best model and early stopping.

Reproducibility and resumption: every batch and every dropout mask of epoch ``e`` is drawn
from streams seeded by ``(seed, e, step, rank)``, and a checkpoint at the end of every epoch
holds model, optimizer, scheduler, scaler, early-stopping and RNG state. A run killed at any
point (even ``kill -9``) resumes from the last completed epoch and ends, on the CPU, with
exactly the weights of an uninterrupted run.

Data parallel: launched by ``torchrun --nproc_per_node=G`` (``WORLD_SIZE`` > 1), each rank
builds its own batches (its own noise and masks: the rank is part of every seed), DDP averages
gradients, the global batch size is split across ranks, and only rank 0 writes files.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from twinflow.core.checkpoint import (
    CheckpointError,
    EarlyStopping,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from twinflow.core.device import (
    autocast,
    configure_cpu_threads,
    grad_scaler,
    select_device,
    to_device,
)
from twinflow.core.io import write_json
from twinflow.core.metrics_log import plot_loss_curve, write_metrics_csv
from twinflow.core.progress import progress
from twinflow.core.seeding import derive_seed, numpy_rng
from twinflow.core.settings import ConfigError, require, require_choice, require_positive
from twinflow.gw.model import (
    PosteriorModel,
    build_model_settings,
    check_architecture,
    count_parameters,
    save_posterior_model,
)

STATE_KIND = "gw-training-state"
SCHEDULERS = ("cosine", "plateau")


# --------------------------------------------------------------------------------------------
# Settings


def _require_int(key: str, value: Any, minimum: int) -> None:
    require(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        key,
        value,
        f"an integer >= {minimum}",
    )


def check_train_settings(settings: Mapping) -> None:
    """Raise :class:`ConfigError` naming the first invalid ``gw.train`` setting."""
    _require_int("seed", settings["seed"], 0)
    require_choice("device", settings["device"], ("auto", "cuda", "mps", "cpu"))
    _require_int("batch-size", settings["batch-size"], 2)
    _require_int("epochs", settings["epochs"], 1)
    _require_int("steps-per-epoch", settings["steps-per-epoch"], 1)
    _require_int("validation-size", settings["validation-size"], 1)
    require_positive("learning-rate", settings["learning-rate"])
    require_positive("weight-decay", settings["weight-decay"], allow_zero=True)
    require_positive("gradient-clip", settings["gradient-clip"])
    require_choice("scheduler", settings["scheduler"], SCHEDULERS)
    require(
        0 < settings["plateau-factor"] < 1,
        "plateau-factor",
        settings["plateau-factor"],
        "a number in (0, 1)",
    )
    _require_int("plateau-patience", settings["plateau-patience"], 0)
    _require_int("early-stopping-patience", settings["early-stopping-patience"], 1)
    require(isinstance(settings["amp"], bool), "amp", settings["amp"], "true or false")
    frac = settings.get("validation-fraction", 0.05)
    require(
        isinstance(frac, (int, float)) and 0 < frac < 1,
        "validation-fraction",
        frac,
        "a fraction in (0, 1)",
    )
    names = settings.get("parameters")
    require(
        names is None
        or (
            isinstance(names, list) and len(names) >= 1 and all(isinstance(n, str) for n in names)
        ),
        "parameters",
        names,
        "null (every non-fixed prior parameter) or a non-empty list of names",
    )
    check_architecture(settings["model"])


# --------------------------------------------------------------------------------------------
# Where batches come from


class BatchSource(Protocol):
    """What the trainer needs from the data: reproducible batches and parameter statistics.

    Batches follow the batch contract of :mod:`twinflow.gw.model` (``tokens``,
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


# --------------------------------------------------------------------------------------------
# The training loop


@dataclass
class TrainResult:
    model: PosteriorModel  # with the best validation weights
    history: list[dict] = field(default_factory=list)
    resumed_from_epoch: int = 0
    stopped_early: bool = False


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Sum numbers over ranks (a no-op without torch.distributed)."""
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    if _world()[1] > 1:
        dist.all_reduce(t)
    return t.tolist()


def _make_scheduler(optimizer, settings: Mapping):
    if settings["scheduler"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings["epochs"])
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=settings["plateau-factor"], patience=settings["plateau-patience"]
    )


@torch.no_grad()
def validation_loss(
    model, source: BatchSource, batch_size: int, device: torch.device, amp: bool
) -> float:
    """Return the mean NLL over the whole validation set (summed over ranks)."""
    model.eval()
    rank, world = _world()
    total, count = 0.0, 0
    for batch in source.validation_batches(batch_size, rank, world):
        batch = to_device(batch, device)
        with autocast(device, amp):
            log_q = model(batch)
        total += float(-log_q.sum())
        count += int(log_q.numel())
    total, count = _all_reduce_sum([total, count], device)
    return total / max(count, 1)


def fit(
    settings: Mapping,
    source: BatchSource,
    *,
    state_path: str | Path | None,
    device: torch.device,
    log=print,
) -> TrainResult:
    """Train a :class:`PosteriorModel` on ``source``; return it with the best validation weights.

    ``state_path`` is the per-epoch checkpoint: if it holds a run with the same settings, the
    run resumes after its last completed epoch. Under torch.distributed the model is wrapped
    in DDP and only rank 0 writes the checkpoint.
    """
    rank, world = _world()
    seed = settings["seed"]
    mean, std = source.statistics()
    model_settings = build_model_settings(
        parameters=source.parameter_names,
        mean=mean,
        std=std,
        architecture=settings["model"],
        seed=seed,
        **source.metadata(),
    )
    model = PosteriorModel(model_settings).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings["learning-rate"], weight_decay=settings["weight-decay"]
    )
    scheduler = _make_scheduler(optimizer, settings)
    scaler = grad_scaler(device, settings["amp"])
    stopper = EarlyStopping(settings["early-stopping-patience"])
    history: list[dict] = []
    best_state = copy.deepcopy(model.state_dict())
    start_epoch = 0
    resume_key = {"train": dict(settings), "model": model_settings, "world-size": world}

    if state_path is not None and Path(state_path).is_file():
        try:
            state = load_checkpoint(state_path, kind=STATE_KIND, map_location=device)
        except CheckpointError as err:
            log(f"not resuming: {err}")
            state = None
        if state is not None and state["settings"] == resume_key:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            stopper.load_state_dict(state["early_stopping"])
            best_state = state["best_model"]
            history = list(state["history"])
            start_epoch = int(state["epoch"]) + 1
            restore_rng_state(state["rng"])
            log(f"resuming after epoch {start_epoch} from {state_path}")
        elif state is not None:
            log(f"not resuming from {state_path}: it was written with other settings")

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if rank == 0:
        log(
            f"posterior model: {count_parameters(model):,} weights; parameters {source.parameter_names}; "
            f"device {device}; {world} rank(s)"
        )

    per_rank = settings["batch-size"] // world
    steps = settings["steps-per-epoch"]
    stopped = bool(history) and history[-1].get("stop", False)
    for epoch in range(start_epoch, settings["epochs"]):
        if stopped:
            break
        net.train()
        # Dropout (and anything else drawing from the global stream) is seeded per epoch and
        # rank, so epoch e is the same whether or not the run was resumed before it.
        torch.manual_seed(derive_seed(seed, "train-dropout", epoch, rank))
        bar = progress(
            total=steps,
            desc=f"epoch {epoch + 1}/{settings['epochs']}",
            unit="batch",
            disable=rank != 0,
        )
        loss_sum, n_seen, skipped = 0.0, 0, 0
        t_data = t_step = 0.0
        batches = iter(source.epoch_batches(epoch, steps, per_rank, rank))
        t_epoch = time.perf_counter()
        for _ in range(steps):
            t0 = time.perf_counter()
            batch = to_device(next(batches), device)
            t1 = time.perf_counter()
            with autocast(device, settings["amp"]):
                loss = -net(batch).mean()
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(
                model.parameters(), settings["gradient-clip"]
            )
            # Gradients are averaged across ranks before this check, so all ranks agree to skip.
            if torch.isfinite(grad_norm):
                scaler.step(optimizer)
            else:
                skipped += 1
            scaler.update()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t2 = time.perf_counter()
            t_data += t1 - t0
            t_step += t2 - t1
            loss_sum += float(loss.detach()) * per_rank
            n_seen += per_rank
            bar.update()
            bar.set_postfix(
                loss=f"{loss_sum / n_seen:.3f}", samples_s=f"{n_seen * world / (t2 - t_epoch):.0f}"
            )
        bar.close()
        seconds = time.perf_counter() - t_epoch
        loss_sum, n_seen = _all_reduce_sum([loss_sum, n_seen], device)
        train_loss = loss_sum / n_seen
        val_loss = validation_loss(net, source, per_rank, device, settings["amp"])
        lr = optimizer.param_groups[0]["lr"]
        if settings["scheduler"] == "cosine":
            scheduler.step()
        else:
            scheduler.step(val_loss)
        stop = stopper.step(val_loss) or not math.isfinite(val_loss)
        if stopper.improved:
            best_state = copy.deepcopy(model.state_dict())
        row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "learning_rate": lr,
            "seconds": seconds,
            "samples_per_s": n_seen / seconds,
            "batch_assembly_fraction": t_data / max(t_data + t_step, 1e-12),
            "skipped_steps": skipped,
            "stop": stop,
        }
        history.append(row)
        if rank == 0:
            log(
                f"epoch {epoch + 1}: train {train_loss:.4f}  val {val_loss:.4f}  lr {lr:.2e}  "
                f"{row['samples_per_s']:.0f} samples/s  batch assembly {100 * row['batch_assembly_fraction']:.1f}%"
                + ("  (stopping early)" if stop and epoch + 1 < settings["epochs"] else "")
            )
            if state_path is not None:
                save_checkpoint(
                    state_path,
                    kind=STATE_KIND,
                    settings=resume_key,
                    epoch=epoch,
                    model=model.state_dict(),
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(),
                    scaler=scaler.state_dict(),
                    early_stopping=stopper.state_dict(),
                    best_model=best_state,
                    history=history,
                    rng=capture_rng_state(),
                )
        stopped = stop
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model,
        history=history,
        resumed_from_epoch=start_epoch,
        stopped_early=stopped and len(history) < settings["epochs"],
    )


def write_training_outputs(
    result: TrainResult,
    *,
    model_path: str | Path,
    metrics_path: str | Path,
    plot_path: str | Path,
    summary_path: str | Path | None = None,
) -> None:
    """Write the best model, the per-epoch metrics CSV and the loss-curve plot (atomically)."""
    rows = [{k: v for k, v in r.items() if k != "stop"} for r in result.history]
    best = min(rows, key=lambda r: r["val_loss"])
    save_posterior_model(
        model_path,
        result.model,
        training={
            "epochs": len(rows),
            "best_epoch": best["epoch"],
            "best_val_loss": best["val_loss"],
            "stopped_early": result.stopped_early,
        },
    )
    write_metrics_csv(metrics_path, rows)
    plot_loss_curve(
        plot_path,
        rows,
        title="posterior model: negative log-likelihood",
        ylabel=r"$-\log q(\theta \mid d)$",
    )
    if summary_path is not None:
        write_json(
            summary_path,
            {
                "epochs": len(rows),
                "best_epoch": best["epoch"],
                "best_val_loss": best["val_loss"],
                "stopped_early": result.stopped_early,
                "total_seconds": sum(r["seconds"] for r in rows),
                "mean_samples_per_s": sum(r["samples_per_s"] for r in rows) / len(rows),
                "parameters": result.model.parameter_names,
                "weights": count_parameters(result.model),
            },
        )


# --------------------------------------------------------------------------------------------
# The waveform shards as a batch source


class ShardBatchSource:
    """Training batches from the waveform shards, assembled on the fly on the training device.

    The last ``validation-fraction`` of the dataset's rows is held out: its waveforms are never
    trained on. Training rows are streamed a block at a time (blocks visited in a seeded random
    order per epoch and rank, rows shuffled within a buffer of about two blocks), so memory
    stays at a few blocks whatever the dataset size. Each batch of waveforms becomes a batch of
    tokens through the :class:`~twinflow.gw.tokens.BatchAssembler` (extrinsic parameters,
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
    ):
        self.dataset, self.assembler, self.seed = dataset, assembler, seed
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
        return self.assembler(waveforms)

    def _waveform_stream(self, epoch: int, rank: int, batch_size: int) -> Iterator[dict]:
        """Yield training waveform batches without end (passes over the training rows)."""
        rng = numpy_rng(self.seed, "train-order", epoch, rank)
        reserve = min(
            self.block_size, self.n_train // 2
        )  # rows kept back to mix with the next block
        buffer = None
        while True:
            for b in rng.permutation(len(self.train_blocks)):
                block = self.dataset.read(*self.train_blocks[b])
                buffer = (
                    block
                    if buffer is None
                    else {k: np.concatenate([buffer[k], block[k]]) for k in block}
                )
                perm = rng.permutation(len(buffer["h_plus"]))
                buffer = {k: v[perm] for k, v in buffer.items()}
                while len(buffer["h_plus"]) >= batch_size + reserve:
                    yield {k: v[:batch_size] for k, v in buffer.items()}
                    buffer = {k: v[batch_size:] for k, v in buffer.items()}

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


# --------------------------------------------------------------------------------------------
# Distributed setup


def init_distributed(preference: str) -> tuple[torch.device, int, int]:
    """Return (device, rank, world size), joining the torchrun process group if there is one.

    With ``WORLD_SIZE`` > 1 (set by torchrun) this process uses NCCL on its own GPU
    (``LOCAL_RANK``) when CUDA is available, otherwise gloo on the CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = select_device(preference)
    if world <= 1:
        return device, 0, 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        dist.init_process_group("nccl")
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    return device, dist.get_rank(), dist.get_world_size()


def configure_threads_for_rank(world: int) -> None:
    """Share the CPU threads allotted to the job between the ranks on this node."""
    threads = int(os.environ.get("OMP_NUM_THREADS", 0)) or len(os.sched_getaffinity(0))
    configure_cpu_threads(
        max(1, threads // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    )


# --------------------------------------------------------------------------------------------
# The stage


def parameter_statistics(
    prior, names: Sequence[str], seed: int, n: int = 100_000
) -> tuple[list, list]:
    """Return the prior mean and standard deviation of each parameter (Monte Carlo, seeded)."""
    from twinflow.gw.prior import sample

    draws = sample({k: prior[k] for k in names}, n, numpy_rng(seed, "standardisation"))
    return [float(np.mean(draws[k])) for k in names], [float(np.std(draws[k])) for k in names]


def train_posterior_model(
    settings: Mapping,
    *,
    dataset_index: str | Path,
    psd_banks: Sequence[str | Path],
    model_path: str | Path,
    metrics_path: str | Path,
    plot_path: str | Path,
    summary_path: str | Path | None = None,
    state_path: str | Path | None = None,
    log=print,
) -> TrainResult:
    """The ``gw train`` stage: train on the dataset at ``dataset_index`` and write the model.

    ``settings`` = ``{"train": gw.train, "batch": the on-the-fly batch settings}``
    (:func:`twinflow.gw.settings.train_settings_for`). Writes the best model
    (``gw-posterior-model`` checkpoint), the per-epoch metrics CSV, the loss-curve plot and a
    JSON summary; ``state_path`` (default: beside the model) holds the per-epoch training
    state while training runs and is removed once the outputs are written.
    """
    from twinflow.gw.dataset import WaveformDataset
    from twinflow.gw.prior import build_prior, sampled_parameters
    from twinflow.gw.psd import load_psd_bank
    from twinflow.gw.tokens import BatchAssembler, check_batch_settings

    train, batch_settings = dict(settings["train"]), dict(settings["batch"])
    check_train_settings(train)
    check_batch_settings(batch_settings)
    dataset = WaveformDataset(dataset_index)
    banks = {}
    for path in psd_banks:
        bank = load_psd_bank(path)
        banks[bank.detector] = bank
    prior = build_prior({**dataset.settings["prior"], **batch_settings["prior"]})
    free = sampled_parameters(prior)
    names = train["parameters"] or free
    unknown = [n for n in names if n not in free]
    require(
        not unknown,
        "train.parameters",
        names,
        f"names of non-fixed prior parameters ({free}); {unknown} are fixed or not in the prior",
    )
    state_path = (
        Path(state_path) if state_path is not None else Path(model_path).with_suffix(".state.pt")
    )

    device, rank, world = init_distributed(train["device"])
    if device.type == "cpu":
        configure_threads_for_rank(world)
    try:
        assembler = BatchAssembler(
            batch_settings,
            dataset.domain,
            banks,
            dataset.reference_distance,
            dataset.parameters,
            device=device,
            seed=train["seed"],
        )
        require(
            train["batch-size"] % world == 0,
            "train.batch-size",
            train["batch-size"],
            f"a multiple of the number of data-parallel ranks ({world})",
        )
        mean, std = parameter_statistics(prior, names, train["seed"])
        ds = dataset.settings
        metadata = {
            "detectors": assembler.detectors,
            "frequency_scale": float(batch_settings["maximum-frequency"]),
            "analysis": {
                "detectors": assembler.detectors,
                **{
                    k: batch_settings[k]
                    for k in (
                        "duration",
                        "sampling-frequency",
                        "minimum-frequency",
                        "maximum-frequency",
                    )
                },
            },
            "inputs": assembler.describe(),
            "waveforms": {
                k: ds[k] for k in ("approximant", "reference-frequency", "reference-distance")
            },
            "prior": {**ds["prior"], **batch_settings["prior"]},
            # Free prior parameters the model does not infer: it marginalises over them.
            "marginalised": [n for n in free if n not in names],
        }
        source = ShardBatchSource(
            dataset,
            assembler,
            parameter_names=names,
            statistics=(mean, std),
            metadata=metadata,
            seed=train["seed"],
            validation_fraction=train["validation-fraction"],
            validation_size=train["validation-size"],
        )
        if rank == 0:
            log(
                f"dataset: {len(dataset)} waveforms ({source.n_train} training, {source.n_validation} held out); "
                f"{assembler.n_tokens} tokens per sample before masking; {world} rank(s) on {device}"
            )
        result = fit(train, source, state_path=state_path, device=device, log=log)
        if rank == 0:
            write_training_outputs(
                result,
                model_path=model_path,
                metrics_path=metrics_path,
                plot_path=plot_path,
                summary_path=summary_path,
            )
            state_path.unlink(missing_ok=True)
        return result
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
