"""Resolve the settings each glitch stage runs with from the ``glitch`` section of the config.

The workflow (``workflow/rules/glitch.smk``) and the CLI both call :func:`stage_settings`, so a
rule's ``params:`` and a by-hand run see the same values, and each stage gets only the keys it
uses (editing the VAE's score threshold does not retrain anything).
"""

from __future__ import annotations

from collections.abc import Mapping

from twinflow.core.settings import require_choice

VAE_TRAIN_KEYS = (
    "latent-dim",
    "dropout",
    "loss",
    "output-activation",
    "beta",
    "fft-weight",
    "covariance",
    "covariance-rank",
    "epochs",
    "batch-size",
    "learning-rate",
    "weight-decay",
    "patience",
    "seed",
    "device",
)
VAE_SCORE_KEYS = ("score", "snr-threshold", "device")
STAGES = ("simulate", "load", "images", "train-translation", "subtract", "train-vae", "score-vae")


def stage_settings(glitch: Mapping, stage: str) -> dict:
    """Return the settings of ``stage`` (one of :data:`STAGES`) from the glitch section."""
    require_choice("stage", stage, STAGES)
    if stage == "simulate":
        return {"data": dict(glitch["data"]), "image-band": list(glitch["qtransform"]["frange"])}
    if stage == "load":
        return {"data": dict(glitch["data"])}
    if stage == "images":
        return {"data": dict(glitch["data"]), "qtransform": dict(glitch["qtransform"])}
    if stage == "train-translation":
        return dict(glitch["translation"])
    if stage == "subtract":
        return dict(glitch["subtraction"])
    keys = VAE_TRAIN_KEYS if stage == "train-vae" else VAE_SCORE_KEYS
    return {key: glitch["vae"][key] for key in keys}


def data_input_files(glitch: Mapping) -> list[str]:
    """Return the files the data stage reads: the detector data and trigger list (source
    files), or the real strain of the background (noise-source real-recoloured); else none."""
    data = glitch["data"]
    if data["source"] == "files":
        triggers = data["files"]["triggers"]
        return [*data["files"]["paths"], *([] if triggers is None else [triggers])]
    if data["noise-source"] != "gaussian":
        return list(data["real-noise"]["paths"])
    return []


def check_config(glitch: Mapping) -> None:
    """Check the whole glitch section, so a bad setting stops the workflow before any job runs.

    Each stage checks its own settings again when it runs (by hand, too).
    """
    from twinflow.core.settings import ConfigError, require
    from twinflow.glitch.qtransform import check_qtransform_settings
    from twinflow.glitch.validation import (
        check_data_settings,
        check_score_settings,
        check_subtraction_settings,
        check_translation_settings,
        check_vae_settings,
    )

    data, qtransform = glitch["data"], glitch["qtransform"]
    checks = (
        ("data", lambda: check_data_settings(data, qtransform["frange"])),
        (
            "qtransform",
            lambda: check_qtransform_settings(
                qtransform, data["sampling-frequency"], data["duration"]
            ),
        ),
        (
            "translation",
            lambda: check_translation_settings(glitch["translation"], qtransform["image-size"]),
        ),
        (
            "translation",
            lambda: require(
                data["source"] == "simulate" or glitch["translation"]["target"] != "expected",
                "target",
                glitch["translation"]["target"],
                "'observed' or 'auto' with data.source files (detector data has no glitch-alone "
                "truth)",
            ),
        ),
        ("subtraction", lambda: check_subtraction_settings(glitch["subtraction"])),
        ("vae", lambda: check_vae_settings(glitch["vae"], qtransform["image-size"])),
        ("vae", lambda: check_score_settings(glitch["vae"])),
    )
    for section, check in checks:
        try:
            check()
        except ConfigError as err:
            raise ConfigError(f"glitch.{section}: {err}") from None
