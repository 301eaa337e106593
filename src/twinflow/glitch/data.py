"""Synthetic Glitch Flow data: a strain channel and K auxiliary (witness) channels.

Each sample is ``duration`` seconds of K + 1 channels at ``sampling-frequency``:

- Detector noise: stationary coloured Gaussian noise (``twinflow.core.noise``) with the PSD of a
  published sensitivity curve in strain; auxiliary channel k carries noise of the same shape at
  a level ``1 / (gain_k * witness-snr-ratio)`` of the strain's, so a witness sees a glitch
  at least ``witness-snr-ratio`` times more clearly than the strain does.
- Glitches (in a fraction ``1 - clean-fraction`` of samples) start in one auxiliary channel:
  sine-Gaussians (random frequency and Q), blips (the derivative of a short Gaussian pulse) and
  scattered-light arches (instantaneous frequency ``f_peak |cos(2 pi f_m t)|``), all kept above
  the Q-transform's lower frequency.
  Five more classes, after Gravity Spy's (Zevin et al. 2017), each a unit-peak waveform:
  koi fish (a narrow blip, its broadband head, with a low-frequency sine-Gaussian tail of
  relative amplitude ``koi-tail-amplitude`` at ``koi-tail-frequency``, Q 4); tomte (a
  low-Q sine-Gaussian, Q 2, at ``tomte-frequency``: short, low-frequency, broadband); whistle (a
  linear frequency sweep, up or down at random, across ``whistle-frequency`` in a Tukey-windowed
  ``whistle-duration``); wandering line (a sinusoid at ``line-frequency`` whose frequency wanders
  sinusoidally by ``line-excursion`` Hz over the whole sample); repeated blips (2 to
  ``repeat-count`` blips of one width, ``repeat-spacing`` apart).
- Coupling: channel k's glitch reaches strain through its own transfer, the one the models must
  learn: a causal 2nd-order Butterworth low-pass (optional), a delay (exact, by an FFT phase
  shift), a gain and an optional quadratic term ``c * y**2 / max|y|`` (which puts power at twice
  the glitch frequency). The amplitude is set so the strain glitch has optimal SNR drawn
  log-uniformly from ``glitch.snr``.
- Background (``noise-source``): Gaussian noise of the configured PSD (``gaussian``), or real
  LIGO strain (``real-recoloured``): GWOSC files read with gwpy, resampled to the sampling
  frequency, whitened (gwpy's ``whiten``, median Welch ASD, the filter's corrupted edges cut)
  and rescaled to unit variance, stretches around ``veto-gps``
  (known events) left out; each sample is a window at a random offset, recoloured to the
  configured PSD in the frequency domain. Its glitches, lines and non-stationarity stay; the
  witnesses keep Gaussian noise (they are simulated sensors). A few minutes of strain feed
  thousands of samples, so windows overlap: samples are less independent than Gaussian ones.
- Optional GW chirps in strain only: leading-order (Newtonian) inspirals of an equal-mass
  binary, ended at the ISCO frequency, at a random coalescence time inside the image window.

Each shard comes from its own seeded stream (``numpy_rng(seed, "glitch-shard", shard)``) and is
written to HDF5 with the settings; ``sample_timeseries`` returns one sample as a gwpy
``TimeSeriesDict`` with channel names and GPS times.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from twinflow.core.io import (
    atomic_path,
    read_hdf5,
    read_settings,
    verify_intermediate,
    write_checksum,
    write_provenance,
)
from twinflow.core.noise import coloured_noise
from twinflow.core.progress import progress
from twinflow.core.seeding import numpy_rng
from twinflow.core.settings import require
from twinflow.glitch.morphologies import (
    blip,
    koi_fish,
    newtonian_chirp,
    repeated_blips,
    scattered_light_arch,
    sine_gaussian,
    tomte,
    wandering_line,
    whistle,
)
from twinflow.glitch.real_noise import RealNoise
from twinflow.glitch.validation import (
    GLITCH_TYPES,
    check_data_settings,
    n_samples,
)

STRAIN_CHANNEL = "H1:GDS-CALIB_STRAIN"
GPS_START = 1238166018.0  # start of O3 (April 2019); sample i starts at GPS_START + i * duration
#: Datasets every shard holds (the simulator's and the detector-data loader's alike).
SHARD_DATASETS = ("strain", "aux", "strain_psd", "aux_psd", "gps_start")


def aux_channel_names(n_auxiliary: int) -> list[str]:
    """Return the auxiliary channel names (witness sensors)."""
    return [f"H1:PEM-WITNESS_{k + 1}" for k in range(n_auxiliary)]


# --------------------------------------------------------------------------------------------
# Settings


# --------------------------------------------------------------------------------------------
# Waveforms


# --------------------------------------------------------------------------------------------
# Noise, SNR and coupling


def strain_psd(settings: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Return (frequencies, one-sided strain PSD) on the rfft grid of one sample."""
    from twinflow.core.noise import source_psd

    fs, n = settings["sampling-frequency"], n_samples(settings)
    frequencies = np.fft.rfftfreq(n, 1 / fs)
    return frequencies, source_psd(
        settings["noise-curve"], frequencies, settings["low-frequency-cutoff"]
    )


def aux_noise_psd(settings: Mapping, psd: np.ndarray) -> np.ndarray:
    """Return the witnesses' noise PSDs [K, n_f]: the strain PSD's shape at an amplitude
    1 / (gain_k * witness-snr-ratio) of it."""
    gains = np.asarray(settings["coupling"]["gain"], dtype=float)
    return psd[None, :] / (gains[:, None] * settings["witness-snr-ratio"]) ** 2


def optimal_snr(
    h: np.ndarray,
    psd: np.ndarray,
    sampling_frequency: float,
    band: tuple[float, float] | None = None,
) -> np.ndarray:
    """Return the optimal matched-filter SNR sqrt(4 sum |h~(f)|^2 / S(f) df) over f > 0, or
    over ``band`` = (f_low, f_high) [Hz] only.

    ``h`` is [..., n] (real time series), ``psd`` the one-sided PSD on its rfft grid.
    """
    n = h.shape[-1]
    h_f = np.fft.rfft(h, axis=-1) / sampling_frequency  # continuous-FT convention
    df = sampling_frequency / n
    f = np.arange(h_f.shape[-1]) * df
    keep = f > 0 if band is None else (f >= band[0]) & (f <= band[1])
    return np.sqrt(4 * df * np.sum(np.abs(h_f[..., keep]) ** 2 / psd[keep], axis=-1))


def delay_series(x: np.ndarray, delay: float, sampling_frequency: float) -> np.ndarray:
    """Return ``x`` delayed by ``delay`` seconds (exact fractional delay by an FFT phase shift)."""
    n = x.shape[-1]
    f = np.fft.rfftfreq(n, 1 / sampling_frequency)
    return np.fft.irfft(np.fft.rfft(x, axis=-1) * np.exp(-2j * np.pi * f * delay), n=n, axis=-1)


def coupling_transfer(y: np.ndarray, channel: int, settings: Mapping) -> np.ndarray:
    """Return the strain glitch caused by auxiliary glitch ``y`` [..., n] in ``channel``."""
    import scipy.signal  # here, not at the top: the Snakefile imports this module

    coupling, fs = settings["coupling"], settings["sampling-frequency"]
    out = np.asarray(y, dtype=float)
    cutoff = coupling["lowpass"][channel]
    if cutoff is not None:
        sos = scipy.signal.butter(2, cutoff, btype="lowpass", fs=fs, output="sos")
        out = scipy.signal.sosfilt(sos, out, axis=-1)
    out = delay_series(out, coupling["delay"][channel], fs)
    quadratic = coupling["quadratic"][channel]
    if quadratic:
        peak = np.max(np.abs(out), axis=-1, keepdims=True)
        out = out + quadratic * out**2 / np.where(peak > 0, peak, 1.0)
    return coupling["gain"][channel] * out


# --------------------------------------------------------------------------------------------
# Real noise


# --------------------------------------------------------------------------------------------
# One shard


def _draw_log_uniform(rng: np.random.Generator, bounds) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def _draw_morphology(
    name: str, t: np.ndarray, glitch: Mapping, rng: np.random.Generator
) -> tuple[float, np.ndarray]:
    """Return (representative frequency [Hz], unit-peak waveform) of one of the
    Gravity-Spy-like classes, with its parameters drawn from the ``glitch`` ranges."""
    phase = rng.uniform(0, 2 * np.pi)
    if name == "koi-fish":
        width = rng.uniform(*glitch["blip-width"])
        tail = rng.uniform(*glitch["koi-tail-frequency"])
        return tail, koi_fish(t, width, tail, glitch["koi-tail-amplitude"], phase)
    if name == "tomte":
        freq = rng.uniform(*glitch["tomte-frequency"])
        return freq, tomte(t, freq, phase)
    if name == "whistle":
        low, high = glitch["whistle-frequency"]
        f_a, f_b = (low, high) if rng.uniform() < 0.5 else (high, low)
        duration = rng.uniform(*glitch["whistle-duration"])
        return 0.5 * (low + high), whistle(t, f_a, f_b, duration, phase)
    if name == "wandering-line":
        freq = rng.uniform(*glitch["line-frequency"])
        excursion = rng.uniform(*glitch["line-excursion"])
        period = float(t[-1] - t[0])
        return freq, wandering_line(t, freq, excursion, period, phase)
    width = rng.uniform(*glitch["blip-width"])
    count = int(rng.integers(2, glitch["repeat-count"] + 1))
    spacing = rng.uniform(*glitch["repeat-spacing"])
    y = repeated_blips(t, width, count, spacing)
    return 1 / (2 * np.pi * width), y / np.max(np.abs(y))


def simulate_shard(
    settings: Mapping, shard: int, image_band: tuple[float, float]
) -> dict[str, np.ndarray]:
    """Return the arrays of one shard (see module docstring); reproducible from (seed, shard).

    SNRs are optimal SNRs inside ``image_band`` (the Q-transform's frequency range), so a
    glitch's SNR is what the images can show.
    """
    fs, duration, n = settings["sampling-frequency"], settings["duration"], n_samples(settings)
    k_aux, n_per = settings["n-auxiliary"], settings["samples-per-shard"]
    glitch_cfg, chirp_cfg = settings["glitch"], settings["chirps"]
    rng = numpy_rng(settings["seed"], "glitch-shard", shard)
    _, psd = strain_psd(settings)
    t = np.arange(n) / fs - duration / 2  # sample centre at t = 0
    types = [name for name in GLITCH_TYPES if glitch_cfg["types"].get(name, 0) > 0]
    weights = np.array([glitch_cfg["types"][name] for name in types], dtype=float)
    weights /= weights.sum()
    f_low = image_band[0]

    if settings["noise-source"] == "gaussian":
        strain_noise = coloured_noise(np.broadcast_to(psd, (n_per, len(psd))), n, fs, rng)
    else:
        strain_noise = RealNoise(settings).draw(psd, n_per, rng)
    aux_psd = aux_noise_psd(settings, psd)  # [K, n_f]
    aux = coloured_noise(np.broadcast_to(aux_psd, (n_per, k_aux, len(psd))), n, fs, rng)

    glitch_strain = np.zeros((n_per, n))
    chirp_strain = np.zeros((n_per, n))
    labels = {
        name: np.zeros(n_per, dtype=dtype)
        for name, dtype in (
            ("has_glitch", bool),
            ("glitch_type", np.int8),
            ("glitch_channel", np.int8),
            ("glitch_time", float),
            ("glitch_snr", float),
            ("glitch_frequency", float),
            ("glitch_q", float),
            ("has_chirp", bool),
            ("chirp_time", float),
            ("chirp_snr", float),
            ("chirp_mass", float),
        )
    }
    labels["glitch_type"][:] = -1
    labels["glitch_channel"][:] = -1
    for i in progress(range(n_per), desc=f"glitch shard {shard}", unit="sample"):
        if rng.uniform() >= settings["clean-fraction"]:
            kind = int(rng.choice(len(types), p=weights))
            channel = int(rng.integers(k_aux))
            t0 = rng.uniform(-glitch_cfg["time-jitter"], glitch_cfg["time-jitter"])
            name = types[kind]
            if name == "sine-gaussian":
                freq, q = rng.uniform(*glitch_cfg["frequency"]), rng.uniform(*glitch_cfg["q"])
                y = sine_gaussian(t - t0, freq, q, rng.uniform(0, 2 * np.pi))
            elif name == "blip":
                width = rng.uniform(*glitch_cfg["blip-width"])
                freq, q = 1 / (2 * np.pi * width), np.nan
                y = blip(t - t0, width)
            elif name == "scattered-light":
                freq = rng.uniform(*glitch_cfg["arch-frequency"])
                arch = rng.uniform(*glitch_cfg["arch-duration"])
                q = np.nan
                y = scattered_light_arch(t - t0, freq, arch, f_low)
            else:
                freq, y = _draw_morphology(name, t - t0, glitch_cfg, rng)
                q = np.nan
            s = coupling_transfer(y, channel, settings)
            target_snr = _draw_log_uniform(rng, glitch_cfg["snr"])
            scale = target_snr / optimal_snr(s, psd, fs, image_band)
            aux[i, channel] += scale * y
            glitch_strain[i] = scale * s
            labels["has_glitch"][i] = True
            labels["glitch_type"][i] = GLITCH_TYPES.index(name)
            labels["glitch_channel"][i] = channel
            labels["glitch_time"][i] = t0
            labels["glitch_snr"][i] = optimal_snr(glitch_strain[i], psd, fs, image_band)
            labels["glitch_frequency"][i] = freq
            labels["glitch_q"][i] = q
        if rng.uniform() < chirp_cfg["fraction"]:
            tc = rng.uniform(-chirp_cfg["time-jitter"], chirp_cfg["time-jitter"])
            mc = rng.uniform(*chirp_cfg["chirp-mass"])
            h = newtonian_chirp(t - tc, mc, rng.uniform(0, 2 * np.pi))
            snr = rng.uniform(*chirp_cfg["snr"])
            chirp_strain[i] = h * snr / optimal_snr(h, psd, fs, image_band)
            labels["has_chirp"][i] = True
            labels["chirp_time"][i] = tc
            labels["chirp_snr"][i] = snr
            labels["chirp_mass"][i] = mc
    strain = strain_noise + glitch_strain + chirp_strain
    return {
        "strain": strain.astype(np.float32),
        "aux": aux.astype(np.float32),
        "glitch_strain": glitch_strain.astype(np.float32),
        "chirp_strain": chirp_strain.astype(np.float32),
        **labels,
    }


def simulate_dataset_shard(
    settings: Mapping, shard: int, out: str | Path, image_band: tuple[float, float], log=print
) -> None:
    """Simulate shard ``shard`` and write it to ``out`` (HDF5, with the settings); ``image_band``
    is the Q-transform's frequency range [Hz]."""
    check_data_settings(settings, image_band)
    require(
        isinstance(shard, int) and 0 <= shard < settings["n-shards"],
        "shard",
        shard,
        f"an index in [0, n-shards = {settings['n-shards']})",
    )
    arrays = simulate_shard(settings, shard, tuple(image_band))
    frequencies, psd = strain_psd(settings)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        for name, value in arrays.items():
            compress = {"compression": "gzip", "compression_opts": 1} if value.ndim > 1 else {}
            f.create_dataset(name, data=value, **compress)
        f.create_dataset("psd_frequencies", data=frequencies)
        f.create_dataset("strain_psd", data=psd)
        f.create_dataset("aux_psd", data=aux_noise_psd(settings, psd))
        first = GPS_START + shard * settings["samples-per-shard"] * settings["duration"]
        n_written = len(arrays["strain"])
        f.create_dataset("gps_start", data=first + np.arange(n_written) * settings["duration"])
        write_provenance(
            f,
            settings,
            shard=shard,
            truth=True,
            sampling_frequency=settings["sampling-frequency"],
            duration=settings["duration"],
            strain_channel=STRAIN_CHANNEL,
            aux_channels=aux_channel_names(settings["n-auxiliary"]),
            gps_start=GPS_START + shard * settings["samples-per-shard"] * settings["duration"],
            image_band=list(image_band),
        )
        write_checksum(f)
    n_glitch = int(arrays["has_glitch"].sum())
    log(
        f"shard {shard}: wrote {len(arrays['strain'])} samples ({n_glitch} with a glitch, "
        f"{int(arrays['has_chirp'].sum())} with a chirp) to {out}"
    )


def read_shard(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Return (arrays, settings) of a shard written by :func:`simulate_dataset_shard`."""
    verify_intermediate(path, "glitch shard", SHARD_DATASETS)
    with read_hdf5(path, "glitch shard") as f:
        arrays = {name: f[name][()] for name in f}
        settings = read_settings(f)
    return arrays, settings


def sample_timeseries(path: str | Path, index: int):
    """Return sample ``index`` of a shard as a gwpy ``TimeSeriesDict`` (strain and witnesses)."""
    from gwpy.timeseries import TimeSeries, TimeSeriesDict

    with read_hdf5(path, "glitch shard") as f:
        fs = float(f.attrs["sampling_frequency"])
        t0 = float(f["gps_start"][index])
        strain_name = str(f.attrs.get("strain_channel", STRAIN_CHANNEL))
        names = [strain_name, *read_settings_list(f.attrs["aux_channels"])]
        data = [f["strain"][index], *f["aux"][index]]
    out = TimeSeriesDict()
    for name, values in zip(names, data):
        out[name] = TimeSeries(
            values.astype(float), t0=t0, sample_rate=fs, name=name, channel=name
        )
    return out


def read_settings_list(value) -> list:
    import json

    return json.loads(value) if isinstance(value, (str, bytes)) else list(value)
