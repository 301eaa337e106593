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
