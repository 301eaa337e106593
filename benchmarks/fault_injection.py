"""Kill each long stage with SIGKILL at ten random moments; rerun; compare with a clean run.

Stages, on config/test.yaml in a scratch folder:

- through their CLI (a subprocess killed at a random fraction of its wall time): a gw waveform
  shard, a gw PSD bank;
- in a forked child killed at a random fraction of the stage's own work (see
  ``tests/reliability/kill_and_rerun.check_kills``): glitch training of the translation model
  and of the VAE (killed anywhere after the first epoch's state is written, so reruns resume),
  the anomaly sideband flow and SIGMA's flow-matching model, gw per-event inference (killed
  inside refinement with the exact likelihood) and gw training (after its first epoch).

Prints per stage the number of kills (and of runs that finished before their kill), of reruns
that resumed from a state file, and of problems: an output left half-written or different
after a kill, a rerun that differs from the uninterrupted run (wall-clock times aside), a
temporary file left behind. The goal is 0 problems.

    OMP_NUM_THREADS=1 python benchmarks/fault_injection.py [--kills 10] [--seed 0] [--only NAME]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.reliability import stages  # noqa: E402
from tests.reliability.kill_and_rerun import check_kills, check_stage, run  # noqa: E402

CONFIG = "config/test.yaml"
QUIET = {"log": lambda *a: None}


def forked_stages(scratch: Path) -> dict:
    """The training and inference stages, with more epochs than the tests use."""
    from twinflow.anomaly.data import prepare_events
    from twinflow.core.config import load_config
    from twinflow.glitch.data import simulate_dataset_shard
    from twinflow.glitch.qtransform import build_images
    from twinflow.glitch.settings import stage_settings

    config = load_config(REPO / CONFIG)
    glitch, anomaly = copy.deepcopy(config["glitch"]), copy.deepcopy(config["anomaly"])
    simulate = stage_settings(glitch, "simulate")
    shards = [scratch / f"glitch-shard-{i}.h5" for i in range(glitch["data"]["n-shards"])]
    for i, path in enumerate(shards):
        simulate_dataset_shard(
            simulate["data"], i, path, image_band=simulate["image-band"], **QUIET
        )
    images = stage_settings(glitch, "images")
    build_images(images["data"], images["qtransform"], shards, scratch / "images.h5", **QUIET)
    prepare_events({"seed": anomaly["seed"], "data": anomaly["data"]}, scratch / "events.h5")

    def folder(name: str) -> Path:
        path = scratch / name
        path.mkdir()
        return path

    return {
        "glitch train-translation": lambda: stages.glitch_translation(
            folder("translation"), glitch, scratch / "images.h5", epochs=6
        ),
        "glitch train-vae": lambda: stages.glitch_vae(
            folder("vae"), glitch, scratch / "images.h5", epochs=6
        ),
        "anomaly sideband-flow": lambda: stages.anomaly_sideband_flow(
            folder("flow"), anomaly, scratch / "events.h5", epochs=8
        ),
        "anomaly train-sigma": lambda: stages.anomaly_sigma(
            folder("sigma"), anomaly, scratch / "events.h5", epochs=40
        ),
        "gw inference (refinement)": lambda: stages.gw_inference(folder("inference")),
        "gw train": lambda: stages.gw_training(folder("gw-train"), copy.deepcopy(config["gw"])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="run only the stages whose name contains this")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    wanted = lambda name: args.only is None or args.only in name  # noqa: E731
    print(f"{'stage':<28} {'kills':>5} {'finished':>8} {'resumed':>7} {'problems':>8}")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        domain = scratch / "domain.json"
        cli = {
            "gw dataset-shard": (
                ["gw", "dataset-shard", "--config", CONFIG, "--domain", str(domain)]
                + ["--shard", "0", "--out", str(scratch / "shard-0.h5")],
                scratch / "shard-0.h5",
            ),
            "gw psd": (
                ["gw", "psd", "--config", CONFIG, "--detector", "H1"]
                + ["--out", str(scratch / "H1.h5")],
                scratch / "H1.h5",
            ),
        }
        if any(wanted(name) for name in cli):
            run(["gw", "dataset-domain", "--config", CONFIG, "--out", str(domain)], REPO)
        for name, (argv, out) in cli.items():
            if wanted(name):
                fractions = sorted(rng.uniform(0.05, 0.95, args.kills))
                problems = check_stage(argv, out, REPO, list(fractions))
                print(f"{name:<28} {args.kills:>5} {'-':>8} {'-':>7} {len(problems):>8}")
                for problem in problems:
                    print(f"    {problem}")
        for name, make in forked_stages(scratch).items():
            if wanted(name):
                fractions = sorted(rng.uniform(0.02, 0.98, args.kills))
                report = check_kills(make(), list(fractions))
                print(
                    f"{name:<28} {report.kills:>5} {report.finished_first:>8} "
                    f"{report.resumed:>7} {len(report.problems):>8}",
                    flush=True,
                )
                for problem in report.problems:
                    print(f"    {problem}")


if __name__ == "__main__":
    main()
