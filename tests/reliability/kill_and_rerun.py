"""Kill a stage with SIGKILL at chosen moments, rerun it, and compare with an uninterrupted run.

Used by tests/reliability/test_kill_and_rerun.py (two moments per stage) and by
benchmarks/fault_injection.py (ten per stage).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py

from twinflow.core.io import hdf5_content_sha256

TWINFLOW = [sys.executable, "-m", "twinflow"]


def run(argv: list[str], cwd: Path) -> float:
    """Run ``twinflow ARGV`` to completion; return its wall time."""
    start = time.perf_counter()
    subprocess.run([*TWINFLOW, *argv], cwd=cwd, check=True, capture_output=True, timeout=900)
    return time.perf_counter() - start


def killed_at(argv: list[str], cwd: Path, seconds: float) -> bool:
    """Start ``twinflow ARGV``, SIGKILL it after ``seconds``; return whether it was still running."""
    proc = subprocess.Popen(
        [*TWINFLOW, *argv], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def content(path: Path) -> str:
    with h5py.File(path, "r") as f:
        return hdf5_content_sha256(f)


def leftovers(directory: Path) -> list[str]:
    """Temporary files of atomic writes still present in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


def check_stage(argv: list[str], out: Path, cwd: Path, fractions: list[float]) -> list[str]:
    """Return problems found killing the stage at ``fractions`` of its uninterrupted run time.

    After each kill the output must be absent or complete and identical to the reference; after
    the rerun it must be identical and no temporary file of a killed writer may remain.
    """
    reference_time = run(argv, cwd)
    reference = content(out)
    out.unlink()
    problems = []
    for fraction in fractions:
        # (a stage that finished before its kill must still have left the reference output)
        killed_at(argv, cwd, fraction * reference_time)
        if out.exists() and content(out) != reference:
            problems.append(f"killed at {fraction:.2f}: a different {out.name} was left behind")
        if out.exists():
            out.unlink()
        run(argv, cwd)
        if content(out) != reference:
            problems.append(f"killed at {fraction:.2f}: the rerun differs from the reference")
        if leftovers(out.parent):
            problems.append(f"killed at {fraction:.2f}: left {leftovers(out.parent)}")
        out.unlink()
    return problems
