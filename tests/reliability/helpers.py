"""Feeding one bad value to the CLI or the workflow, as a user would, and reading the result."""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
GOOD_CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
#: A value meaning "remove this key".
DELETE = object()


def config_with(path: tuple, value) -> dict:
    """Return the default config with ``value`` at ``path`` (or the key removed)."""
    config = copy.deepcopy(GOOD_CONFIG)
    node = config
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return config


def write_config(directory: Path, config: dict) -> Path:
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_cli(argv: list[str]) -> tuple[int, str]:
    """Run ``twinflow ARGV`` in this process; return (exit status, what it wrote to stderr)."""
    from twinflow.cli import main

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            status = main(argv)
        except SystemExit as err:  # argparse errors
            status = err.code
    return status, stderr.getvalue()


def run_cli_with(directory: Path, path: tuple, value, stage: list[str]) -> tuple[int, str]:
    """Write the default config with one bad value and run one stage on it by hand."""
    config = write_config(directory, config_with(path, value))
    return run_cli([*stage[:2], "--config", str(config), *stage[2:]])
