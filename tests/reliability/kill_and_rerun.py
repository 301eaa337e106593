"""Kill a stage with SIGKILL at chosen moments, rerun it, and compare with an uninterrupted run.

Two ways: :func:`check_stage` runs a stage's CLI (``twinflow ...``) as a subprocess and kills
it; :func:`check_kills` forks the test process and kills the child while it runs the stage
function, so the kill lands in the stage's work rather than in interpreter start-up, and no
start-up is paid per run. Used by tests/reliability/test_kill_and_rerun.py (two moments per
stage) and by benchmarks/fault_injection.py (ten per stage).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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


# --------------------------------------------------------------------------------------------
# Stages run in a forked child: no interpreter start-up, so a kill lands inside the stage's work


#: Wall-clock times, which no rerun reproduces; everything else must be identical.
TIMINGS = frozenset(
    {
        "fit_seconds",
        "runtime",
        "wall_time",
        "sampling_time",
        "seconds",
        "samples_per_s",
        "batch_assembly_fraction",
        "total_seconds",
        "mean_samples_per_s",
    }
)


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def digest(path: Path) -> str:
    """Return the SHA-256 of what a file holds, less the wall-clock times in :data:`TIMINGS`.

    HDF5: every dataset (names, shapes, values); checkpoints: every tensor and value; JSON: the
    parsed content; CSV: the rows; other files: the bytes.
    """
    import csv
    import hashlib
    import json

    from twinflow.core.io import content_sha256

    if path.suffix == ".h5":
        return content(path)
    if path.suffix == ".pt":
        import torch

        payload = torch.load(path, map_location="cpu", weights_only=True)
        payload.pop("content-sha256", None)  # covers the fit time, which differs
        return content_sha256(_without_timings(payload))
    if path.suffix == ".json":
        return content_sha256(_without_timings(json.loads(path.read_text())))
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            return content_sha256(_without_timings(list(csv.DictReader(f))))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Stage:
    """A long stage to kill: ``run(log)`` runs it once in this process and writes ``outputs``
    (compared with an uninterrupted run); ``state`` are other files it writes (the state file
    it resumes from, figures): kept between a kill and its rerun, removed between trials. Kills are placed in its ``phase``, which opens with the first log line
    containing ``phase`` (a string), or when the file ``phase`` (a path) appears, or at the
    start (None)."""

    name: str
    run: Callable[[Callable], object]
    outputs: list[Path]
    state: list[Path] = field(default_factory=list)
    phase: str | Path | None = None

    def clean(self) -> None:
        for path in (*self.outputs, *self.state):
            path.unlink(missing_ok=True)

    def _opens(self, line: str) -> bool:
        return isinstance(self.phase, str) and self.phase in line

    def timed_run(self) -> tuple[float | None, list[str]]:
        """Run the stage here; return how long its phase took (None: it did not open; a
        resumed run may skip it), and its log lines."""
        import threading

        lines: list[str] = []
        opened = time.perf_counter() if self.phase is None else None
        done = threading.Event()

        def log(*parts) -> None:
            nonlocal opened
            lines.append(" ".join(map(str, parts)))
            if opened is None and self._opens(lines[-1]):
                opened = time.perf_counter()

        def watch(path: Path) -> None:
            nonlocal opened
            while not done.wait(0.002):
                if path.exists():
                    opened = time.perf_counter()
                    return

        watcher = None
        if isinstance(self.phase, Path) and not self.phase.exists():
            watcher = threading.Thread(target=watch, args=(self.phase,), daemon=True)
            watcher.start()
        try:
            self.run(log)
        finally:
            done.set()
            if watcher is not None:
                watcher.join()
        return (None if opened is None else time.perf_counter() - opened), lines

    def killed(self, seconds: float, timeout: float = 300) -> bool:
        """Run the stage in a forked child, SIGKILL it ``seconds`` into its phase; return
        whether it was still running then (False: it finished first)."""
        import multiprocessing

        context = multiprocessing.get_context("fork")
        logged = context.Event()

        def run() -> None:
            _own_progress_bar_lock()
            self.run(lambda *parts: self._opens(" ".join(map(str, parts))) and logged.set())

        def opened() -> bool:
            if isinstance(self.phase, Path):
                return self.phase.exists()
            return self.phase is None or logged.is_set()

        child = context.Process(target=run, daemon=True)
        child.start()
        while child.is_alive() and not opened():
            time.sleep(0.002)
        child.join(seconds)
        if not child.is_alive():
            return False
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout)
        return True


def _own_progress_bar_lock() -> None:
    """Give this (forked) process its own tqdm lock.

    tqdm's default lock includes a multiprocessing semaphore, shared with the parent after a
    fork: a child killed while drawing a progress bar would hold it for ever, and the parent's
    next bar would wait on it for ever.
    """
    import threading

    from tqdm import tqdm
    from tqdm.auto import tqdm as auto_tqdm

    for cls in {tqdm, auto_tqdm}:
        cls.set_lock(threading.RLock())


@dataclass
class KillReport:
    """What killing a stage at several moments found: ``problems`` must be empty."""

    kills: int = 0
    finished_first: int = 0
    resumed: int = 0
    problems: list[str] = field(default_factory=list)


def check_kills(stage: Stage, fractions: list[float]) -> KillReport:
    """Kill ``stage`` at ``fractions`` of its phase; rerun; compare with an uninterrupted run.

    The stage first runs twice uninterrupted: the second run is the reference (the first
    pays one-off start-up costs, so the second times the phase as the killed runs see it) and
    must equal the first. After each kill every output must be absent or identical to the
    reference (nothing half-written); the rerun must reproduce every output (less
    :data:`TIMINGS`) and leave no temporary file behind. ``resumed`` counts reruns that
    logged resuming from a state file.
    """
    report = KillReport()
    runs = []
    for _ in range(2):
        stage.clean()
        phase_seconds, _ = stage.timed_run()
        if phase_seconds is None:
            raise AssertionError(f"{stage.name}: no log line contains {stage.phase!r}")
        runs.append({path: digest(path) for path in stage.outputs})
    reference = runs[-1]
    if runs[0] != reference:
        report.problems.append(f"{stage.name}: two uninterrupted runs differ")
    folders = {path.parent for path in stage.outputs}
    for fraction in fractions:
        stage.clean()
        moment = f"{stage.name} killed at {fraction:.2f} of its phase"
        if stage.killed(fraction * phase_seconds):
            report.kills += 1
        else:
            report.finished_first += 1
        for path in stage.outputs:
            if path.exists() and digest(path) != reference[path]:
                report.problems.append(f"{moment}: a different {path.name} was left behind")
        _, lines = stage.timed_run()
        report.resumed += any("resuming" in line for line in lines)
        for path in stage.outputs:
            if not path.exists() or digest(path) != reference[path]:
                report.problems.append(f"{moment}: the rerun's {path.name} differs")
        for folder in folders:
            if leftovers(folder):
                report.problems.append(f"{moment}: left {leftovers(folder)}")
    stage.clean()
    return report
