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

Files are taken one by one (each a contiguous stretch; gaps between files are fine). Bad input
stops with a one-line :class:`ConfigError` before anything is written: a file that is not GWF
or HDF5, a channel missing from a file, a sampling rate other than ``sampling-frequency``, a
trigger whose window is not inside the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.signal

from twinflow.core.io import (
    CorruptFileError,
    atomic_path,
    read_hdf5,
    write_checksum,
    write_provenance,
)
from twinflow.core.settings import ConfigError, require, require_choice, require_file

#: File suffixes gwpy reads here, and the format each means.
FILE_FORMATS = {".gwf": "gwf", ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5"}
TRIGGER_FORMATS = (".csv", ".h5", ".hdf5", ".hdf")
TRIGGER_COLUMNS = ("time", "frequency", "snr")
WINDOW_MODES = ("triggers", "grid")
MIN_PSD_SEGMENTS = 4


# --------------------------------------------------------------------------------------------
# Settings and files


def file_format(path: str | Path, key: str = "files.paths") -> str:
    """Return ``gwf`` or ``hdf5`` for a data file, from its suffix, checked against its content."""
    path = require_file(key, path)
    fmt = FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"{key}: {str(path)!r} is not a GWF or HDF5 file (suffix {path.suffix!r}; "
            f"valid: {sorted(FILE_FORMATS)})"
        )
    with open(path, "rb") as f:
        head = f.read(8)
    ok = head.startswith(b"IGWD") if fmt == "gwf" else h5py.is_hdf5(path)
    if not ok:
        raise ConfigError(f"{key}: {str(path)!r} is not a valid {fmt.upper()} file")
    if fmt == "gwf":
        _require_complete_gwf(path, key)
    return fmt


def _require_complete_gwf(path: Path, key: str) -> None:
    """Raise :class:`CorruptFileError` unless a GWF file ends with its end-of-file record.

    The frame libraries can crash the process (a segmentation fault, not an exception) on a
    truncated frame file, so the file is checked before they see it: in frame format version 8
    the last structure, FrEndOfFile, ends with nBytes (the file's length, 8 bytes), seekTOC and
    three 4-byte checksums, so nBytes sits 28 bytes before the end. Older versions are not
    checked.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(14)  # "IGWD\0", version, minor, five type sizes, 0x1234 as INT_2U
        if len(header) < 14 or header[5] < 8:
            return
        order = "little" if header[12:14] == b"\x34\x12" else "big"
        f.seek(max(size - 28, 0))
        n_bytes = int.from_bytes(f.read(8), order)
    if n_bytes != size:
        raise CorruptFileError(
            f"{key}: {str(path)!r} is a truncated or damaged GWF file (its end-of-file record "
            f"does not give its length {size} bytes): copy it again"
        )


def check_files_settings(data: Mapping) -> None:
    """Raise :class:`ConfigError` for the first invalid ``files`` setting (no data is read)."""
    files = data["files"]
    paths = files["paths"]
    require(
        isinstance(paths, list) and len(paths) > 0,
        "files.paths",
        paths,
        "a list of one or more GWF or HDF5 files",
    )
    for path in paths:
        file_format(path)
    require(
        isinstance(files["strain-channel"], str) and files["strain-channel"],
        "files.strain-channel",
        files["strain-channel"],
        "a channel name, e.g. H1:GDS-CALIB_STRAIN",
    )
    aux = files["aux-channels"]
    require(
        isinstance(aux, list) and len(aux) == data["n-auxiliary"],
        "files.aux-channels",
        aux,
        f"a list of n-auxiliary = {data['n-auxiliary']} channel names",
    )
    require_choice("files.windows", files["windows"], WINDOW_MODES)
    triggers = files["triggers"]
    if triggers is None:
        require(
            files["windows"] == "grid",
            "files.triggers",
            triggers,
            "a trigger list (CSV or HDF5) when files.windows is 'triggers'",
        )
    else:
        path = require_file("files.triggers", triggers)
        require(
            path.suffix.lower() in TRIGGER_FORMATS,
            "files.triggers",
            str(path),
            f"a CSV or HDF5 trigger list (suffix one of {list(TRIGGER_FORMATS)})",
        )
    for key in ("grid-stride", "off-source-padding"):
        value = files[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        require(ok and value >= 0, f"files.{key}", value, "a number of seconds >= 0")
    require(files["grid-stride"] > 0, "files.grid-stride", files["grid-stride"], "seconds > 0")


def channel_names(path: str | Path, fmt: str) -> list[str]:
    """Return the channel names a GWF or (gwpy-written) HDF5 file holds."""
    if fmt == "gwf":
        from gwpy.io.gwf import get_channel_names

        try:
            return list(get_channel_names(str(path)))
        except Exception as err:  # the GWF libraries raise several types for damaged frames
            raise CorruptFileError(
                f"files.paths: {str(path)!r} cannot be read as GWF ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else 'damaged frame file'})"
            ) from None
    names: list[str] = []
    with read_hdf5(path, "files.paths:") as f:
        f.visititems(
            lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
        )
    return names


@dataclass
class Stretch:
    """One contiguous stretch of data: the strain and auxiliary channels from one file."""

    path: str
    t0: float  # GPS start [s]
    strain: np.ndarray  # [m]
    aux: np.ndarray  # [K, m]
    sampling_frequency: float

    @property
    def t1(self) -> float:
        return self.t0 + self.strain.shape[-1] / self.sampling_frequency


def read_stretch(path: str | Path, strain_channel: str, aux_channels: Sequence[str], fs: float):
    """Return the :class:`Stretch` of one file, checking channels and sampling rates first."""
    from gwpy.timeseries import TimeSeriesDict

    fmt = file_format(path)
    channels = [strain_channel, *aux_channels]
    present = set(channel_names(path, fmt))
    for name in channels:
        if name not in present:
            raise ConfigError(
                f"files: channel {name!r} is not in {str(path)!r} "
                f"(it holds {sorted(present)[:8]}{' ...' if len(present) > 8 else ''})"
            )
    try:
        data = TimeSeriesDict.read(str(path), channels, format=fmt)
    except Exception as err:  # gwpy's readers raise several types for damaged files
        raise CorruptFileError(
            f"files.paths: the channels of {str(path)!r} cannot be read ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'damaged file'})"
        ) from None
    t0 = None
    arrays = []
    for name in channels:
        series = data[name]
        rate = float(series.sample_rate.value)
        if not np.isclose(rate, fs):
            raise ConfigError(
                f"files: channel {name!r} in {str(path)!r} is sampled at {rate:g} Hz, but "
                f"sampling-frequency is {fs:g} Hz (set it to {rate:g} or resample the file)"
            )
        start = float(series.t0.value)
        if t0 is None:
            t0, length = start, len(series)
        elif not np.isclose(start, t0) or len(series) != length:
            raise ConfigError(
                f"files: channel {name!r} in {str(path)!r} spans [{start}, "
                f"{start + len(series) / rate}) s, not the strain channel's span"
            )
        values = np.asarray(series.value, dtype=float)
        if not np.all(np.isfinite(values)):
            raise ConfigError(f"files: channel {name!r} in {str(path)!r} has NaN or inf samples")
        arrays.append(values)
    return Stretch(str(path), t0, arrays[0], np.stack(arrays[1:]), fs)


def read_triggers(path: str | Path) -> dict[str, np.ndarray]:
    """Return the trigger list (``time`` [GPS s], ``frequency`` [Hz], ``snr``) of a CSV file
    with a header line, or of an HDF5 file with a table ``triggers`` (or top-level datasets)."""
    path = require_file("files.triggers", path)
    if path.suffix.lower() == ".csv":
        import pandas as pd

        try:
            table = pd.read_csv(path)
        except (ValueError, UnicodeDecodeError) as err:  # pandas' parser errors are ValueErrors
            raise ConfigError(
                f"files.triggers = {str(path)!r} is not a CSV table with a header line "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'empty'})"
            ) from None
        columns = {name: table[name].to_numpy() for name in table.columns}
    else:
        with read_hdf5(path, "files.triggers =") as f:
            if "triggers" in f and f["triggers"].dtype.names:
                data = f["triggers"][()]
                columns = {name: data[name] for name in data.dtype.names}
            else:
                columns = {name: f[name][()] for name in f if isinstance(f[name], h5py.Dataset)}
    missing = [c for c in TRIGGER_COLUMNS if c not in columns]
    if missing:
        raise ConfigError(
            f"files.triggers = {str(path)!r} lacks the column(s) {missing}; valid: a table with "
            f"columns {list(TRIGGER_COLUMNS)} (it has {sorted(columns)})"
        )
    return {c: np.asarray(columns[c], dtype=float) for c in TRIGGER_COLUMNS}


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
