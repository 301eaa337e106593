"""The training stage: check the settings, build the data source and the model, train, write.

:func:`train_posterior_model` is what `twinflow gw train` and the `gw_train` rule run; the
loop itself is :func:`twinflow.gw.training.loop.fit`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch.distributed as dist

from twinflow.core.seeding import numpy_rng
from twinflow.core.settings import require
from twinflow.gw.training.batch_source import ShardBatchSource
from twinflow.gw.training.distributed import configure_threads_for_rank, init_distributed
from twinflow.gw.training.loop import TrainResult, fit, write_training_outputs
from twinflow.gw.training.model import SVD_TOKEN_EDGES
from twinflow.gw.validation import check_train_settings

#: The token masks of an embedding trained without them: every detector and token kept.
NO_MASKS = {
    "detector-drop-probabilities": [1.0],
    "minimum-frequency": {"probability": 0.0, "maximum": 0.0},
    "maximum-frequency": {"probability": 0.0, "minimum": 0.0},
    "notches": {"probability": 0.0, "max-count": 1, "max-width": 0.0},
    "independent-detectors": True,
}


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
    from twinflow.gw.dataset.batches import BatchAssembler, check_batch_settings
    from twinflow.gw.dataset.shards import WaveformDataset
    from twinflow.gw.prior import build_prior, sampled_parameters
    from twinflow.gw.psd import load_psd_bank

    train, batch_settings = dict(settings["train"]), dict(settings["batch"])
    check_train_settings(train)
    check_batch_settings(batch_settings)
    dataset = WaveformDataset(dataset_index)
    dataset.verify()  # a corrupt shard stops training here, not mid-epoch
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
        svd_mlp = train["model"].get("embedding", "transformer") == "svd-mlp"
        if svd_mlp:
            # No token masks: the model sees every detector and token of the band, and its
            # checkpoint says so, so inference warns about any other analysis setting.
            metadata["inputs"]["masks"] = NO_MASKS
            metadata[SVD_TOKEN_EDGES] = [
                float(lo)
                for lo, hi in assembler.domain.token_edges
                if lo >= assembler.f_min - 1e-9 and hi <= assembler.f_max + 1e-9
            ]
        source = ShardBatchSource(
            dataset,
            assembler,
            parameter_names=names,
            statistics=(mean, std),
            metadata=metadata,
            seed=train["seed"],
            validation_fraction=train["validation-fraction"],
            validation_size=train["validation-size"],
            masks=not svd_mlp,
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
