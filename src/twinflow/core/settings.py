"""Reading and checking the settings a stage runs with.

A stage receives one section of the configuration as a plain dict (the values a Snakemake rule
passes through ``params:``). The checks here raise :class:`ConfigError`, whose message always
names the offending key, its value and what would be valid, so that bad input is reported
before any work starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A setting or input file is invalid; the message names it and what would be valid."""


#: Where a stage may run: ``auto`` picks CUDA, then MPS, then the CPU.
DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def fail(key: str, value: Any, valid: str) -> None:
    """Raise a :class:`ConfigError` for ``key`` set to ``value``; ``valid`` says what would do."""
    raise ConfigError(f"{key} = {value!r} is invalid: {valid}")


def require(condition: bool, key: str, value: Any, valid: str) -> None:
    """Raise a :class:`ConfigError` naming ``key`` and ``value`` unless ``condition`` holds."""
    if not condition:
        fail(key, value, valid)


def require_choice(key: str, value: Any, choices: Iterable[Any]) -> None:
    """Check that ``value`` is one of ``choices``."""
    choices = list(choices)
    require(value in choices, key, value, f"choose one of {choices}")


def require_positive(key: str, value: Any, *, allow_zero: bool = False) -> None:
    """Check that ``value`` is a number greater than zero (or at least zero)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    require(ok, key, value, "expected a number " + (">= 0" if allow_zero else "> 0"))


def require_nyquist(key: str, frequency: float, sampling_frequency: float) -> None:
    """Check that ``frequency`` does not exceed the Nyquist frequency of the data."""
    nyquist = sampling_frequency / 2
    if frequency > nyquist:
        raise ConfigError(
            f"{key} = {frequency!r} Hz exceeds the Nyquist frequency {nyquist:g} Hz of "
            f"{sampling_frequency:g} Hz data: choose {key} <= {nyquist:g} Hz or raise "
            "sampling-frequency"
        )


def require_file(key: str, path: str | Path) -> Path:
    """Return ``path`` as a Path, checking that it is an existing file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key} = {str(path)!r}: no such file")
    return path


def memory_limit_bytes() -> int:
    """Return the memory a stage may plan to use: ``TWINFLOW_MEMORY_LIMIT_GB``, else the RAM.

    On a shared cluster node set the variable to the job's allocation (e.g. SLURM's --mem).
    """
    value = os.environ.get("TWINFLOW_MEMORY_LIMIT_GB")
    if value:
        try:
            return int(float(value) * 2**30)
        except ValueError:
            raise ConfigError(
                f"TWINFLOW_MEMORY_LIMIT_GB = {value!r} is invalid: a number of GiB"
            ) from None
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def require_memory(key: str, value: Any, n_bytes: float, what: str) -> None:
    """Raise :class:`ConfigError` before allocating ``n_bytes`` that exceed the memory limit."""
    limit = memory_limit_bytes()
    if n_bytes > limit:
        raise ConfigError(
            f"{key} = {value!r} is invalid: {what} would need {n_bytes / 2**30:.1f} GiB, more "
            f"than the {limit / 2**30:.1f} GiB available (set TWINFLOW_MEMORY_LIMIT_GB to change)"
        )


#: Names that become file or folder names: a letter or digit first, then letters, digits and
#: ``_ . + -`` (so never ``..``, a path separator or a hidden file).
SAFE_NAME = r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}"


def require_safe_name(key: str, name: Any) -> str:
    """Return ``name`` if it can be a file name inside its results folder, else raise."""
    import re

    if not (isinstance(name, str) and re.fullmatch(SAFE_NAME, name) and ".." not in name):
        raise ConfigError(
            f"{key} = {name!r} is invalid: a name used in file paths must start with a letter "
            "or digit and hold only letters, digits and _ . + - (no '..', no '/')"
        )
    return name


def load_yaml(path: str | Path) -> dict:
    """Return the mapping stored in a YAML file (never executes or unpickles anything)."""
    with open(path) as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level")
    return data


def select_section(config: Mapping, dotted: str) -> dict:
    """Return ``config['a']['b']`` for ``dotted = 'a.b'``, with a clear error if missing."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"the configuration has no section {dotted!r} (missing {part!r})")
        node = node[part]
    return dict(node)
