"""Strain for the PSD banks: stretches from the O3-like simulator (coloured Gaussian noise of a
published curve with stretch-to-stretch variation) or from real strain files (GWOSC HDF5, GWF,
ASCII, read with gwpy), split into valid segments; and the checks of a real event's strain
files from their metadata, which the config check runs before any job.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from twinflow.core.io import require_complete_gwf
from twinflow.core.noise import coloured_noise, source_psd
from twinflow.core.seeding import numpy_rng
from twinflow.core.settings import ConfigError, require, require_file


def stretch_variations(
    frequencies: np.ndarray, n: int, sim: Mapping, rng: np.random.Generator
) -> np.ndarray:
    """Return [n, n_f] multiplicative PSD variations, one row per stretch.

    - broadband level: log-normal with spread ``scale-sigma``;
    - slow drift: tilt and curvature in log f, an AR(1) process over consecutive stretches with
      correlation ``drift-correlation`` and stationary spread ``drift-sigma``;
    - lines: Gaussian bumps of width ``line-width`` Hz at ``line-frequencies``, each with peak
      height ``line-height`` x the PSD times a log-normal factor (spread ``line-height-sigma``).
    """
    f = np.maximum(frequencies, frequencies[1])
    x = np.log(f / 100.0) / np.log(20.0)  # ~[-1, 1] over 5 Hz .. 2 kHz
    shapes = np.stack([x, x**2 - np.mean(x**2)])  # [2, n_f]
    rho, sigma = sim["drift-correlation"], sim["drift-sigma"]
    drift = np.empty((n, 2))
    drift[0] = sigma * rng.standard_normal(2)
    for i in range(1, n):
        drift[i] = rho * drift[i - 1] + sigma * np.sqrt(1 - rho**2) * rng.standard_normal(2)
    log_factor = sim["scale-sigma"] * rng.standard_normal((n, 1)) + drift @ shapes
    factor = np.exp(log_factor)
    lines = np.asarray(sim["line-frequencies"], dtype=float)
    if len(lines) and sim["line-height"] > 0:
        heights = sim["line-height"] * np.exp(
            sim["line-height-sigma"] * rng.standard_normal((n, len(lines)))
        )
        bumps = np.exp(
            -0.5 * ((frequencies[None, :] - lines[:, None]) / sim["line-width"]) ** 2
        )  # [L, n_f]
        factor = factor * (1.0 + heights @ bumps)
    return factor


def simulate_strain_stretches(settings: Mapping):
    """Yield (stretch index, strain [n], PSD used [n_f_fine]) for the simulated source.

    Each stretch is drawn from its own seeded stream, so any stretch is reproducible alone.
    """
    fs, length = settings["sampling-frequency"], settings["psd-length"]
    n = int(round(length * fs))
    fine_f = np.fft.rfftfreq(n, 1 / fs)
    sim = settings["simulation"]
    base = source_psd(sim["curve"], fine_f, sim["low-frequency-cutoff"])
    rng = numpy_rng(settings["seed"], "psd-variation", settings["detector"])
    variation = stretch_variations(fine_f, settings["n-stretches"], sim, rng)
    for i in range(settings["n-stretches"]):
        psd_i = base * variation[i]
        yield (
            i,
            coloured_noise(
                psd_i, n, fs, numpy_rng(settings["seed"], "psd-noise", settings["detector"], i)
            ),
            psd_i,
        )


def read_strain(path: str | Path, channel: str | None = None):
    """Return a gwpy TimeSeries read from a GWOSC HDF5, GWF or ASCII file."""
    from gwpy.timeseries import TimeSeries

    path = require_file("strain file", path)
    suffix = path.suffix.lower()
    if suffix in (".hdf5", ".h5", ".hdf"):
        expected, read = "GWOSC HDF5", lambda: TimeSeries.read(str(path), format="hdf5.gwosc")
    elif suffix == ".gwf":
        require_complete_gwf(path, "strain file")  # the frame library segfaults on a truncated one
        expected, read = (
            f"GWF with channel {channel!r}",
            lambda: TimeSeries.read(str(path), channel),
        )
    else:  # ASCII: two columns, GPS time and strain
        expected, read = "ASCII (GPS time, strain)", lambda: TimeSeries.read(str(path))
    try:
        return read()
    except Exception as err:  # gwpy/h5py/lal raise many types for a wrong or damaged file
        reason = (str(err).splitlines() or [""])[0][:200]
        raise ConfigError(
            f"strain file {str(path)!r} cannot be read as {expected}: "
            f"{type(err).__name__}: {reason}"
        ) from None


def gwosc_detector(path: str | Path) -> str | None:
    """Return the detector a GWOSC HDF5 file says it holds (``meta/Detector``), if it says."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            value = f["meta/Detector"][()] if "meta/Detector" in f else None
    except OSError:
        return None  # not HDF5: read_strain names the file
    return value.decode() if isinstance(value, bytes) else value


def valid_segments(values: np.ndarray) -> list[tuple[int, int]]:
    """Return [start, stop) index ranges of the runs of finite samples in ``values``."""
    finite = np.isfinite(values)
    edges = np.diff(np.concatenate([[0], finite.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def load_strain_stretches(settings: Mapping, log=print) -> list[tuple[float, np.ndarray]]:
    """Return (GPS start, strain) for every NaN-free stretch of ``psd-length`` in the files.

    Data at an integer multiple of ``sampling-frequency`` are resampled (with gwpy's
    anti-aliasing filter); any other rate is an error. NaN runs and gaps are excluded with a
    message. Raises :class:`ConfigError` before any estimate if no stretch is usable.
    """
    fs, length = settings["sampling-frequency"], settings["psd-length"]
    key = f"files.strain.{settings['detector']}"
    stretches = []
    longest = 0.0
    for path in settings["files"]["strain"]:
        series = read_strain(path, settings["files"].get("channel"))
        rate = float(series.sample_rate.value)
        ratio = rate / fs
        if not (ratio >= 1 and abs(ratio - round(ratio)) < 1e-9):
            raise ConfigError(
                f"{key}: {path!r} is sampled at {rate:g} Hz, which cannot give "
                f"sampling-frequency = {fs:g} Hz: use data at {fs:g} Hz or an integer multiple of it"
            )
        values = np.asarray(series.value, dtype=float)
        segments = valid_segments(values)
        n_bad = len(values) - sum(b - a for a, b in segments)
        if n_bad:
            log(
                f"{settings['detector']}: {path}: excluded {n_bad / rate:g} s of NaN/inf samples "
                f"({len(segments)} valid segment(s) remain)"
            )
        t0 = float(series.t0.value)
        for a, b in segments:
            longest = max(longest, (b - a) / rate)
            n_per = int(round(length * rate))
            for start in range(a, b - n_per + 1, n_per):
                piece = series[start : start + n_per]
                if ratio > 1:
                    piece = piece.resample(fs)
                stretches.append((t0 + start / rate, np.asarray(piece.value, dtype=float)))
    if not stretches:
        if longest == 0:
            raise ConfigError(
                f"{key} = {settings['files']['strain']!r}: the files hold no finite samples"
            )
        raise ConfigError(
            f"psd-length = {length!r} s is longer than every NaN-free segment in {key} "
            f"(longest {longest:g} s): choose psd-length <= {longest:g}"
        )
    return stretches


def segment_outside_file(
    key: str, trigger: float, start: float, settings: Mapping, d: str, path, span
) -> ConfigError:
    """The one-line error for an analysis segment that does not lie inside a strain file."""
    duration = settings["analysis"]["duration"]
    return ConfigError(
        f"{key}.trigger-time = {trigger!r}: the analysis segment [{start:.3f}, {start + duration:.3f}] "
        f"(duration {duration} s, post-trigger-duration {settings['post-trigger-duration']} s) lies "
        f"outside {d}'s file {str(path)!r}, which spans [{span[0]:.3f}, {span[1]:.3f}]"
    )


def no_off_source_data(key: str, duration: float) -> ConfigError:
    """The one-line error for a file with no off-source stretch of ``duration`` for Welch."""
    return ConfigError(
        f"{key}: the strain file holds no off-source stretch of at least duration = {duration} s beside "
        f"the analysis segment, so no Welch PSD can be estimated: give a longer file or a psd-dict entry"
    )


def check_strain_files(name: str, settings: Mapping) -> None:
    """Check a real event's GWOSC HDF5 files from their metadata alone, before any job.

    ``settings`` as for :func:`load_strain_event`, with ``analysis`` resolved. A file that is
    not HDF5, holds another detector (``meta/Detector``), does not span the analysis segment
    (``meta/GPSstart``, ``meta/Duration``) or, without a psd-dict entry, leaves no off-source
    stretch of one duration for the Welch PSD is an error naming the key and the file. Files
    in other formats (GWF, ASCII, HDF5 without GWOSC metadata) are checked when read.
    """
    import h5py

    key = f"inference.events.{name}"
    event, analysis = settings["event"], settings["analysis"]
    duration = analysis["duration"]
    trigger = float(event["trigger-time"])
    start = trigger - (duration - settings["post-trigger-duration"])
    for d in analysis["detectors"]:
        path = event["data-dict"][d]
        if Path(path).suffix.lower() not in (".hdf5", ".h5"):
            continue
        if not h5py.is_hdf5(path):
            raise ConfigError(f"{key}.data-dict.{d} = {str(path)!r}: not an HDF5 file")
        try:
            with h5py.File(path, "r") as f:
                if not all(k in f for k in ("meta/GPSstart", "meta/Duration")):
                    continue
                held = f["meta/Detector"][()] if "meta/Detector" in f else None
                t0 = float(f["meta/GPSstart"][()])
                t1 = t0 + float(f["meta/Duration"][()])
        except OSError as err:
            raise ConfigError(
                f"{key}.data-dict.{d} = {str(path)!r}: unreadable HDF5 ({err})"
            ) from err
        held = held.decode() if isinstance(held, bytes) else held
        require(
            held in (None, d),
            f"{key}.data-dict.{d}",
            str(path),
            f"a file of {d}'s strain (this GWOSC file holds {held}'s)",
        )
        if not (t0 <= start and start + duration <= t1):
            raise segment_outside_file(key, trigger, start, settings, d, path, (t0, t1))
        if not (event.get("psd-dict") or {}).get(d):
            if max(start - t0, t1 - (start + duration)) < duration:
                raise no_off_source_data(f"{key}.data-dict.{d}", duration)
