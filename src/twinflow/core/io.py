"""Atomic outputs and provenance.

Every output is first written under a temporary name in the same directory and renamed into
place only once complete, so an interrupted job never leaves a file that looks finished.
HDF5 files carry the settings that made them as a JSON attribute.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import twinflow
from twinflow.core.settings import ConfigError

_HOST = socket.gethostname().replace("-", "_").replace(".", "_")


def _remove_stale_temporaries(path: Path) -> None:
    """Remove temporaries of ``path`` left by a writer that was killed (its process is gone).

    A killed process (SIGKILL, out of memory, a cluster's time limit) cannot clean up after
    itself; the next writer of the same output does, so nothing half-written stays behind.
    """
    prefix = f".{path.name}.tmp-{_HOST}-"
    for tmp in path.parent.glob(f"{prefix}*{path.suffix}"):
        pid = tmp.name[len(prefix) :].removesuffix(path.suffix)
        if not pid.isdigit():  # not ours, or written on another host of a shared file system
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:  # another user's live process
            pass


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    On an exception the temporary file is removed and ``path`` is left untouched; temporaries
    of writers that were killed are removed by the next writer.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{_HOST}-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def dumps_settings(settings: Mapping) -> str:
    """Return ``settings`` as a JSON string (keys kept in their order)."""
    return json.dumps(_to_jsonable(settings))


def write_provenance(h5obj, settings: Mapping, **attrs: Any) -> None:
    """Attach ``settings`` (as JSON), the twinflow version and ``attrs`` to an HDF5 object."""
    h5obj.attrs["settings"] = dumps_settings(settings)
    h5obj.attrs["twinflow_version"] = twinflow.__version__
    for key, value in attrs.items():
        h5obj.attrs[key] = (
            value if not isinstance(value, (Mapping, list)) else dumps_settings(value)
        )


def read_settings(h5obj) -> dict:
    """Return the settings stored by :func:`write_provenance`."""
    return json.loads(h5obj.attrs["settings"])


def write_json(path: str | Path, data: Mapping) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_to_jsonable(data), indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# Reading files: one error line naming the file; content checksums


class CorruptFileError(ConfigError):
    """A file is damaged: unreadable, truncated, or its content no longer matches its checksum
    (as opposed to a file of the wrong kind, which is intact)."""


@contextmanager
def read_hdf5(path: str | Path, what: str) -> Iterator:
    """Open an HDF5 file for reading; any failure to open it is one :class:`ConfigError`.

    ``what`` says what the file is for (``"PSD bank"``, ``"waveform shard"``), so the message
    names the role, the file and what was found instead (missing, not HDF5, truncated).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r}: no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        kind = "not an HDF5 file" if not h5py.is_hdf5(path) else "a damaged HDF5 file"
        raise CorruptFileError(
            f"{what} {str(path)!r} cannot be read: {kind} ({str(err).splitlines()[0]})"
        ) from None
    with handle:
        yield handle


def require_complete_gwf(path: str | Path, what: str) -> None:
    """Raise :class:`CorruptFileError` unless a GWF file ends with its end-of-file record.

    The frame libraries can crash the process (a segmentation fault, not an exception) on a
    truncated frame file, so the file is checked before they see it: in frame format version 8
    the last structure, FrEndOfFile, ends with nBytes (the file's length, 8 bytes), seekTOC and
    three 4-byte checksums, so nBytes sits 28 bytes before the end. Older versions are not
    checked.
    """
    path = Path(path)
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
            f"{what} {str(path)!r} is a truncated or damaged GWF file (its end-of-file record "
            f"does not give its length {size} bytes): copy it again"
        )


def require_datasets(h5obj, what: str, names) -> None:
    """Raise :class:`ConfigError` naming the file and the missing datasets, if any."""
    missing = [n for n in names if n not in h5obj]
    if missing:
        raise ConfigError(
            f"{what} {h5obj.file.filename!r} has no {missing} (found {sorted(h5obj.keys())}): "
            "it was not written by this stage"
        )


def _update_hash(digest, value: Any) -> None:
    """Feed a value made of arrays, tensors and plain data into ``digest``, canonically."""
    if isinstance(value, Mapping):
        for key in sorted(value, key=str):
            digest.update(f"<{key}>".encode())
            _update_hash(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"[{len(value)}]".encode())
        for item in value:
            _update_hash(digest, item)
    elif type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach"):
        import torch  # only reached for tensors, so torch is already imported

        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{flat.dtype}{tuple(value.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        digest.update(f"{value.dtype}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    else:
        digest.update(repr(value).encode())


def content_sha256(value: Any) -> str:
    """Return a SHA-256 of the content of ``value`` (arrays, tensors, dicts, lists, numbers)."""
    import hashlib

    digest = hashlib.sha256()
    _update_hash(digest, value)
    return digest.hexdigest()


def hdf5_content_sha256(h5file, bytes_per_read: int = 1 << 25) -> str:
    """Return the SHA-256 of every dataset of an HDF5 file (names, dtypes, shapes, values).

    Datasets are read a block of rows at a time (about ``bytes_per_read`` bytes, at least one
    row), so memory stays small for large files; the digest does not depend on the block size.
    """
    import hashlib

    import h5py

    digest = hashlib.sha256()
    datasets = []
    h5file.visititems(
        lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None
    )
    for name in sorted(datasets):
        data = h5file[name]
        digest.update(f"<{name}>{data.dtype}{data.shape}".encode())
        if data.ndim == 0:
            digest.update(np.ascontiguousarray(data[()]).tobytes())
            continue
        row_bytes = data.dtype.itemsize * int(np.prod(data.shape[1:]))
        rows_per_read = max(1, bytes_per_read // max(row_bytes, 1))
        for start in range(0, data.shape[0], rows_per_read):
            block = data[start : start + rows_per_read]
            digest.update(np.ascontiguousarray(block).tobytes())
    return digest.hexdigest()


CHECKSUM_ATTRIBUTE = "content-sha256"


def write_checksum(h5file) -> None:
    """Store the checksum of the file's datasets as an attribute (call last, before closing)."""
    h5file.attrs[CHECKSUM_ATTRIBUTE] = hdf5_content_sha256(h5file)


def verify_checksum(h5file, what: str) -> None:
    """Raise :class:`CorruptFileError` if the datasets no longer match the stored checksum, or
    cannot be read back.

    Files written before checksums existed carry none and pass unchecked.
    """
    stored = h5file.attrs.get(CHECKSUM_ATTRIBUTE)
    if stored is None:
        return
    try:
        actual = hdf5_content_sha256(h5file)
    except OSError as err:  # damaged chunks or metadata
        raise CorruptFileError(
            f"{what} {h5file.filename!r} is corrupt: its datasets cannot be read back "
            f"({str(err).splitlines()[0]})"
        ) from None
    if stored != actual:
        raise CorruptFileError(
            f"{what} {h5file.filename!r} is corrupt: its content no longer matches the checksum "
            "written with it"
        )


def quarantine(path: str | Path) -> Path:
    """Move a corrupt file aside to ``<name>.corrupt`` (kept for inspection); return the new path.

    The original name is then missing, so Snakemake regenerates it with the rule that made it.
    """
    path = Path(path)
    target = path.with_name(path.name + ".corrupt")
    os.replace(path, target)
    return target


@contextmanager
def quarantine_if_damaged(path: str | Path) -> Iterator[None]:
    """Run a block that reads ``path``, an intermediate the workflow made; if the block finds
    the file damaged (:class:`CorruptFileError`), move the file aside with :func:`quarantine`
    and raise the same error, saying where it went and that a rerun regenerates it.

    A file of the wrong kind is intact and stays where it is; use this only around reading a
    file a rule wrote (shards, images, events, models): a user's own input file is never moved.
    """
    try:
        yield
    except CorruptFileError as err:
        if not Path(path).is_file():
            raise
        corrupt = quarantine(path)
        raise type(err)(
            f"{err}; moved it to {str(corrupt)!r}: rerun the workflow and the rule that made it "
            "regenerates it"
        ) from None


def verify_intermediate(path: str | Path, what: str, datasets=()) -> None:
    """Check that an HDF5 file a rule wrote opens, holds ``datasets`` and matches its checksum.

    A damaged file is moved aside (see :func:`quarantine_if_damaged`), so its name is then
    missing and rerunning the workflow regenerates it with its own rule (and what depends on
    it), while nothing else is deleted.
    """
    with quarantine_if_damaged(path), read_hdf5(path, what) as f:
        require_datasets(f, what, datasets)
        verify_checksum(f, what)
