"""Reading detector files: GWF or HDF5 strain and auxiliary channels, and trigger lists.

The readers of :mod:`twinflow.glitch.detector_data`. Each turns a bad file into one
:class:`ConfigError` naming it, before anything is written: a file that is not GWF or HDF5, a
truncated or damaged one, a channel missing from a file, a sampling rate other than
``sampling-frequency``, a trigger list that is not a table with ``time``, ``frequency`` and
``snr`` columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from twinflow.core.io import CorruptFileError, read_hdf5, require_complete_gwf
from twinflow.core.settings import ConfigError, require, require_choice, require_file

#: File suffixes gwpy reads here, and the format each means.
FILE_FORMATS = {".gwf": "gwf", ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5"}
TRIGGER_FORMATS = (".csv", ".h5", ".hdf5", ".hdf")
TRIGGER_COLUMNS = ("time", "frequency", "snr")
WINDOW_MODES = ("triggers", "grid")


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
        require_complete_gwf(path, f"{key}:")
    return fmt


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
