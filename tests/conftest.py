"""Shared test fixtures: paths, the shared real-data folder, and running the workflow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TEST_CONFIG = REPO / "config" / "test.yaml"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real data files (``../shared/data``); tests using it skip if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-data folder {SHARED_DATA} is not present")
    return SHARED_DATA


def snakemake(
    workdir: Path,
    *args: str,
    configfiles: list[Path] | None = None,
    check: bool = True,
    env: dict | None = None,
    timeout: int = 600,
) -> subprocess.CompletedProcess:
    """Run the repository's workflow in ``workdir`` (outputs land there, not in the repo).

    ``configfiles`` default to ``config/test.yaml``; later files override earlier ones.
    """
    configfiles = configfiles or [TEST_CONFIG]
    bindir = str(Path(sys.executable).parent)
    # PATH is left as it is: the workflow itself must find the `twinflow` command of the
    # environment it runs in (the README's `.venv/bin/snakemake` does not activate the venv)
    run_env = {**os.environ, **(env or {})}
    # --configfile takes several files, so it comes last, after targets and options
    cmd = [
        str(Path(bindir) / "snakemake"),
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
        "--configfile",
        *map(str, configfiles),
    ]
    result = subprocess.run(
        cmd, cwd=workdir, env=run_env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


def planned_rules(result: subprocess.CompletedProcess) -> set[str]:
    """Return the rules a dry run (``snakemake -n``) would execute, read from its job table."""
    rules, in_table = set(), False
    for line in result.stdout.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
            continue
        if in_table:
            if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
                rules.add(parts[0])
            elif parts and parts[0] == "total":
                break
    return rules


@pytest.fixture
def run_snakemake():
    """Return :func:`snakemake` (run the workflow in a given work directory)."""
    return snakemake


def copy_if_exists(src: Path, dst: Path) -> None:
    if src.exists():
        shutil.copytree(src, dst, dirs_exist_ok=True)
