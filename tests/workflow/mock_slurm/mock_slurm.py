#!/usr/bin/env python3
"""A stand-in for SLURM's command-line tools, for testing the SLURM profile without a cluster.

Installed under the names sbatch, sacct, squeue, srun, sinfo, sacctmgr, sshare, scontrol and
scancel (symlinks to this file). ``sbatch`` records its command line as one JSON line in
``$MOCK_SLURM_DIR/sbatch_calls.jsonl``, runs the job script at once (like an idle cluster),
and remembers its exit state for ``sacct``/``squeue``. ``srun`` drops its options and runs the
command. The rest answer with nothing, as a cluster with no accounting details would.
"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

STATE = Path(os.environ["MOCK_SLURM_DIR"])


def sbatch(args: list[str]) -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "sbatch_calls.jsonl", "a") as f:
        f.write(json.dumps(args) + "\n")
    counter = STATE / "next_jobid"
    jobid = int(counter.read_text()) if counter.exists() else 1000
    counter.write_text(str(jobid + 1))

    script, output, workdir = None, None, os.getcwd()
    for i, arg in enumerate(args):
        if arg.startswith("--wrap="):
            script = arg[len("--wrap=") :]
        elif arg in ("-o", "--output"):
            output = args[i + 1]
        elif arg.startswith("--output="):
            output = arg.split("=", 1)[1]
        elif arg in ("-D", "--chdir"):
            workdir = args[i + 1]
        elif arg.startswith("--chdir="):
            workdir = arg.split("=", 1)[1]
    if script is None:  # the job script comes on standard input
        script = sys.stdin.read()
    env = {**os.environ, "SLURM_JOB_ID": str(jobid), "SLURM_JOBID": str(jobid)}
    log = open(output.replace("%j", str(jobid)), "w") if output else subprocess.DEVNULL
    rc = subprocess.run(
        ["sh", "-c", script], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
    ).returncode
    (STATE / f"{jobid}.state").write_text("COMPLETED" if rc == 0 else "FAILED")
    print(jobid)
    return 0


def job_states() -> str:
    return "".join(f"{p.stem}|{p.read_text()}\n" for p in sorted(STATE.glob("*.state")))


def srun(args: list[str]) -> int:
    # Options come first, as `--opt=value`, `-n1`, or `--opt value` for the few srun uses.
    takes_value = {
        "-n",
        "-c",
        "-N",
        "--ntasks",
        "--cpus-per-task",
        "--nodes",
        "--gres",
        "--gpus",
        "--mem",
        "-J",
        "--jobid",
    }
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in takes_value else 1
    command = args[i:]
    if command == ["sh", "-s"]:
        return subprocess.run(["sh", "-s"], stdin=sys.stdin).returncode
    return subprocess.run(" ".join(shlex.quote(a) for a in command), shell=True).returncode


def main() -> int:
    name, args = Path(sys.argv[0]).name, sys.argv[1:]
    with open(STATE / "calls.log", "a") as f:
        f.write(f"{name} {shlex.join(args)}\n")
    if name == "sbatch":
        return sbatch(args)
    if name in ("sacct", "squeue"):
        sys.stdout.write(job_states())
        return 0
    if name == "srun":
        return srun(args)
    return 0  # sinfo, sacctmgr, sshare, scontrol, scancel: nothing to report


if __name__ == "__main__":
    sys.exit(main())
