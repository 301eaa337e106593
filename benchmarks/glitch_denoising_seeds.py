"""Denoising figures of the translation model over seeds and peak weights.

Trains the aux -> strain model on an images file for each (peak-weight, seed) given, runs the
subtraction stage on the test split and prints, per peak weight, the median over seeds of the
amplitude denoising accuracy, the glitch energy removed and the chirp power retained (the goals
of config/README.md), with each seed's value. Training settings are the config's
``glitch.translation`` section with ``peak-weight`` and ``seed`` replaced.

    python benchmarks/glitch_denoising_seeds.py --images results/glitch/images.h5 \\
        --config config/config.yaml --peak-weights 0 20 --seeds 3 4 5 --out denoising.json

Runs are independent: launch several with different ``--seeds`` side by side, then
``--summarise`` their JSON files.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from twinflow.core.io import write_json
from twinflow.core.settings import load_yaml
from twinflow.glitch.settings import stage_settings

FIGURES = ("denoising_accuracy_amplitude", "glitch_energy_removed", "chirp_power_retained")


def run(images: str, config: str, peak_weight: float, seed: int) -> dict:
    """Return the subtraction metrics of one trained model (and its CPU time)."""
    from twinflow.glitch.subtraction import run_subtraction
    from twinflow.glitch.train import train_translation

    glitch = load_yaml(config)["glitch"]
    settings = {**stage_settings(glitch, "train-translation"), "peak-weight": peak_weight}
    settings.update({"seed": seed, "device": "cpu"})
    start = time.process_time()
    with tempfile.TemporaryDirectory() as folder:
        f = Path(folder)
        train_translation(settings, images, f / "m.pt", f / "m.csv", f / "m.png", log=lambda *_: 0)
        sub = {**stage_settings(glitch, "subtract"), "device": "cpu"}
        metrics = run_subtraction(sub, images, f / "m.pt", f / "s.json", f / "g.png", log=print)
    metrics.update({"peak_weight": peak_weight, "seed": seed})
    metrics["cpu_seconds"] = time.process_time() - start
    return metrics


def summarise(runs: list[dict]) -> dict:
    """Return, per peak weight, each figure's median over seeds and the per-seed values."""
    out: dict[str, dict] = {}
    for pw in sorted({r["peak_weight"] for r in runs}):
        mine = sorted((r for r in runs if r["peak_weight"] == pw), key=lambda r: r["seed"])
        out[f"{pw:g}"] = {
            "seeds": [r["seed"] for r in mine],
            **{
                k: {
                    "median": float(np.median([r[k] for r in mine])),
                    "values": [r[k] for r in mine],
                }
                for k in (*FIGURES, "denoising_accuracy_amplitude_perfect_model")
            },
        }
    for pw, row in out.items():
        print(f"peak-weight {pw}: seeds {row['seeds']}")
        for k in (*FIGURES, "denoising_accuracy_amplitude_perfect_model"):
            values = ", ".join(f"{v:.3f}" for v in row[k]["values"])
            print(f"  {k:45s} median {row[k]['median']:.3f}  ({values})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--peak-weights", type=float, nargs="+", default=[0.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 4, 5])
    parser.add_argument("--out", required=True, help="output JSON")
    parser.add_argument("--summarise", nargs="+", help="JSON files of earlier runs to combine")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.summarise:
        runs = [r for path in args.summarise for r in json.loads(Path(path).read_text())["runs"]]
        write_json(args.out, {"runs": runs, "summary": summarise(runs)})
        return
    runs = [
        run(args.images, args.config, pw, seed) for pw in args.peak_weights for seed in args.seeds
    ]
    write_json(args.out, {"runs": runs, "summary": summarise(runs)})


if __name__ == "__main__":
    main()
