"""Shared test fixtures: paths, the shared real-data folder, and running the workflow; and how
the suite shares two CPU cores.

The suite runs on two pytest-xdist workers (``-n 2`` in pyproject.toml). The workflow tests,
the longest (each runs ``snakemake --cores 2`` itself), come first, and each test is handed to
whichever worker is free. Measured with ``bash .ci/run`` on the idle 2-core machine: pytest
658 s, against 756 s with all workflow tests kept on one worker (they are then the critical
path) and 816-984 s in one process. A worker's torch gets one thread: more threads than cores
spend their time in OpenMP's spin-waits (on 2 cores, a two-thread glitch training beside a
one-thread job took 2.1 s per batch instead of 0.17 s; with one thread, 0.23 s). ``-n 0`` runs
the suite in one process."""

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


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker (module docstring)
        os.environ["OMP_NUM_THREADS"] = "1"


@pytest.hookimpl(optionalhook=True)  # an xdist hook: only called where xdist is installed
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Hand out the tests one at a time, in collection order (workflow tests first)."""
    from xdist.scheduler import LoadScopeScheduling

    class OneTestAtATime(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid

    return OneTestAtATime(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the workflow tests first: the longest tests start first, and the short ones fill
    the gaps at the end."""
    items.sort(key=lambda item: not item.nodeid.startswith("tests/workflow/"))


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
