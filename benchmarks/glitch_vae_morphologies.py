"""AUROC of a trained VAE glitch detector per glitch class and against SNR.

The VAE trains on clean Q-plots only, so every glitch class is one it was not trained on: this
table is its leave-one-class-out evaluation. For each class of ``twinflow.glitch.data``
(the three of the default dataset and the five Gravity-Spy-like ones) and each SNR in
``--snrs``, it simulates ``--per-cell`` glitches at exactly that strain SNR, on the same noise
as the run (Gaussian or real, from the images file's settings), Q-transforms them with the
run's settings and training-split scaling, and scores them against ``--clean`` freshly
simulated clean samples. ROC AUC from scikit-learn.

    python benchmarks/glitch_vae_morphologies.py --results results/glitch --out auroc.json

Prints a class x SNR table and writes it (with the settings) as JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import h5py
import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from twinflow.core.io import write_json
from twinflow.glitch.data import GLITCH_TYPES, simulate_shard, strain_psd
from twinflow.glitch.qtransform import load_images, transform_for
from twinflow.glitch.vae import anomaly_scores, load_vae


def strain_images(data: dict, q: dict, images, shard: int) -> np.ndarray:
    """Return the normalised strain images [N, 1, S, S] of one simulated shard."""
    arrays = simulate_shard(data, shard, tuple(q["frange"]))
    qt = transform_for(q, data["sampling-frequency"], data["duration"])
    asd = np.sqrt(strain_psd(data)[1])
    energy = np.concatenate(
        [qt(arrays["strain"][i : i + 128], asd) for i in range(0, len(arrays["strain"]), 128)]
    )
    return images.strain_scale.transform(energy[:, None])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="a glitch results folder")
    parser.add_argument("--out", required=True, help="output JSON")
    parser.add_argument("--snrs", type=float, nargs="+", default=[5, 6, 8, 10, 15, 20])
    parser.add_argument("--per-cell", type=int, default=60, help="glitches per class and SNR")
    parser.add_argument("--clean", type=int, default=300, help="clean samples")
    parser.add_argument("--seed", type=int, default=2027)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.process_time()

    images = load_images(f"{args.results}/images.h5", "test")
    model, training = load_vae(f"{args.results}/vae/model.pt")
    score_settings = {**training, "score": "reconstruction"}
    cpu = torch.device("cpu")
    with h5py.File(f"{args.results}/images.h5", "r") as f:
        data = json.loads(f.attrs["data_settings"])
    q = images.settings
    data.update({"seed": args.seed, "clean-fraction": 1.0, "samples-per-shard": args.clean})
    data["chirps"]["fraction"] = 0.0
    defaults = {  # parameters of the new classes, for images files made before they existed
        "koi-tail-frequency": [20, 40],
        "koi-tail-amplitude": 0.6,
        "tomte-frequency": [25, 60],
        "whistle-frequency": [60, 240],
        "whistle-duration": [0.1, 0.3],
        "line-frequency": [40, 150],
        "line-excursion": [2, 10],
        "repeat-count": 4,
        "repeat-spacing": [0.05, 0.15],
    }
    data["glitch"] = {**defaults, **data["glitch"]}
    clean = strain_images(data, q, images, 0)
    clean_scores = anomaly_scores(model, torch.from_numpy(clean), score_settings, cpu)[0]

    table: dict[str, dict[str, float]] = {}
    data.update({"clean-fraction": 0.0, "samples-per-shard": args.per_cell})
    for c, name in enumerate(GLITCH_TYPES):
        table[name] = {}
        for k, snr in enumerate(args.snrs):
            data["glitch"]["types"] = {name: 1.0}
            data["glitch"]["snr"] = [snr, snr]
            x = strain_images(data, q, images, 1 + c * len(args.snrs) + k)
            s = anomaly_scores(model, torch.from_numpy(x), score_settings, cpu)[0]
            y = np.r_[np.zeros(len(clean_scores)), np.ones(len(s))]
            table[name][f"{snr:g}"] = float(roc_auc_score(y, np.r_[clean_scores, s]))
    print(f"noise: {data['noise-source']}; {args.clean} clean, {args.per_cell} per cell")
    print(f"{'class':16s}" + "".join(f"  SNR {s:>4g}" for s in args.snrs))
    for name, row in table.items():
        print(f"{name:16s}" + "".join(f"  {row[f'{s:g}']:8.3f}" for s in args.snrs))
    print(f"CPU time {time.process_time() - start:.0f} s (one thread)")
    write_json(
        args.out,
        {
            "auroc": table,
            "noise-source": data["noise-source"],
            "n_clean": args.clean,
            "per_cell": args.per_cell,
            "seed": args.seed,
            "vae": training,
        },
    )


if __name__ == "__main__":
    main()
