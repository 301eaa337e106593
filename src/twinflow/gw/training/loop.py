"""Training the posterior model: NLL on simulated data, streamed from the waveform shards.

Each step draws a batch of waveforms from the training shards, and on the training device
draws extrinsic parameters, a PSD per detector, noise and a token mask, whitens and tokenizes
(:mod:`twinflow.gw.dataset.batches`), and minimises ``-log q(θ | d)`` with AdamW, gradient clipping and a
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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

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
    grad_scaler,
    to_device,
)
from twinflow.core.io import write_json
from twinflow.core.metrics_log import plot_loss_curve, write_metrics_csv
from twinflow.core.progress import progress
from twinflow.core.seeding import derive_seed
from twinflow.core.settings import ConfigError
from twinflow.gw.training.batch_source import BatchSource
from twinflow.gw.training.model import (
    PosteriorModel,
    build_model_settings,
    count_parameters,
    save_posterior_model,
)

STATE_KIND = "gw-training-state"


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


def out_of_time(budget: float | None, seconds: float) -> bool:
    """Return whether ``seconds`` of training have used up the time budget (None: no limit)."""
    return budget is not None and seconds >= budget


def fit_svd_basis(model: PosteriorModel, source: BatchSource, svd: Mapping, log=print) -> None:
    """Compute the svd-mlp embedding's basis from noise-free training waveforms and set it."""
    from twinflow.gw.training.svd_mlp import svd_basis, waveform_matrix

    t0 = time.process_time()
    encoder = model.encoder
    batches = source.noise_free_batches(svd["training-waveforms"])
    matrix = waveform_matrix(batches, encoder.token_lower_edges.cpu(), encoder.n_detectors)
    basis, singular = svd_basis(matrix, svd["basis-size"])
    encoder.set_basis(basis.to(encoder.basis_real.device))
    kept = float((singular[: svd["basis-size"]] ** 2).sum() / (singular**2).sum())
    log(
        f"svd-mlp: basis of {svd['basis-size']} vectors from {matrix.shape[0]} whitened waveform "
        f"rows x {matrix.shape[1]} bins keeps {100 * kept:.3f}% of their power "
        f"({time.process_time() - t0:.1f} s CPU)"
    )


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
    if model.embedding == "svd-mlp":
        fit_svd_basis(model, source, settings["model"]["svd-mlp"], log=log)
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
    budget = settings.get("time-budget")
    if budget is not None and world > 1:
        # Each rank would read its own clock and stop at a different step: DDP would hang.
        raise ConfigError(
            f"time-budget = {budget!r} needs single-process training; {world} ranks run here: "
            "set time-budget to null or train on one device"
        )
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
        loss_sum, n_seen, skipped, n_steps = 0.0, 0, 0, 0
        t_data = t_step = 0.0
        batches = iter(source.epoch_batches(epoch, steps, per_rank, rank))
        t_epoch = time.perf_counter()
        spent = sum(r["seconds"] for r in history)  # of earlier epochs, resumed ones included
        for _ in range(steps):
            if out_of_time(budget, spent + time.perf_counter() - t_epoch):
                break
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
            n_steps += 1
            bar.update()
            bar.set_postfix(
                loss=f"{loss_sum / n_seen:.3f}", samples_s=f"{n_seen * world / (t2 - t_epoch):.0f}"
            )
        bar.close()
        seconds = time.perf_counter() - t_epoch
        loss_sum, n_seen = _all_reduce_sum([loss_sum, n_seen], device)
        train_loss = loss_sum / n_seen if n_seen else float("nan")
        val_loss = validation_loss(net, source, per_rank, device, settings["amp"])
        lr = optimizer.param_groups[0]["lr"]
        if settings["scheduler"] == "cosine":
            scheduler.step()
        else:
            scheduler.step(val_loss)
        timed_out = out_of_time(budget, spent + seconds)
        stop = stopper.step(val_loss) or not math.isfinite(val_loss) or timed_out
        if stopper.improved:
            best_state = copy.deepcopy(model.state_dict())
        row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "learning_rate": lr,
            "seconds": seconds,
            "samples_per_s": n_seen / max(seconds, 1e-12),
            "batch_assembly_fraction": t_data / max(t_data + t_step, 1e-12),
            "skipped_steps": skipped,
            "steps": n_steps,
            "stop": stop,
        }
        history.append(row)
        if rank == 0:
            log(
                f"epoch {epoch + 1}: train {train_loss:.4f}  val {val_loss:.4f}  lr {lr:.2e}  "
                f"{row['samples_per_s']:.0f} samples/s  batch assembly {100 * row['batch_assembly_fraction']:.1f}%"
                + ("  (stopping early)" if stop and epoch + 1 < settings["epochs"] else "")
                + ("  (time budget spent)" if timed_out else "")
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
                "embedding": result.model.embedding,
                "steps": sum(r.get("steps", 0) for r in rows),
                "samples_per_s": sum(r["samples_per_s"] * r["seconds"] for r in rows)
                / max(sum(r["seconds"] for r in rows), 1e-12),
                "weights": count_parameters(result.model),
                "embedding_weights": count_parameters(result.model.encoder),
            },
        )
