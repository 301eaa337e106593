"""Atomic outputs and provenance.

Every output is first written under a temporary name in the same directory and renamed into
place only once complete, so an interrupted job never leaves a file that looks finished.
HDF5 files carry the settings that made them as a JSON attribute.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import twinflow


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
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
