"""Events to analyse: injections drawn from the prior, or real strain around a trigger time.

An event is the data one inference job needs (:class:`EventData`): frequency-domain strain and
PSD per detector on the uniform grid ``f = 0, 1/T, ..., f_s/2`` and the analysis band of each
detector. Settings use bilby_pipe's names (``config/README.md``, ``gw.inference.events``):

- ``trigger-time`` [GPS s]; the segment of ``duration`` T starts at
  ``trigger-time - (T - post-trigger-duration)``, as in bilby_pipe;
- ``detectors``, ``duration``, ``sampling-frequency``, ``minimum-frequency``,
  ``maximum-frequency`` (a number or a per-detector map): default to the gw section's;
- ``data-dict``: per detector, a strain file (GWOSC HDF5, GWF or ASCII); ``channel-dict``: the
  channel to read from GWF files;
- ``psd-dict``: per detector, a two-column text file (frequency [Hz], PSD [1/Hz]); a detector
  without one gets a Welch estimate (median average, fftlength T, as the PSD banks) from the
  off-source data of its own file: everything outside the analysis segment, before and after.

Real strain is resampled to ``sampling-frequency`` (integer factors, gwpy's anti-aliasing
filter, over the whole file), Tukey-windowed with ``tukey-roll-off`` and Fourier transformed
exactly as bilby's ``InterferometerStrainData`` does (rfft / f_s; the likelihood then uses
``PSD x window_factor``, the window's mean square).

Injections: parameters drawn from the prior, the PSD of each detector drawn from its PSD bank,
Gaussian noise from that PSD made in the frequency domain (bilby's convention,
``E|n(f)|^2 = T S(f) / 2``), plus the signal projected with the likelihood's own code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from twinflow.core.settings import (
    ConfigError,
    require,
    require_file,
    require_nyquist,
    require_positive,
)
from twinflow.gw.detectors import KNOWN_DETECTORS

STRAIN_SUFFIXES = (".hdf5", ".h5", ".hdf", ".gwf", ".txt", ".dat", ".csv")
#: Event keys that may override the gw section's analysis settings.
ANALYSIS_KEYS = (
    "detectors",
    "duration",
    "sampling-frequency",
    "minimum-frequency",
    "maximum-frequency",
)
EVENT_KEYS = ("trigger-time", *ANALYSIS_KEYS, "data-dict", "channel-dict", "psd-dict")


@dataclasses.dataclass
class EventData:
    """Frequency-domain strain and PSDs of one event on the uniform grid (bilby's conventions).

    ``strain[d]`` is the windowed FFT of the segment divided by the sampling frequency (bilby's
    ``nfft``); ``psd[d]`` the one-sided noise PSD. As in bilby, the likelihood uses
    ``psd * window_factor`` (the mean square of the window), which is 1 for data made directly
    in the frequency domain (injections).
    """

    name: str
    detectors: tuple[str, ...]
    trigger_time: float  # GPS s
    start_time: float  # GPS s, = trigger_time - (duration - post_trigger_duration)
    duration: float  # s
    sampling_frequency: float  # Hz
    minimum_frequency: dict[str, float]  # Hz, per detector
    maximum_frequency: dict[str, float]  # Hz, per detector
    strain: dict[str, np.ndarray]  # [n_f] complex, 1/Hz
    psd: dict[str, np.ndarray]  # [n_f], 1/Hz
    window_factor: float = 1.0
    injection_parameters: dict[str, float] | None = None
    metadata: dict = dataclasses.field(default_factory=dict)

    @property
    def frequencies(self) -> np.ndarray:
        """The uniform grid 0 .. f_s/2 in steps of 1/T, as bilby builds it."""
        n = int(round(self.duration * self.sampling_frequency)) // 2 + 1
        return np.linspace(0, self.sampling_frequency / 2, n)

    def frequency_mask(self, detector: str) -> np.ndarray:
        """Return the bins analysed for ``detector`` (f_min <= f <= f_max, as bilby)."""
        f = self.frequencies
        return (f >= self.minimum_frequency[detector]) & (f <= self.maximum_frequency[detector])

    def with_analysis(
        self, detectors=None, minimum_frequency=None, maximum_frequency=None, name=None
    ) -> EventData:
        """Return the same data analysed with other detectors or bands (for settings sweeps)."""
        detectors = tuple(detectors or self.detectors)
        missing = [d for d in detectors if d not in self.strain]
        require(
            not missing,
            "detectors",
            list(detectors),
            f"a subset of the event's detectors {list(self.detectors)}",
        )
        f_min = (
            frequency_map(minimum_frequency, detectors, "minimum-frequency")
            if minimum_frequency is not None
            else {d: self.minimum_frequency[d] for d in detectors}
        )
        f_max = (
            frequency_map(maximum_frequency, detectors, "maximum-frequency")
            if maximum_frequency is not None
            else {d: self.maximum_frequency[d] for d in detectors}
        )
        check_band(f_min, f_max, self.sampling_frequency, self.duration)
        return dataclasses.replace(
            self,
            name=name or self.name,
            detectors=detectors,
            minimum_frequency=f_min,
            maximum_frequency=f_max,
        )


# --------------------------------------------------------------------------------------------
# Settings


def frequency_map(value, detectors, key: str) -> dict[str, float]:
    """Return a per-detector frequency from a number or a {detector: number} map."""
    if isinstance(value, Mapping):
        missing = [d for d in detectors if d not in value]
        require(
            not missing,
            key,
            dict(value),
            f"a frequency for every detector {list(detectors)} (missing {missing})",
        )
        out = {d: value[d] for d in detectors}
    else:
        out = {d: value for d in detectors}
    for d, f in out.items():
        require_positive(f"{key}.{d}" if isinstance(value, Mapping) else key, f)
    return {d: float(f) for d, f in out.items()}


def check_band(
    f_min: Mapping, f_max: Mapping, sampling_frequency: float, duration: float, key: str = ""
) -> None:
    """Check each detector's band: below Nyquist, f_min < f_max, at least one bin wide."""
    prefix = f"{key}." if key else ""
    for d in f_min:
        require_nyquist(
            f"{prefix}maximum-frequency" + (f".{d}" if len(set(f_max.values())) > 1 else ""),
            f_max[d],
            sampling_frequency,
        )
        if not f_min[d] < f_max[d]:
            raise ConfigError(
                f"{prefix}minimum-frequency = {f_min[d]!r} Hz is not below maximum-frequency = "
                f"{f_max[d]!r} Hz for {d}"
            )
        if f_max[d] - f_min[d] < 1.0 / duration:
            raise ConfigError(
                f"the band {f_min[d]}-{f_max[d]} Hz of {d} holds no frequency bin "
                f"(delta_f = {1 / duration:g} Hz)"
            )


def resolve_analysis(event: Mapping, analysis: Mapping, key: str) -> dict:
    """Return the event's analysis settings: its own keys, else the gw section's."""
    out = {k: event.get(k, analysis[k]) for k in ANALYSIS_KEYS}
    detectors = out["detectors"]
    require(
        isinstance(detectors, (list, tuple)) and len(detectors) > 0,
        f"{key}.detectors",
        detectors,
        f"a non-empty list of detectors from {list(KNOWN_DETECTORS)}",
    )
    for d in detectors:
        require(
            d in KNOWN_DETECTORS,
            f"{key}.detectors",
            detectors,
            f"detectors from {list(KNOWN_DETECTORS)}",
        )
    require_positive(f"{key}.duration", out["duration"])
    require_positive(f"{key}.sampling-frequency", out["sampling-frequency"])
    require(
        float(out["duration"] * out["sampling-frequency"]).is_integer(),
        f"{key}.duration",
        out["duration"],
        "duration x sampling-frequency must be a whole number of samples",
    )
    out["minimum-frequency"] = frequency_map(
        out["minimum-frequency"], detectors, f"{key}.minimum-frequency"
    )
    out["maximum-frequency"] = frequency_map(
        out["maximum-frequency"], detectors, f"{key}.maximum-frequency"
    )
    check_band(
        out["minimum-frequency"],
        out["maximum-frequency"],
        out["sampling-frequency"],
        out["duration"],
        key,
    )
    out["detectors"] = list(detectors)
    return out


def check_strain_event(event: Mapping, analysis: Mapping, key: str) -> dict:
    """Check a real event's settings (keys, files) before any work; return its analysis settings."""
    require(isinstance(event, Mapping), key, event, "a mapping with trigger-time and data-dict")
    unknown = [k for k in event if k not in EVENT_KEYS]
    require(not unknown, key, sorted(event), f"keys from {list(EVENT_KEYS)} (unknown: {unknown})")
    t = event.get("trigger-time")
    require(
        isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0,
        f"{key}.trigger-time",
        t,
        "a GPS time in seconds",
    )
    resolved = resolve_analysis(event, analysis, key)
    data = event.get("data-dict") or {}
    require(isinstance(data, Mapping), f"{key}.data-dict", data, "a map detector -> strain file")
    for d in resolved["detectors"]:
        require(
            d in data,
            f"{key}.data-dict",
            dict(data),
            f"a strain file for every analysed detector {resolved['detectors']} (missing {d})",
        )
        path = require_file(f"{key}.data-dict.{d}", data[d])
        require(
            path.suffix.lower() in STRAIN_SUFFIXES,
            f"{key}.data-dict.{d}",
            str(path),
            f"a strain file with suffix in {list(STRAIN_SUFFIXES)}",
        )
        if path.suffix.lower() == ".gwf":
            channel = (event.get("channel-dict") or {}).get(d)
            require(
                bool(channel),
                f"{key}.channel-dict.{d}",
                channel,
                "a channel name, needed to read GWF files",
            )
    for d, path in (event.get("psd-dict") or {}).items():
        require(
            d in KNOWN_DETECTORS, f"{key}.psd-dict", d, f"detectors from {list(KNOWN_DETECTORS)}"
        )
        require_file(f"{key}.psd-dict.{d}", path)
    return resolved


# --------------------------------------------------------------------------------------------
# Real strain


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
        raise ConfigError(
            f"{key}: the strain file holds no off-source stretch of at least duration = {duration} s beside "
            f"the analysis segment, so no Welch PSD can be estimated: give a longer file or a psd-dict entry"
        )
    return np.average(estimates, axis=0, weights=counts), int(sum(counts))


def load_strain_event(name: str, settings: Mapping, log=print) -> EventData:
    """Return the EventData of a real event from its strain files (settings: see module docstring).

    ``settings`` holds the event's keys plus ``analysis`` (resolved by :func:`check_strain_event`),
    ``post-trigger-duration``, ``tukey-roll-off`` and ``psd`` (Welch ``window``, ``overlap``,
    ``average``).
    """
    from twinflow.gw.psd import read_strain

    key = f"inference.events.{name}"
    event = settings["event"]
    analysis = check_strain_event(event, settings["analysis"], key)
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
        rate = float(series.sample_rate.value)
        ratio = rate / fs
        if not (ratio >= 1 and abs(ratio - round(ratio)) < 1e-9):
            raise ConfigError(
                f"{key}.data-dict.{d}: {path!r} is sampled at {rate:g} Hz, which cannot give "
                f"sampling-frequency = {fs:g} Hz: use {fs:g} Hz data or an integer multiple"
            )
        t0, t1 = float(series.t0.value), float(series.t0.value + series.duration.value)
        if not (t0 <= start and start + duration <= t1):
            raise ConfigError(
                f"{key}.trigger-time = {trigger!r}: the analysis segment [{start:.3f}, {start + duration:.3f}] "
                f"(duration {duration} s, post-trigger-duration {settings['post-trigger-duration']} s) lies "
                f"outside {d}'s file {path!r}, which spans [{t0:.3f}, {t1:.3f}]"
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


# --------------------------------------------------------------------------------------------
# Injections
