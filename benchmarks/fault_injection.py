"""Kill each long gw stage with SIGKILL at ten random moments; rerun; compare with a clean run.

Stages (on config/test.yaml, in a scratch folder): a waveform shard, a PSD bank. Prints, per
stage, the number of kills, how many left a stale or partial output, and how many reruns
differed from the uninterrupted run (the goal is 0 and 0). Training's kill-and-resume is
checked exactly by tests/gw/test_train.py.

    python benchmarks/fault_injection.py [--kills 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.reliability.kill_and_rerun import check_stage, run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    config = "config/test.yaml"
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        domain = scratch / "domain.json"
        run(["gw", "dataset-domain", "--config", config, "--out", str(domain)], REPO)
        stages = {
            "gw dataset-shard": (
                ["gw", "dataset-shard", "--config", config, "--domain", str(domain)]
                + ["--shard", "0", "--out", str(scratch / "shard-0.h5")],
                scratch / "shard-0.h5",
            ),
            "gw psd": (
                ["gw", "psd", "--config", config, "--detector", "H1"]
                + ["--out", str(scratch / "H1.h5")],
                scratch / "H1.h5",
            ),
        }
        print(f"{'stage':<18} {'kills':>5} {'problems':>8}")
        for name, (argv, out) in stages.items():
            fractions = sorted(rng.uniform(0.05, 0.95, args.kills))
            problems = check_stage(argv, out, REPO, list(fractions))
            print(f"{name:<18} {args.kills:>5} {len(problems):>8}")
            for problem in problems:
                print(f"    {problem}")


if __name__ == "__main__":
    main()
