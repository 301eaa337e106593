"""Detector data in: strain and auxiliary channels read by name from GWF or HDF5 files.

With ``glitch.data.source: files`` this stage replaces the simulator. It reads each file with
gwpy (``TimeSeriesDict.read``: the strain channel and the ``aux-channels``, by name), cuts
``duration``-second windows out of it and writes them as one shard in the simulator's layout
(``strain [N, n]``, ``aux [N, K, n]``, the labels), so the Q-transform, normalisation,
translation, subtraction and VAE stages consume it unchanged. What a simulator knows and
detector data does not (the glitch alone, the chirp alone, the glitch type) is left out, and
the shard says so (``truth = False``): the later stages then skip the metrics that need it.

Windows (``windows``):

- ``triggers``: one window centred on each trigger of the trigger list (CSV or HDF5 with
  Omicron-style columns ``time`` [GPS s], ``frequency`` [Hz], ``snr``), labelled glitchy with
  the trigger's time, frequency and SNR; plus clean windows tiling the off-source time (every
  ``duration`` seconds), labelled clean, for the VAE to train on;
- ``grid``: windows every ``grid-stride`` seconds over all the data; a window is glitchy when a
  trigger (if a list is given) falls inside it, with the loudest one's labels.

Whitening: each channel's PSD is a median-averaged Welch estimate (Hann window, segments of one
window length, half overlap, the median's bias corrected as scipy does) over the **off-source**
segments only: those that do not come within ``off-source-padding`` seconds of a trigger's
window, so a loud glitch does not inflate its own whitening. The PSDs are stored in the shard
on the rfft grid of one window, where the images stage reads them.

Files are taken one by one (each a contiguous stretch; gaps between files are fine), read by
:mod:`twinflow.glitch.detector_files`. Bad input stops with a one-line :class:`ConfigError`
before anything is written: a bad file (see there), a trigger whose window is not inside the
data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import scipy.signal

from twinflow.core.io import (
    atomic_path,
    write_checksum,
    write_provenance,
)
from twinflow.core.settings import ConfigError
from twinflow.glitch.detector_files import (
    Stretch,
    check_files_settings,
    read_stretch,
    read_triggers,
)

MIN_PSD_SEGMENTS = 4


# --------------------------------------------------------------------------------------------
# Windows and the off-source PSD


def median_bias(n: int) -> float:
    """Return the bias of the median of n exponential variables relative to their mean
    (sum_{k=1}^{n} (-1)^(k+1) / k, as scipy's Welch ``average='median'`` uses)."""
    k = np.arange(1, n + 1)
    return float(np.sum((-1.0) ** (k + 1) / k))


def off_source_psd(
    stretches: Sequence[Stretch],
    excluded: Sequence[tuple[float, float]],
    n: int,
    fs: float,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Return (strain PSD [n_f], aux PSDs [K, n_f], segments used) on the rfft grid of n samples.

    Median Welch: Hann-windowed segments of n samples at half overlap (scipy's periodograms),
    keeping only the segments that overlap no ``excluded`` GPS interval; the median over all
    kept segments of all stretches, divided by its bias.
    """
    periodograms = []
    for stretch in stretches:
        channels = np.concatenate([stretch.strain[None], stretch.aux])  # [1 + K, m]
        if channels.shape[-1] < n:
            continue
        _, centres, sxx = scipy.signal.spectrogram(
            channels, fs, window="hann", nperseg=n, noverlap=n // 2, mode="psd"
        )  # sxx [1 + K, n_f, n_seg]
        starts = stretch.t0 + centres - n / fs / 2
        ends = starts + n / fs
        keep = np.ones(len(starts), dtype=bool)
        for a, b in excluded:
            keep &= (ends <= a) | (starts >= b)
        periodograms.append(sxx[..., keep])
    sxx = np.concatenate(periodograms, axis=-1) if periodograms else np.empty((0, 0, 0))
    n_seg = sxx.shape[-1]
    if n_seg < MIN_PSD_SEGMENTS:
        raise ConfigError(
            f"files: only {n_seg} off-source segments of {n / fs:g} s for the PSD (need >= "
            f"{MIN_PSD_SEGMENTS}): give more data, fewer triggers or a smaller off-source-padding"
        )
    psd = np.median(sxx, axis=-1) / median_bias(n_seg)
    return psd[0], psd[1:], n_seg


def _covering(stretches: Sequence[Stretch], start: float, end: float) -> int | None:
    for i, s in enumerate(stretches):
        if start >= s.t0 - 1e-9 and end <= s.t1 + 1e-9:
            return i
    return None


def _cut(stretch: Stretch, start: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    i = int(round((start - stretch.t0) * stretch.sampling_frequency))
    i = min(max(i, 0), stretch.strain.shape[-1] - n)
    return stretch.strain[i : i + n], stretch.aux[:, i : i + n]


def plan_windows(
    stretches: Sequence[Stretch],
    triggers: Mapping[str, np.ndarray] | None,
    mode: str,
    duration: float,
    stride: float,
    padding: float,
    triggers_path: str = "",
) -> tuple[list[tuple[int, float]], dict[str, np.ndarray], list[tuple[float, float]]]:
    """Return the windows [(stretch, GPS start)], their labels and the off-source exclusions.

    Every trigger's window must lie inside one stretch (in ``triggers`` mode), else a
    :class:`ConfigError` names it.
    """
    times = np.empty(0) if triggers is None else triggers["time"]
    excluded = [(t - duration / 2 - padding, t + duration / 2 + padding) for t in times]
    windows: list[tuple[int, float]] = []
    labels: dict[str, list] = {"has_glitch": [], "glitch_time": [], "glitch_snr": []}
    labels["glitch_frequency"] = []

    def add(stretch: int, start: float, trigger: int | None) -> None:
        windows.append((stretch, start))
        labels["has_glitch"].append(trigger is not None)
        centre = start + duration / 2
        labels["glitch_time"].append(0.0 if trigger is None else times[trigger] - centre)
        for key, column in (("glitch_snr", "snr"), ("glitch_frequency", "frequency")):
            labels[key].append(0.0 if trigger is None else float(triggers[column][trigger]))

    spans = ", ".join(f"[{s.t0:.3f}, {s.t1:.3f})" for s in stretches)
    if mode == "triggers":
        for j, t in enumerate(times):
            start = t - duration / 2
            i = _covering(stretches, start, start + duration)
            if i is None:
                raise ConfigError(
                    f"files.triggers: the trigger at GPS {t:.3f} (row {j} of "
                    f"{triggers_path!r}) has its {duration:g} s window outside the data "
                    f"(GPS spans {spans})"
                )
            add(i, start, j)
        # Clean windows: the off-source time, tiled every window length.
        for i, s in enumerate(stretches):
            for start in np.arange(s.t0, s.t1 - duration + 1e-9, duration):
                end = start + duration
                if all(end <= a or start >= b for a, b in excluded):
                    add(i, float(start), None)
    else:
        for i, s in enumerate(stretches):
            for start in np.arange(s.t0, s.t1 - duration + 1e-9, stride):
                inside = np.flatnonzero((times >= start) & (times < start + duration))
                loudest = int(inside[np.argmax(triggers["snr"][inside])]) if len(inside) else None
                add(i, float(start), loudest)
    if not windows:
        raise ConfigError(
            f"files: no {duration:g} s window fits in the data (GPS spans {spans}): "
            "lower duration or give longer files"
        )
    out = {name: np.asarray(values) for name, values in labels.items()}
    out["has_glitch"] = out["has_glitch"].astype(bool)
    return windows, out, excluded


# --------------------------------------------------------------------------------------------
# The stage


def load_detector_data(data: Mapping, out: str | Path, log=print) -> None:
    """Read the files of ``data['files']``, cut the windows and write them to ``out`` as one
    shard in the simulator's layout (see the module docstring)."""
    check_files_settings(data)
    files = data["files"]
    fs, duration = float(data["sampling-frequency"]), float(data["duration"])
    n = int(round(fs * duration))
    stretches = [
        read_stretch(path, files["strain-channel"], files["aux-channels"], fs)
        for path in files["paths"]
    ]
    triggers = None if files["triggers"] is None else read_triggers(files["triggers"])
    windows, labels, excluded = plan_windows(
        stretches,
        triggers,
        files["windows"],
        duration,
        files["grid-stride"],
        files["off-source-padding"],
        str(files["triggers"]),
    )
    strain_psd, aux_psd, n_seg = off_source_psd(stretches, excluded, n, fs)
    cut = [_cut(stretches[i], start, n) for i, start in windows]
    strain = np.stack([c[0] for c in cut]).astype(np.float32)
    aux = np.stack([c[1] for c in cut]).astype(np.float32)
    n_win = len(windows)
    gps = np.array([start for _, start in windows])
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("strain", data=strain, compression="gzip", compression_opts=1)
        f.create_dataset("aux", data=aux, compression="gzip", compression_opts=1)
        f.create_dataset("gps_start", data=gps)
        for name, value in labels.items():
            f.create_dataset(name, data=value)
        f.create_dataset("glitch_type", data=np.full(n_win, -1, dtype=np.int8))
        f.create_dataset("glitch_channel", data=np.full(n_win, -1, dtype=np.int8))
        f.create_dataset("glitch_q", data=np.full(n_win, np.nan))
        f.create_dataset("has_chirp", data=np.zeros(n_win, dtype=bool))
        for name in ("chirp_time", "chirp_snr", "chirp_mass"):
            f.create_dataset(name, data=np.zeros(n_win))
        f.create_dataset("psd_frequencies", data=np.fft.rfftfreq(n, 1 / fs))
        f.create_dataset("strain_psd", data=strain_psd)
        f.create_dataset("aux_psd", data=aux_psd)
        write_provenance(
            f,
            data,
            shard=0,
            truth=False,
            sampling_frequency=fs,
            duration=duration,
            strain_channel=files["strain-channel"],
            aux_channels=list(files["aux-channels"]),
            psd_segments=n_seg,
        )
        write_checksum(f)
    log(
        f"read {len(stretches)} file(s), {sum(s.t1 - s.t0 for s in stretches):g} s; wrote "
        f"{n_win} windows ({int(labels['has_glitch'].sum())} on triggers) to {out}; PSD from "
        f"{n_seg} off-source segments"
    )
