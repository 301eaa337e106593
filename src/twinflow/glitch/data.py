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
import scipy.signal

from twinflow.core.io import atomic_path, read_settings, write_provenance
from twinflow.core.noise import coloured_noise
from twinflow.core.progress import progress
from twinflow.core.seeding import numpy_rng
from twinflow.core.settings import (
    ConfigError,
    require,
    require_choice,
    require_file,
    require_nyquist,
    require_positive,
)

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
WHITEN_FDURATION = 2.0  # s, gwpy's whitening filter length; half of it is cut at each edge
STRAIN_CHANNEL = "H1:GDS-CALIB_STRAIN"
GPS_START = 1238166018.0  # start of O3 (April 2019); sample i starts at GPS_START + i * duration
G_MSUN_OVER_C3 = 4.925490947641267e-06  # G M_sun / c^3 [s]


def aux_channel_names(n_auxiliary: int) -> list[str]:
    """Return the auxiliary channel names (witness sensors)."""
    return [f"H1:PEM-WITNESS_{k + 1}" for k in range(n_auxiliary)]


# --------------------------------------------------------------------------------------------
# Settings


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
        from twinflow.glitch.detector_data import check_files_settings

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


# --------------------------------------------------------------------------------------------
# Waveforms


def sine_gaussian(t: np.ndarray, frequency: float, q: float, phase: float) -> np.ndarray:
    """Return a unit-peak sine-Gaussian centred on t = 0 (tau = Q / (sqrt(2) pi f))."""
    tau = q / (np.sqrt(2) * np.pi * frequency)
    return np.exp(-((t / tau) ** 2)) * np.sin(2 * np.pi * frequency * t + phase)


def blip(t: np.ndarray, width: float) -> np.ndarray:
    """Return the (unit-peak) time derivative of a Gaussian pulse of ``width`` [s]: a broadband
    burst whose spectrum peaks at 1 / (2 pi width)."""
    x = t / width
    return -x * np.exp(0.5 - 0.5 * x**2)


def scattered_light_arch(
    t: np.ndarray, peak_frequency: float, arch_duration: float, low_frequency: float
) -> np.ndarray:
    """Return one scattered-light arch centred on t = 0.

    The scatterer moves as x(t) = x0 sin(2 pi f_m t) with f_m = 1 / (2 * arch_duration), so the
    fringe frequency is ``peak_frequency * |cos(2 pi f_m t)|``. A sin^2 envelope keeps only the
    part of the arch above ``low_frequency``.
    """
    f_mod = 1.0 / (2.0 * arch_duration)
    phase = peak_frequency / (2 * np.pi * f_mod) * np.sin(2 * np.pi * f_mod * t)  # [cycles]
    half = np.arccos(min(low_frequency / peak_frequency, 1.0)) / (
        2 * np.pi * f_mod
    )  # |t| where f = f_low
    inside = (np.abs(t) < half) & (np.abs(t) < arch_duration / 2)
    envelope = np.where(inside, np.cos(0.5 * np.pi * t / max(half, 1e-9)) ** 2, 0.0)
    return envelope * np.sin(2 * np.pi * phase)


def koi_fish(
    t: np.ndarray, width: float, tail_frequency: float, tail_amplitude: float, phase: float
) -> np.ndarray:
    """Return a koi fish centred on t = 0: a blip of ``width`` [s] (the broadband head) plus a
    sine-Gaussian tail at ``tail_frequency`` (Q 4) of relative amplitude ``tail_amplitude``,
    scaled to unit peak."""
    y = blip(t, width) + tail_amplitude * sine_gaussian(t, tail_frequency, 4.0, phase)
    return y / np.max(np.abs(y))


def tomte(t: np.ndarray, frequency: float, phase: float) -> np.ndarray:
    """Return a tomte centred on t = 0: a low-Q (Q 2) sine-Gaussian at ``frequency``, short and
    broadband at low frequency."""
    return sine_gaussian(t, frequency, 2.0, phase)


def whistle(
    t: np.ndarray, f_start: float, f_end: float, duration: float, phase: float
) -> np.ndarray:
    """Return a whistle centred on t = 0: a linear sweep from ``f_start`` to ``f_end`` [Hz] over
    ``duration`` [s] (scipy's ``chirp``) under a Tukey (alpha 0.5) window."""
    inside = np.abs(t) < duration / 2
    y = np.zeros_like(t)
    ts = t[inside] + duration / 2
    sweep = scipy.signal.chirp(
        ts, f_start, duration, f_end, method="linear", phi=np.degrees(phase)
    )
    y[inside] = sweep * scipy.signal.windows.tukey(int(inside.sum()), 0.5)
    return y


def wandering_line(
    t: np.ndarray, frequency: float, excursion: float, period: float, phase: float
) -> np.ndarray:
    """Return a wandering line: a unit sinusoid whose frequency is
    ``frequency + excursion sin(2 pi t / period)``, Tukey-tapered over the whole sample."""
    f_mod = 1.0 / period
    cycles = frequency * t - excursion / (2 * np.pi * f_mod) * np.cos(2 * np.pi * f_mod * t)
    return np.sin(2 * np.pi * cycles + phase) * scipy.signal.windows.tukey(len(t), 0.2)


def repeated_blips(t: np.ndarray, width: float, count: int, spacing: float) -> np.ndarray:
    """Return ``count`` blips of ``width`` [s], ``spacing`` [s] apart, centred on t = 0."""
    offsets = (np.arange(count) - (count - 1) / 2) * spacing
    return sum(blip(t - dt, width) for dt in offsets)


def newtonian_chirp(t: np.ndarray, chirp_mass: float, phase: float) -> np.ndarray:
    """Return the leading-order (Newtonian) inspiral h(t) of an equal-mass binary, coalescing at
    t = 0, in arbitrary units (the caller fixes the SNR); zero after the ISCO frequency.

    f(tau) = (1 / 8 pi) (5 / tau)^(3/8) (G Mc / c^3)^(-5/8) with tau = -t; amplitude ~ f^(2/3);
    phase(tau) = -2 (tau / (5 G Mc / c^3))^(5/8).
    """
    mc = chirp_mass * G_MSUN_OVER_C3
    total_mass = chirp_mass * 2 ** (6 / 5) * G_MSUN_OVER_C3
    f_isco = 1.0 / (6**1.5 * np.pi * total_mass)
    tau = np.maximum(-t, 1e-12)
    freq = (5.0 / tau) ** (3 / 8) / (8 * np.pi) * mc ** (-5 / 8)
    orbital_phase = -2.0 * (tau / (5 * mc)) ** (5 / 8)
    h = freq ** (2 / 3) * np.cos(orbital_phase + phase)
    keep = (t < 0) & (freq <= f_isco)
    # Taper the last cycles before the ISCO cut so the end is not a step.
    taper = np.clip((f_isco - freq) / (0.1 * f_isco), 0, 1)
    return np.where(keep, h * taper, 0.0)


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


def n_samples(settings: Mapping) -> int:
    return int(round(settings["sampling-frequency"] * settings["duration"]))


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


class RealNoise:
    """Whitened stretches of real strain, drawn as recoloured windows (see module docstring)."""

    def __init__(self, settings: Mapping):
        from gwpy.timeseries import TimeSeries

        fs, n = settings["sampling-frequency"], n_samples(settings)
        real = settings["real-noise"]
        self.n, self.fs = n, fs
        self.stretches: list[np.ndarray] = []  # whitened, unit variance
        self.starts: list[np.ndarray] = []  # allowed window starts (sample indices) per stretch
        self.gps_start: list[float] = []  # GPS time of each stretch's first sample
        for path in real["paths"]:
            series = TimeSeries.read(str(path), format="hdf5.gwosc")
            rate = float(series.sample_rate.value)
            if rate < fs:
                raise ConfigError(
                    f"real-noise.paths: {str(path)!r} is sampled at {rate:g} Hz, below "
                    f"sampling-frequency {fs:g} Hz"
                )
            if not np.all(np.isfinite(series.value)):
                raise ConfigError(f"real-noise.paths: {str(path)!r} has NaN or inf samples")
            if rate != fs:
                series = series.resample(fs)
            white = series.whiten(
                fftlength=settings["duration"], method="median", fduration=WHITEN_FDURATION
            )
            values = np.asarray(white.value, dtype=float)
            times = float(series.t0.value) + np.arange(len(values)) / fs
            edge = int(WHITEN_FDURATION / 2 * fs)
            ok = np.zeros(len(values), dtype=bool)
            ok[edge : len(values) - edge] = True
            for t in real["veto-gps"]:
                ok &= np.abs(times - t) > real["veto-window"]
            # Unit variance over the usable samples, so the recoloured noise has the configured
            # PSD; its shape (tails, glitches, lines the whitening left) is the detector's.
            values = values / np.std(values[ok]) if ok.any() else values
            # A window may start at i when all its n samples are usable.
            usable = np.convolve(ok, np.ones(n), mode="valid") >= n
            starts = np.flatnonzero(usable)
            if len(starts):
                self.stretches.append(values)
                self.starts.append(starts)
                self.gps_start.append(float(times[0]))
        if not self.stretches:
            raise ConfigError(
                f"real-noise.paths: no {settings['duration']:g} s window of usable strain "
                "(files too short, or all vetoed)"
            )
        self.seconds = sum(len(s) for s in self.starts) / fs

    def draw(self, psd: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        """Return ``count`` windows [count, n] of real noise recoloured to the one-sided ``psd``
        (on the rfft grid of n samples): white noise of unit variance has PSD 2 / fs, so each
        frequency bin is scaled by sqrt(psd * fs / 2)."""
        sizes = np.array([len(s) for s in self.starts], dtype=float)
        which = rng.choice(len(self.stretches), size=count, p=sizes / sizes.sum())
        out = np.empty((count, self.n))
        for i, k in enumerate(which):
            start = int(self.starts[k][rng.integers(len(self.starts[k]))])
            out[i] = self.stretches[k][start : start + self.n]
        spectrum = np.fft.rfft(out, axis=-1) * np.sqrt(psd * self.fs / 2)
        spectrum[..., 0] = 0.0
        return np.fft.irfft(spectrum, n=self.n, axis=-1)


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
    n_glitch = int(arrays["has_glitch"].sum())
    log(
        f"shard {shard}: wrote {len(arrays['strain'])} samples ({n_glitch} with a glitch, "
        f"{int(arrays['has_chirp'].sum())} with a chirp) to {out}"
    )


def read_shard(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Return (arrays, settings) of a shard written by :func:`simulate_dataset_shard`."""
    path = require_file("glitch shard", path)
    with h5py.File(path, "r") as f:
        if "strain" not in f or "aux" not in f:
            raise ConfigError(f"glitch shard {str(path)!r} has no 'strain' and 'aux' datasets")
        arrays = {name: f[name][()] for name in f}
        settings = read_settings(f)
    return arrays, settings


def sample_timeseries(path: str | Path, index: int):
    """Return sample ``index`` of a shard as a gwpy ``TimeSeriesDict`` (strain and witnesses)."""
    from gwpy.timeseries import TimeSeries, TimeSeriesDict

    with h5py.File(require_file("glitch shard", path), "r") as f:
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
