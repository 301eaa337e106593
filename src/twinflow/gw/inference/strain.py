"""Real events: strain files around a trigger, their off-source PSDs, and the event's data on the
analysis grid (bilby's conventions: Tukey window, rfft scaled by 1/f_s, data starting
duration - post-trigger-duration before the trigger).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from twinflow.core.settings import (
    ConfigError,
    require,
)
from twinflow.gw.inference.events import EventData
from twinflow.gw.strain_sources import check_strain_files, no_off_source_data, segment_outside_file
from twinflow.gw.validation import check_strain_event


def frequency_domain_strain(
    segment: np.ndarray, sampling_frequency: float, roll_off: float
) -> tuple[np.ndarray, float]:
    """Return (rfft(window x segment) / f_s, window factor) with bilby's Tukey window.

    The window is ``scipy.signal.windows.tukey(n, alpha = 2 roll_off / duration)`` and the
    window factor its mean square, as in ``bilby.gw.detector.InterferometerStrainData``.
    """
    from scipy.signal.windows import tukey

    duration = len(segment) / sampling_frequency
    window = tukey(len(segment), alpha=2 * roll_off / duration)
    return np.fft.rfft(segment * window) / sampling_frequency, float(np.mean(window**2))


def read_psd_file(
    path: str | Path, frequencies: np.ndarray, band: tuple[float, float], key: str
) -> np.ndarray:
    """Return a PSD from a two-column text file (frequency, PSD), interpolated onto ``frequencies``.

    Linear interpolation, as bilby's ``PowerSpectralDensity``; outside the file's range the PSD
    is infinite (those bins carry no information), and the analysis band must lie inside it.
    """
    try:
        table = np.loadtxt(path)
    except ValueError as err:
        raise ConfigError(f"{key} = {str(path)!r}: not a two-column text file ({err})") from err
    require(
        table.ndim == 2 and table.shape[1] >= 2,
        key,
        str(path),
        "two columns: frequency [Hz], PSD [1/Hz]",
    )
    f, psd = table[:, 0], table[:, 1]
    if not (f[0] <= band[0] and f[-1] >= band[1]):
        raise ConfigError(
            f"{key} = {str(path)!r} covers {f[0]:g}-{f[-1]:g} Hz, not the analysis band "
            f"{band[0]:g}-{band[1]:g} Hz"
        )
    if np.any(psd[(f >= band[0]) & (f <= band[1])] <= 0):
        raise ConfigError(f"{key} = {str(path)!r}: the PSD is not positive over the analysis band")
    return np.interp(frequencies, f, psd, left=np.inf, right=np.inf)


def welch_off_source(
    series: np.ndarray, segment: slice, settings: Mapping, key: str
) -> tuple[np.ndarray, int]:
    """Return (PSD, number of Welch segments) from the data before and after ``segment``.

    :func:`twinflow.gw.psd.welch_psd` on each side (fftlength = duration); the two estimates
    are averaged with weights equal to their numbers of Welch segments.
    """
    from twinflow.gw.psd import welch_psd

    fs, duration = settings["sampling-frequency"], settings["duration"]
    nperseg = int(round(duration * fs))
    step = nperseg - int(round(settings["overlap"] * nperseg))
    estimates, counts = [], []
    for side in (series[: segment.start], series[segment.stop :]):
        if len(side) >= nperseg:
            _, psd = welch_psd(side, settings)
            estimates.append(psd)
            counts.append(1 + (len(side) - nperseg) // step)
    if not counts:
        raise no_off_source_data(key, duration)
    return np.average(estimates, axis=0, weights=counts), int(sum(counts))


def load_strain_event(name: str, settings: Mapping, log=print) -> EventData:
    """Return the EventData of a real event from its strain files (settings: see module docstring).

    ``settings`` holds the event's keys plus ``analysis`` (resolved by :func:`check_strain_event`),
    ``post-trigger-duration``, ``tukey-roll-off`` and ``psd`` (Welch ``window``, ``overlap``,
    ``average``).
    """
    from twinflow.gw.strain_sources import gwosc_detector, read_strain

    key = f"inference.events.{name}"
    event = settings["event"]
    analysis = check_strain_event(event, settings["analysis"], key)
    check_strain_files(name, {**settings, "analysis": analysis})
    fs, duration = analysis["sampling-frequency"], analysis["duration"]
    trigger = float(event["trigger-time"])
    start = trigger - (duration - settings["post-trigger-duration"])
    n = int(round(duration * fs))
    frequencies = np.linspace(0, fs / 2, n // 2 + 1)
    strain, psds, meta = {}, {}, {"psd-source": {}, "files": {}, "catalogue-trigger-time": trigger}
    window_factor = 1.0
    starts: list[float] = []
    for d in analysis["detectors"]:
        path = event["data-dict"][d]
        series = read_strain(path, (event.get("channel-dict") or {}).get(d))
        held = gwosc_detector(path) if Path(path).suffix.lower() in (".hdf5", ".h5") else None
        require(
            held in (None, d),
            f"{key}.data-dict.{d}",
            str(path),
            f"a file of {d}'s strain (this GWOSC file holds {held}'s)",
        )
        rate = float(series.sample_rate.value)
        ratio = rate / fs
        if not (ratio >= 1 and abs(ratio - round(ratio)) < 1e-9):
            raise ConfigError(
                f"{key}.data-dict.{d}: {path!r} is sampled at {rate:g} Hz, which cannot give "
                f"sampling-frequency = {fs:g} Hz: use {fs:g} Hz data or an integer multiple"
            )
        t0, t1 = float(series.t0.value), float(series.t0.value + series.duration.value)
        if not (t0 <= start and start + duration <= t1):
            raise segment_outside_file(
                key, trigger, start, {**settings, "analysis": analysis}, d, path, (t0, t1)
            )
        if ratio > 1:
            series = series.resample(fs)
        values = np.asarray(series.value, dtype=float)
        # the segment starts on the sample nearest trigger - (T - post-trigger-duration)
        first = int(round((start - t0) * fs))
        segment = slice(first, first + n)
        sample_start = t0 + first / fs
        if starts and abs(sample_start - starts[0]) > 1e-9:
            raise ConfigError(
                f"{key}: the detectors' files are not sampled on a common time grid "
                f"({analysis['detectors'][0]} starts the segment at {starts[0]!r}, {d} at {sample_start!r})"
            )
        starts.append(sample_start)
        if not np.all(np.isfinite(values[segment])):
            raise ConfigError(
                f"{key}: {d}'s strain holds NaN or inf samples inside the analysis segment"
            )
        strain[d], window_factor = frequency_domain_strain(
            values[segment], fs, settings["tukey-roll-off"]
        )
        band = (analysis["minimum-frequency"][d], analysis["maximum-frequency"][d])
        psd_file = (event.get("psd-dict") or {}).get(d)
        if psd_file:
            psds[d] = read_psd_file(psd_file, frequencies, band, f"{key}.psd-dict.{d}")
            meta["psd-source"][d] = f"file:{psd_file}"
        else:
            finite = np.isfinite(values)
            require(
                finite.all(),
                f"{key}.data-dict.{d}",
                path,
                "strain without NaN samples off source (or give a psd-dict entry)",
            )
            welch = {"sampling-frequency": fs, "duration": duration, **settings["psd"]}
            psds[d], count = welch_off_source(values, segment, welch, f"{key}.data-dict.{d}")
            meta["psd-source"][d] = f"welch:{count} segments off source"
        meta["files"][d] = str(path)
    # geocent_time offsets are taken from this trigger time, which the sampled segment fixes
    start = starts[0]
    trigger = start + duration - settings["post-trigger-duration"]
    log(
        f"{name}: {analysis['detectors']} segment [{start}, {start + duration}] at {fs:g} Hz; "
        f"PSD {meta['psd-source']}"
    )
    return EventData(
        name=name,
        detectors=tuple(analysis["detectors"]),
        trigger_time=trigger,
        start_time=start,
        duration=float(duration),
        sampling_frequency=float(fs),
        minimum_frequency=analysis["minimum-frequency"],
        maximum_frequency=analysis["maximum-frequency"],
        strain=strain,
        psd=psds,
        window_factor=window_factor,
        metadata=meta,
    )
