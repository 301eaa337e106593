"""Every check of the glitch settings, torch-free: data, real noise, losses, models, training,
subtraction and VAE, so :func:`twinflow.glitch.settings.check_config` checks the whole glitch
section when the Snakefile is parsed, before any job runs. Each stage runs its own check again
when it starts (by hand, too).

This module is longer than 400 lines on purpose: it is the one place a reader looks for what a
glitch setting may be (the data settings alone cover nine glitch shapes and the coupling).
"""

from __future__ import annotations

from collections.abc import Mapping

import h5py
import numpy as np

from twinflow.core.settings import (
    DEVICE_CHOICES,
    require,
    require_choice,
    require_file,
    require_nyquist,
    require_positive,
)

LOSSES = ("l1", "mse", "log-cosh", "ssim-mix")
LOSS_DOMAINS = ("scaled", "amplitude")
SCHEDULES = ("constant", "cosine")
TARGETS = ("auto", "observed", "expected")


def check_loss_settings(
    name: str,
    ssim_weight: float,
    peak_weight: float = 0.0,
    witness_weight: float = 0.0,
    domain: str = "scaled",
) -> None:
    require_choice("loss", name, LOSSES)
    require_choice("loss-domain", domain, LOSS_DOMAINS)
    for key, weight in (("peak-weight", peak_weight), ("witness-weight", witness_weight)):
        require(
            isinstance(weight, (int, float)) and weight >= 0,
            key,
            weight,
            "a number >= 0 (0: every pixel weighs the same)",
        )
    require(
        isinstance(ssim_weight, (int, float)) and 0 <= ssim_weight <= 1,
        "ssim-weight",
        ssim_weight,
        "a weight in [0, 1]",
    )


ARCHITECTURES = ("decoder-shallow", "decoder-deep", "unet")


def check_model_settings(settings: Mapping, image_size: int) -> None:
    require_choice("model", settings["model"], ARCHITECTURES)
    require(
        isinstance(settings["width"], int) and settings["width"] >= 1,
        "width",
        settings["width"],
        "an integer >= 1",
    )
    depth = settings["depth"]
    require(isinstance(depth, int) and depth >= 1, "depth", depth, "an integer >= 1")
    if settings["model"] == "unet":
        require(
            image_size % 2**depth == 0,
            "depth",
            depth,
            f"a depth whose 2**depth divides image-size {image_size}",
        )


def check_subtraction_settings(settings: Mapping) -> None:
    require_positive("cluster-threshold", settings["cluster-threshold"])
    require_positive("mask-energy", settings["mask-energy"])
    require(
        isinstance(settings["gallery-size"], int) and settings["gallery-size"] >= 1,
        "gallery-size",
        settings["gallery-size"],
        "an integer >= 1",
    )


def check_optimiser_settings(settings: Mapping) -> None:
    for key in ("epochs", "batch-size", "patience"):
        require(
            isinstance(settings[key], int) and settings[key] >= 1,
            key,
            settings[key],
            "an integer >= 1",
        )
    require_positive("learning-rate", settings["learning-rate"])
    require_positive("weight-decay", settings["weight-decay"], allow_zero=True)
    require(isinstance(settings["seed"], int), "seed", settings["seed"], "an integer")

    require_choice("device", settings["device"], DEVICE_CHOICES)


def check_translation_settings(settings: Mapping, image_size: int) -> None:

    check_model_settings(settings, image_size)
    check_loss_settings(
        settings["loss"],
        settings["ssim-weight"],
        settings["peak-weight"],
        settings["witness-weight"],
        settings["loss-domain"],
    )
    require_choice("schedule", settings["schedule"], SCHEDULES)
    require_choice("target", settings["target"], TARGETS)
    check_optimiser_settings(settings)


RECONSTRUCTION_LOSSES = ("bce", "mse", "spectral")

ACTIVATIONS = ("sigmoid", "none")

SCORES = ("reconstruction", "elbo", "energy-max", "combined")
COVARIANCES = ("diagonal", "low-rank", "full")

#: The output activation each reconstruction loss needs.
ACTIVATION_FOR_LOSS = {"bce": "sigmoid", "mse": "none", "spectral": "none"}


def check_vae_settings(settings: Mapping, image_size: int | None = None) -> None:
    """Raise :class:`ConfigError` for the first invalid VAE setting."""
    size = settings.get("image-size") if image_size is None else image_size
    require(
        isinstance(size, int) and size >= 16 and size % 16 == 0,
        "image-size",
        size,
        "a multiple of 16 (the VAE halves the image four times and upsamples by 4 twice)",
    )
    require(
        isinstance(settings["latent-dim"], int) and settings["latent-dim"] >= 1,
        "latent-dim",
        settings["latent-dim"],
        "an integer >= 1",
    )
    dropout = settings["dropout"]
    require(
        isinstance(dropout, (int, float)) and 0 <= dropout < 1,
        "dropout",
        dropout,
        "a probability in [0, 1)",
    )
    require_choice("loss", settings["loss"], RECONSTRUCTION_LOSSES)
    require_choice("output-activation", settings["output-activation"], ACTIVATIONS)
    needed = ACTIVATION_FOR_LOSS[settings["loss"]]
    require(
        settings["output-activation"] == needed,
        "output-activation",
        settings["output-activation"],
        f"{needed!r} with loss {settings['loss']!r} (sigmoid for bce; none for mse and spectral)",
    )
    require_positive("beta", settings["beta"], allow_zero=True)
    require_positive("fft-weight", settings["fft-weight"], allow_zero=True)
    require_choice("covariance", settings["covariance"], COVARIANCES)
    rank = settings["covariance-rank"]
    require(
        isinstance(rank, int) and 1 <= rank <= settings["latent-dim"],
        "covariance-rank",
        rank,
        f"an integer in [1, latent-dim = {settings['latent-dim']}]",
    )


def check_score_settings(settings: Mapping) -> None:
    """Raise :class:`ConfigError` for an invalid scoring setting."""
    require_choice("score", settings["score"], SCORES)
    require_positive("snr-threshold", settings["snr-threshold"], allow_zero=True)


GLITCH_TYPES = (
    "sine-gaussian",
    "blip",
    "scattered-light",
    "koi-fish",
    "tomte",
    "whistle",
    "wandering-line",
    "repeated-blips",
)

NOISE_CURVES = ("aLIGO-O3-low", "AdV-O3-low")

SOURCES = ("simulate", "files")

NOISE_SOURCES = ("gaussian", "real-recoloured")


def _require_range(key: str, value, low: float = 0.0, allow_equal: bool = True) -> None:
    ok = (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )
    ok = ok and value[0] > low and (value[0] <= value[1] if allow_equal else value[0] < value[1])
    require(ok, key, value, f"a pair [low, high] with {low} < low <= high")


def check_data_settings(settings: Mapping, image_band: tuple[float, float] | None = None) -> None:
    """Raise :class:`ConfigError` for the first invalid data setting, before any work.

    ``image_band`` (the Q-transform's frequency range) bounds the glitch frequencies from
    below: glitches must fall inside the images. With ``source: files`` only the keys that
    describe the data (sampling frequency, duration, n-auxiliary, ``files``) are checked: the
    simulator's are not used.
    """
    require_choice("source", settings["source"], SOURCES)
    for key in ("sampling-frequency", "duration"):
        require_positive(key, settings[key])
    if settings["source"] == "files":
        from twinflow.glitch.detector_files import check_files_settings

        k = settings["n-auxiliary"]
        require(isinstance(k, int) and k >= 1, "n-auxiliary", k, "an integer >= 1")
        check_files_settings(settings)
        return
    require_choice("noise-source", settings["noise-source"], NOISE_SOURCES)
    if settings["noise-source"] != "gaussian":
        check_real_noise_settings(settings)
    for key in ("witness-snr-ratio", "low-frequency-cutoff"):
        require_positive(key, settings[key])
    for key in ("n-shards", "samples-per-shard"):
        require(
            isinstance(settings[key], int) and settings[key] >= 1,
            key,
            settings[key],
            "an integer >= 1",
        )
    k = settings["n-auxiliary"]
    require(
        isinstance(k, int) and k >= 1,
        "n-auxiliary",
        k,
        "an integer >= 1 (the witness channels to translate from)",
    )
    fs, duration = settings["sampling-frequency"], settings["duration"]
    require(
        float(fs * duration).is_integer(),
        "duration",
        duration,
        f"duration x sampling-frequency must be a whole number of samples (fs = {fs} Hz)",
    )
    clean = settings["clean-fraction"]
    require(
        isinstance(clean, (int, float)) and 0 <= clean <= 1,
        "clean-fraction",
        clean,
        "a fraction in [0, 1]",
    )
    require_choice("noise-curve", settings["noise-curve"], NOISE_CURVES)

    glitch = settings["glitch"]
    weights = glitch["types"]
    require(
        isinstance(weights, Mapping) and len(weights) > 0,
        "glitch.types",
        weights,
        f"a mapping from glitch type ({list(GLITCH_TYPES)}) to a weight",
    )
    for name, weight in weights.items():
        require_choice("glitch.types", name, GLITCH_TYPES)
        require_positive(f"glitch.types.{name}", weight, allow_zero=True)
    require(sum(weights.values()) > 0, "glitch.types", weights, "at least one weight > 0")
    for key in (
        "snr",
        "frequency",
        "q",
        "blip-width",
        "arch-frequency",
        "arch-duration",
        *MORPHOLOGY_RANGES,
    ):
        _require_range(f"glitch.{key}", glitch[key])
    require_positive("glitch.koi-tail-amplitude", glitch["koi-tail-amplitude"])
    require(
        isinstance(glitch["repeat-count"], int) and glitch["repeat-count"] >= 2,
        "glitch.repeat-count",
        glitch["repeat-count"],
        "an integer >= 2 (the most blips in a repeated-blips glitch)",
    )
    for key in ("koi-tail-frequency", "tomte-frequency", "whistle-frequency", "line-frequency"):
        require_nyquist(f"glitch.{key}", glitch[key][1], fs)
    require(
        glitch["whistle-duration"][1] <= duration / 2,
        "glitch.whistle-duration",
        glitch["whistle-duration"],
        f"durations of at most half the sample ({duration / 2:g} s)",
    )
    span = glitch["repeat-spacing"][1] * (glitch["repeat-count"] - 1)
    require(
        span <= duration / 2,
        "glitch.repeat-spacing",
        glitch["repeat-spacing"],
        f"spacings whose (repeat-count - 1) multiple stays within half the sample "
        f"({duration / 2:g} s; now {span:g} s)",
    )
    require_positive("glitch.time-jitter", glitch["time-jitter"], allow_zero=True)
    require(
        glitch["time-jitter"] < duration / 4,
        "glitch.time-jitter",
        glitch["time-jitter"],
        f"less than a quarter of the sample duration ({duration / 4:g} s)",
    )
    nyquist_limit = fs / 2
    require_nyquist("glitch.frequency", glitch["frequency"][1], fs)
    require_nyquist("glitch.arch-frequency", glitch["arch-frequency"][1], fs)
    require(
        1 / (2 * np.pi * glitch["blip-width"][0]) < nyquist_limit,
        "glitch.blip-width",
        glitch["blip-width"],
        f"widths whose peak frequency 1/(2 pi width) stays below the Nyquist frequency {nyquist_limit:g} Hz",
    )
    if image_band is not None:
        q_minimum_frequency = image_band[0]
        for key in (
            "frequency",
            "arch-frequency",
            "koi-tail-frequency",
            "tomte-frequency",
            "whistle-frequency",
            "line-frequency",
        ):
            require(
                glitch[key][0] >= q_minimum_frequency,
                f"glitch.{key}",
                glitch[key],
                f"frequencies >= the Q-transform's lower frequency {q_minimum_frequency:g} Hz "
                "(glitches must fall inside the images)",
            )
        blip_peak = 1 / (2 * np.pi * glitch["blip-width"][1])
        require(
            blip_peak >= q_minimum_frequency,
            "glitch.blip-width",
            glitch["blip-width"],
            f"widths whose peak frequency 1/(2 pi width) is >= the Q-transform's lower frequency "
            f"{q_minimum_frequency:g} Hz (the widest here peaks at {blip_peak:.1f} Hz)",
        )

    coupling = settings["coupling"]
    for key in ("gain", "delay", "lowpass", "quadratic"):
        values = coupling[key]
        require(
            isinstance(values, list) and len(values) == k,
            f"coupling.{key}",
            values,
            f"a list with one entry per auxiliary channel (n-auxiliary = {k})",
        )
    for i in range(k):
        require_positive(f"coupling.gain[{i}]", coupling["gain"][i])
        delay = coupling["delay"][i]
        require(
            isinstance(delay, (int, float)) and abs(delay) < duration / 4,
            f"coupling.delay[{i}]",
            delay,
            f"a delay in seconds with |delay| < duration / 4 = {duration / 4:g} s",
        )
        cutoff = coupling["lowpass"][i]
        if cutoff is not None:
            require_positive(f"coupling.lowpass[{i}]", cutoff)
            require(
                cutoff < fs / 2,
                f"coupling.lowpass[{i}]",
                cutoff,
                f"a cutoff below the Nyquist frequency {fs / 2:g} Hz, or null for no filter",
            )
        q = coupling["quadratic"][i]
        require(
            isinstance(q, (int, float)) and q >= 0, f"coupling.quadratic[{i}]", q, "a number >= 0"
        )

    chirps = settings["chirps"]
    frac = chirps["fraction"]
    require(
        isinstance(frac, (int, float)) and 0 <= frac <= 1,
        "chirps.fraction",
        frac,
        "a fraction in [0, 1]",
    )
    _require_range("chirps.snr", chirps["snr"])
    _require_range("chirps.chirp-mass", chirps["chirp-mass"])
    require_positive("chirps.time-jitter", chirps["time-jitter"], allow_zero=True)
    require(
        chirps["time-jitter"] < duration / 4,
        "chirps.time-jitter",
        chirps["time-jitter"],
        f"less than a quarter of the sample duration ({duration / 4:g} s)",
    )


#: Ranges [low, high] of the parameters of the Gravity-Spy-like classes (see the docstring).
MORPHOLOGY_RANGES = (
    "koi-tail-frequency",
    "tomte-frequency",
    "whistle-frequency",
    "whistle-duration",
    "line-frequency",
    "line-excursion",
    "repeat-spacing",
)


def check_real_noise_settings(settings: Mapping) -> None:
    """Raise :class:`ConfigError` for the first invalid ``real-noise`` setting."""
    real = settings["real-noise"]
    paths = real["paths"]
    require(
        isinstance(paths, list) and len(paths) > 0,
        "real-noise.paths",
        paths,
        f"a list of GWOSC HDF5 strain files (noise-source is {settings['noise-source']!r})",
    )
    for path in paths:
        path = require_file("real-noise.paths", path)
        require(
            h5py.is_hdf5(path),
            "real-noise.paths",
            str(path),
            "GWOSC strain files in HDF5 (gwpy format hdf5.gwosc)",
        )
    require(
        isinstance(real["veto-gps"], list)
        and all(isinstance(t, (int, float)) for t in real["veto-gps"]),
        "real-noise.veto-gps",
        real["veto-gps"],
        "a list of GPS times [s] to keep out (e.g. known events)",
    )
    require_positive("real-noise.veto-window", real["veto-window"], allow_zero=True)


WHITEN_FDURATION = 2.0  # s, gwpy's whitening filter length; half of it is cut at each edge


def n_samples(settings: Mapping) -> int:
    return int(round(settings["sampling-frequency"] * settings["duration"]))
