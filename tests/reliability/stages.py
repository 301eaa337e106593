"""The long stages of each branch, set up small for killing (see kill_and_rerun.check_kills).

Each function returns a :class:`~tests.reliability.kill_and_rerun.Stage` writing into
``folder``; training runs a few epochs more than config/test.yaml, and kills land after the
first epoch's state is written, so the rerun resumes from it.
"""

from __future__ import annotations

from pathlib import Path

from tests.reliability.kill_and_rerun import Stage


def glitch_translation(folder: Path, glitch: dict, images: Path, epochs: int = 3) -> Stage:
    from twinflow.glitch.settings import stage_settings
    from twinflow.glitch.train import train_translation

    settings = {**stage_settings(glitch, "train-translation"), "epochs": epochs}
    settings["patience"] = epochs
    out, metrics, plot, state = (
        folder / name for name in ("model.pt", "metrics.csv", "loss.png", "state.pt")
    )
    return Stage(
        "glitch train-translation",
        lambda log: train_translation(settings, images, out, metrics, plot, state=state, log=log),
        outputs=[out, metrics],
        state=[state, plot],
        phase=state,  # kills land after the first epoch's state is written
    )


def glitch_vae(folder: Path, glitch: dict, images: Path, epochs: int = 3) -> Stage:
    from twinflow.glitch.settings import stage_settings
    from twinflow.glitch.vae import train_vae

    settings = {**stage_settings(glitch, "train-vae"), "epochs": epochs, "patience": epochs}
    out, metrics, plot, state = (
        folder / name for name in ("model.pt", "metrics.csv", "loss.png", "state.pt")
    )
    return Stage(
        "glitch train-vae",
        lambda log: train_vae(settings, images, out, metrics, plot, state=state, log=log),
        outputs=[out, metrics],
        state=[state, plot],
        phase=state,  # kills land after the first epoch's state is written
    )


def anomaly_sideband_flow(folder: Path, anomaly: dict, events: Path, epochs: int = 4) -> Stage:
    from twinflow.anomaly.scan import train_sideband_flow
    from twinflow.anomaly.settings import sideband_flow_settings

    settings = sideband_flow_settings(anomaly, 0)
    settings["flow"] = {**settings["flow"], "epochs": epochs, "patience": epochs}
    out = folder / "sideband_flow.pt"
    return Stage(
        "anomaly sideband-flow",
        lambda log: train_sideband_flow(settings, events, out),
        outputs=[out],
    )


def anomaly_sigma(folder: Path, anomaly: dict, events: Path, epochs: int = 20) -> Stage:
    from twinflow.anomaly.scan import train_sigma
    from twinflow.anomaly.settings import sigma_settings

    settings = sigma_settings(anomaly)
    settings["sigma"] = {**settings["sigma"], "epochs": epochs}
    out = folder / "sigma.pt"
    return Stage(
        "anomaly train-sigma", lambda log: train_sigma(settings, events, out), outputs=[out]
    )


def gw_inference(folder: Path) -> Stage:
    """Per-event inference of an injection with a small untrained model (the one of
    tests/gw/test_inference.py): its network ESS is far below the target, so refinement with
    the exact likelihood runs, and the kills are placed inside it."""
    from tests.gw.test_inference import PRIOR, SETTINGS, injection, tiny_model
    from twinflow.gw.inference.outputs import write_event_outputs
    from twinflow.gw.inference.posterior import analyse_event
    from twinflow.gw.prior import build_prior, sampled_parameters
    from twinflow.gw.training.model import load_posterior_model

    prior = build_prior(PRIOR)
    tiny_model(folder / "model.pt", sampled_parameters(prior))
    out = folder / "event"
    refinement = {**SETTINGS["refinement"], "max-likelihood-evaluations": 600, "batch-size": 150}
    settings = {**SETTINGS, "n-samples": 300, "batch-size": 150, "refinement": refinement}

    def run(log):
        model = load_posterior_model(folder / "model.pt")
        posterior = analyse_event(injection(), model, prior, settings, processes=1, log=log)
        write_event_outputs(posterior, out, prior, settings)

    return Stage(
        "gw inference (refinement)",
        run,
        outputs=[out / "posterior.h5", out / "summary.json", out / "result.json"],
        phase="refining",
    )


def gw_training(folder: Path, gw: dict, epochs: int = 4) -> Stage:
    """gw training on config/test.yaml's dataset (its two shards) and PSD banks, made here;
    ``epochs`` more than the test configuration's, so kills land in several epochs. (For the
    benchmark: tests/gw/test_train.py checks the exact resume.)"""
    from twinflow.gw.dataset.grid import resolve_domain
    from twinflow.gw.dataset.shards import simulate_shard, write_index
    from twinflow.gw.psd import estimate_psd_bank
    from twinflow.gw.settings import (
        dataset_domain_settings_for,
        dataset_shard_settings_for,
        psd_settings_for,
        train_settings_for,
    )
    from twinflow.gw.training.stage import train_posterior_model

    quiet = {"log": lambda *a: None}
    resolve_domain(dataset_domain_settings_for(gw), folder / "domain.json", **quiet)
    shard_settings = dataset_shard_settings_for(gw)
    shards = [folder / f"shard-{i}.h5" for i in range(gw["dataset"]["n-shards"])]
    for i, path in enumerate(shards):
        simulate_shard(shard_settings, folder / "domain.json", i, path, **quiet)
    write_index(shards, folder / "index.json")
    banks = [folder / f"{d}.h5" for d in gw["detectors"]]
    for detector, path in zip(gw["detectors"], banks, strict=True):
        estimate_psd_bank(psd_settings_for(gw, detector), path, **quiet)
    settings = train_settings_for(gw)
    settings["train"] = {**settings["train"], "epochs": epochs}
    settings["train"]["early-stopping-patience"] = epochs
    out = folder / "train"
    model, metrics, plot, summary, state = (
        out / name for name in ("model.pt", "metrics.csv", "loss.png", "summary.json", "state.pt")
    )
    out.mkdir(exist_ok=True)
    return Stage(
        "gw train",
        lambda log: train_posterior_model(
            settings,
            dataset_index=folder / "index.json",
            psd_banks=banks,
            model_path=model,
            metrics_path=metrics,
            plot_path=plot,
            summary_path=summary,
            state_path=state,
            log=log,
        ),
        outputs=[model, metrics, summary],
        state=[state, plot],
        phase=state,  # kills land after the first epoch's state is written
    )
