"""Training for the glitch branch: a resumable loop shared by the translation model and the VAE,
and the translation-training stage.

The loop trains with Adam on in-memory tensors, batches shuffled by a generator seeded per
epoch; it validates every epoch, keeps the best weights, stops early after ``patience`` epochs
without improvement, and after every epoch writes a state checkpoint (model, optimiser, early
stopping, metric rows, best weights, RNG states). A rerun with the same settings and data
resumes from it; any change of settings or data starts afresh.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from twinflow.core.checkpoint import (
    EarlyStopping,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from twinflow.core.device import configure_cpu_threads, select_device, to_device
from twinflow.core.io import dumps_settings, quarantine_if_damaged
from twinflow.core.metrics_log import plot_loss_curve, write_metrics_csv
from twinflow.core.progress import progress
from twinflow.core.seeding import derive_seed, seed_everything
from twinflow.core.settings import require
from twinflow.glitch.validation import check_translation_settings

TRANSLATION_KIND = "glitch-translation-model"


def fingerprint(*arrays: np.ndarray) -> str:
    """Return a short hash of arrays (to tell whether a resumable state belongs to these data)."""
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a).view(np.uint8)[: 1 << 22].tobytes())
        h.update(str(a.shape).encode())
    return h.hexdigest()[:16]


def training_identity(settings: Mapping, *arrays: np.ndarray) -> str:
    """Return what a resumable state must match: the settings (except ``epochs`` and
    ``patience``, so a run can be extended; ``epochs`` counts under a cosine schedule) and a
    fingerprint of the training data."""
    # a cosine schedule is a function of ``epochs``: changing it changes every epoch's rate
    free = ("patience",) if settings.get("schedule") == "cosine" else ("epochs", "patience")
    kept = {k: v for k, v in settings.items() if k not in free}
    return dumps_settings({"settings": kept, "data": fingerprint(*arrays)})


def train_loop(
    model: torch.nn.Module,
    batch_loss: Callable,
    train: tuple[torch.Tensor, ...],
    validation: tuple[torch.Tensor, ...],
    settings: Mapping,
    *,
    state_path: str | Path,
    kind: str,
    identity: str,
    desc: str,
    log=print,
) -> tuple[dict, list[dict], torch.device]:
    """Train ``model``; return (best state dict, per-epoch metric rows, device).

    ``batch_loss(model, batch)`` returns the mean loss of a batch (a tuple of tensors on the
    device). ``identity`` (settings and data fingerprint) decides whether ``state_path`` may be
    resumed.
    """
    configure_cpu_threads()
    device = select_device(settings["device"])
    seed_everything(derive_seed(settings["seed"], kind))
    model.to(device)
    optimiser = torch.optim.Adam(
        model.parameters(), lr=settings["learning-rate"], weight_decay=settings["weight-decay"]
    )
    stopper = EarlyStopping(settings["patience"])
    rows: list[dict] = []
    best_state = copy.deepcopy(model.state_dict())
    start = 0
    state_path = Path(state_path)
    if state_path.is_file():
        try:
            state = load_checkpoint(state_path, kind=f"{kind}-state")
        except Exception as err:  # an unreadable state is no reason to fail: start afresh
            log(f"ignoring {state_path}: {err}")
            state = None
        if state is not None and state.get("identity") == identity:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            stopper.load_state_dict(state["early_stopping"])
            rows, best_state, start = list(state["rows"]), state["best"], int(state["epoch"])
            restore_rng_state(state["rng"])
            log(f"resuming from {state_path} after epoch {start}")
        elif state is not None:
            log(f"{state_path} was written with other settings or data: starting afresh")
    n_train = len(train[0])
    batch_size = min(settings["batch-size"], n_train)
    finished = bool(rows) and (
        start >= settings["epochs"] or stopper.bad_epochs >= settings["patience"]
    )
    for epoch in range(start, 0 if finished else settings["epochs"]):
        model.train()
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(settings, epoch)
        order = torch.randperm(
            n_train,
            generator=torch.Generator().manual_seed(derive_seed(settings["seed"], kind, epoch)),
        )
        total = 0.0
        bar = progress(
            range(0, n_train - batch_size + 1, batch_size),
            desc=f"{desc} epoch {epoch + 1}",
            unit="batch",
        )
        for first in bar:
            batch = to_device(tuple(t[order[first : first + batch_size]] for t in train), device)
            loss = batch_loss(model, batch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
        train_loss = total / max(1, n_train // batch_size)
        val_loss = evaluate(model, batch_loss, validation, batch_size, device)
        stop = stopper.step(val_loss)
        if stopper.improved:
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        rows.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss})
        log(
            f"epoch {epoch + 1}: train {train_loss:.5g}, validation {val_loss:.5g}"
            + (" *" if stopper.improved else "")
        )
        save_checkpoint(
            state_path,
            kind=f"{kind}-state",
            settings=settings,
            identity=identity,
            epoch=epoch + 1,
            model=model.state_dict(),
            optimiser=optimiser.state_dict(),
            early_stopping=stopper.state_dict(),
            rows=rows,
            best=best_state,
            rng=capture_rng_state(),
        )
        if stop:
            log(
                f"early stopping after epoch {epoch + 1} (best validation loss {stopper.best:.5g})"
            )
            break
    return best_state, rows, device


def learning_rate(settings: Mapping, epoch: int) -> float:
    """Return the learning rate of ``epoch`` (from 0): ``learning-rate`` throughout, or with
    ``schedule: cosine`` decayed as lr (1 + cos(pi epoch / epochs)) / 2 (SGDR without restarts,
    Loshchilov & Hutter 2017). A function of the epoch alone, so a resumed run continues it.
    The VAE's settings have no ``schedule``: constant. A Python float: it lands in the
    optimiser's state, which the training checkpoint stores, and a numpy scalar there would
    make that checkpoint unreadable with ``weights_only=True``, so no run could resume."""
    lr = float(settings["learning-rate"])
    if settings.get("schedule", "constant") == "cosine":
        return lr * (1 + math.cos(math.pi * epoch / settings["epochs"])) / 2
    return lr


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batch_loss: Callable,
    data: tuple[torch.Tensor, ...],
    batch_size: int,
    device: torch.device,
) -> float:
    """Return the sample-weighted mean of ``batch_loss`` over ``data`` in eval mode."""
    model.eval()
    total, count = 0.0, 0
    for first in range(0, len(data[0]), batch_size):
        batch = to_device(tuple(t[first : first + batch_size] for t in data), device)
        n = len(batch[0])
        total += float(batch_loss(model, batch)) * n
        count += n
    return total / max(count, 1)


@torch.no_grad()
def predict(
    model: torch.nn.Module, inputs: torch.Tensor, device: torch.device, batch_size: int = 256
) -> torch.Tensor:
    """Return model(inputs) on the CPU, batched, in eval mode."""
    model.eval().to(device)
    return torch.cat(
        [
            model(to_device(inputs[i : i + batch_size], device)).cpu()
            for i in range(0, len(inputs), batch_size)
        ]
    )


# --------------------------------------------------------------------------------------------
# The translation stage


def train_translation(
    settings: Mapping,
    images: str | Path,
    out: str | Path,
    metrics: str | Path,
    plot: str | Path,
    state: str | Path | None = None,
    log=print,
) -> None:
    """Train the aux -> strain translation model on the training split of ``images``.

    Writes the best model (``out``, a checkpoint that rebuilds itself), the per-epoch metrics
    (CSV) and the loss-curve plot; ``state`` (default: beside ``out``) makes training resumable.
    """
    from twinflow.glitch.losses import make_translation_loss
    from twinflow.glitch.models import build_translation_model
    from twinflow.glitch.qtransform import load_images

    train_set = load_images(images, "train")
    val_set = load_images(images, "validation")
    size = train_set.strain.shape[-1]
    check_translation_settings(settings, size)
    require(
        train_set.truth or settings["target"] != "expected",
        "target",
        settings["target"],
        "'observed' or 'auto' for detector data (the glitch alone, which 'expected' needs, is "
        "unknown)",
    )
    in_channels = train_set.aux.shape[1]
    model_settings = {
        **{k: settings[k] for k in ("model", "width", "depth")},
        "in-channels": in_channels,
        "image-size": size,
    }
    seed_everything(derive_seed(settings["seed"], TRANSLATION_KIND, "init"))
    model = build_translation_model(model_settings, in_channels)
    scale = train_set.strain_scale
    loss_fn = make_translation_loss(
        settings, (float(scale.minimum[0]), float(scale.maximum[0]), scale.log)
    )

    def batch_loss(net, batch):
        aux, strain = batch
        return loss_fn(net(aux), strain, aux)

    target = settings["target"]
    if target == "auto":  # the noise-free target where the data carry the glitch alone
        target = "expected" if train_set.truth else "observed"
        log(f"target auto: training on the {target} strain images")
    tensors = [
        (torch.from_numpy(s.aux), torch.from_numpy(training_target(s, target))[:, None])
        for s in (train_set, val_set)
    ]
    identity = training_identity(settings, train_set.aux, train_set.strain)
    state = Path(state) if state is not None else Path(out).with_name(Path(out).stem + "-state.pt")
    best, rows, device = train_loop(
        model,
        batch_loss,
        tensors[0],
        tensors[1],
        settings,
        state_path=state,
        kind=TRANSLATION_KIND,
        identity=identity,
        desc="translation",
        log=log,
    )
    write_training_outputs(
        out,
        metrics,
        plot,
        kind=TRANSLATION_KIND,
        model_settings=model_settings,
        best=best,
        rows=rows,
        settings=settings,
        device=device,
        title=f"Glitch Flow translation ({settings['model']}, {settings['loss']})",
        ylabel=f"{settings['loss']} loss",
    )
    log(
        f"wrote {out} (best validation loss {min(r['val_loss'] for r in rows):.5g} after {len(rows)} epochs)"
    )


def training_target(image_set, target: str) -> np.ndarray:
    """Return the scaled strain images [N, S, S] the translation model learns to generate.

    ``observed``: the strain Q-plots themselves, noise included. ``expected``: the glitch
    alone's tile energy plus the noise mean b, which is E[T | glitch] (the glitch-noise cross
    term of ``|n + s|^2`` averages to zero): the same optimum as an energy loss on the observed
    images, without the unpredictable noise in the target (simulated data only).
    """
    from twinflow.glitch.qtransform import noise_energy_mean

    if target == "observed":
        return image_set.strain
    background = noise_energy_mean(image_set.settings["norm"])
    expected = image_set.labels["glitch_energy"] + background
    return image_set.strain_scale.transform(expected[:, None])[:, 0]


def load_translation_model(path: str | Path) -> torch.nn.Module:
    """Return the translation model stored by :func:`train_translation` (weights_only load)."""
    from twinflow.glitch.models import build_translation_model

    with quarantine_if_damaged(path):  # a damaged model is remade by its rule
        checkpoint = load_checkpoint(path, kind=TRANSLATION_KIND)
    model = build_translation_model(checkpoint["settings"], checkpoint["settings"]["in-channels"])
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def write_training_outputs(
    out, metrics, plot, *, kind, model_settings, best, rows, settings, device, title, ylabel
) -> None:
    """Write a trained model's outputs: the best weights as a ``kind`` checkpoint (with the
    settings that rebuild it, the training settings, the device and the CPU threads), the
    per-epoch metrics CSV and the loss-curve plot."""
    save_checkpoint(
        out,
        kind=kind,
        settings=model_settings,
        model=best,
        rows=rows,
        training=dict(settings),
        device=str(device),
        # on the CPU the thread count orders the floating-point sums: a model reproduces
        # exactly only at the same count
        cpu_threads=torch.get_num_threads(),
    )
    write_metrics_csv(metrics, rows)
    plot_loss_curve(plot, rows, title=title, ylabel=ylabel)
