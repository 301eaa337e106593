"""AUROC of a trained VAE glitch detector per glitch class and against SNR.

The VAE trains on clean Q-plots only, so every glitch class is one it was not trained on: this
table is its leave-one-class-out evaluation. For each class of ``twinflow.glitch.data``
(the three of the default dataset and the five Gravity-Spy-like ones) and each SNR in
``--snrs``, it simulates ``--per-cell`` glitches at exactly that strain SNR, on the same noise
as the run (Gaussian or real, from the images file's settings), Q-transforms them with the
run's settings and training-split scaling, and scores them against ``--clean`` freshly
simulated clean samples. ROC AUC from scikit-learn.

    python benchmarks/glitch_vae_morphologies.py --results results/glitch --out auroc.json

Besides the VAE's own score (``reconstruction``, the mean squared residual of the scaled image)
it scores every cell with other statistics of the same images, so one run compares them:

- VAE variants: ``vae-elbo`` (negative ELBO), ``vae-residual-max`` (the largest positive
  residual x - x_rec of the scaled image), ``vae-residual-weighted`` (the mean of the squared
  residual over each pixel's residual variance on the clean validation images), ``vae-energy-max``
  (the largest residual in tile energy, E(x) - E(x_rec)), ``vae-combined`` (the sum of ``vae``
  and ``vae-energy-max``, each standardised by its mean and spread on the clean validation
  images);
- references that are no VAE: ``excess-power-sum`` (sum over tiles of E - 1, the normalised
  energy over its noise expectation) and ``excess-power-max`` (the loudest tile's E); and, with
  ``--supervised``, ``supervised`` (per class, a small CNN trained on labelled glitches of that
  class at ``--supervised-snr`` against clean images, fresh simulations; an estimate of the
  ceiling no detector that does not know the class can beat).

Prints a class x SNR table per statistic and writes them (with the settings) as JSON.
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
from twinflow.glitch.vae import load_vae
from twinflow.glitch.vae_scores import anomaly_scores


def strain_images(data: dict, q: dict, images, shard: int) -> np.ndarray:
    """Return the normalised strain images [N, 1, S, S] of one simulated shard."""
    arrays = simulate_shard(data, shard, tuple(q["frange"]))
    qt = transform_for(q, data["sampling-frequency"], data["duration"])
    asd = np.sqrt(strain_psd(data)[1])
    energy = np.concatenate(
        [qt(arrays["strain"][i : i + 128], asd) for i in range(0, len(arrays["strain"]), 128)]
    )
    return images.strain_scale.transform(energy[:, None])


@torch.no_grad()
def statistics(
    model, x: np.ndarray, images, residual_var: np.ndarray | None, reference: dict | None = None
) -> dict:
    """Return every statistic of the module docstring (but ``supervised``) for scaled strain
    images x [N, 1, S, S]: higher is more glitch-like. ``reference`` (statistic: (mean, std)
    on clean images) adds ``vae-combined``."""
    cpu = torch.device("cpu")
    t = torch.from_numpy(x)
    elbo_settings = {"score": "elbo", "loss": "mse", "beta": 1.0, "fft-weight": 0.0}
    out = {"vae": anomaly_scores(model, t, {"score": "reconstruction"}, cpu)[0]}
    out["vae-elbo"], recon, _ = anomaly_scores(model, t, elbo_settings, cpu)
    residual = (x - recon)[:, 0]
    out["vae-residual-max"] = residual.reshape(len(x), -1).max(-1)
    if residual_var is not None:
        out["vae-residual-weighted"] = (residual**2 / residual_var).reshape(len(x), -1).mean(-1)
    energy, energy_rec = images.strain_energy(x[:, 0]), images.strain_energy(recon[:, 0])
    out["vae-energy-max"] = (energy - energy_rec).reshape(len(x), -1).max(-1)
    if reference is not None:  # each score over its spread on clean images, then summed
        out["vae-combined"] = sum(
            (out[k] - reference[k][0]) / reference[k][1] for k in ("vae", "vae-energy-max")
        )
    out["excess-power-sum"] = (energy - 1.0).reshape(len(x), -1).sum(-1)
    out["excess-power-max"] = energy.reshape(len(x), -1).max(-1)
    return out


def train_classifier(glitchy: np.ndarray, clean: np.ndarray, seed: int, epochs: int = 25):
    """Return a small CNN (logit of "glitch") trained on scaled images [N, 1, S, S] of one
    class against clean ones: three stride-2 convolutions, global max pooling, a linear head."""
    from torch import nn

    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 1),
    )
    x = torch.from_numpy(np.concatenate([glitchy, clean]))
    y = torch.cat([torch.ones(len(glitchy)), torch.zeros(len(clean))])
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), 32):
            batch = order[i : i + 32]
            loss = nn.functional.binary_cross_entropy_with_logits(net(x[batch])[:, 0], y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return net.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="a glitch results folder")
    parser.add_argument("--out", required=True, help="output JSON")
    parser.add_argument("--snrs", type=float, nargs="+", default=[5, 6, 8, 10, 15, 20])
    parser.add_argument("--per-cell", type=int, default=60, help="glitches per class and SNR")
    parser.add_argument("--clean", type=int, default=300, help="clean samples")
    parser.add_argument("--seed", type=int, default=2027)
    parser.add_argument("--supervised", action="store_true", help="add the supervised CNN")
    parser.add_argument("--supervised-snr", type=float, default=6.0)
    parser.add_argument("--supervised-train", type=int, default=400, help="per class and label")
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
    validation = load_images(f"{args.results}/images.h5", "validation")
    quiet = ~validation.labels["has_glitch"] & ~validation.labels["has_chirp"]
    x_val = validation.strain[quiet][:, None]
    recon_val = anomaly_scores(model, torch.from_numpy(x_val), score_settings, cpu)[1]
    residual_var = np.var(x_val - recon_val, axis=0)[0] + 1e-8  # [S, S]
    val_stats = statistics(model, x_val, validation, residual_var)
    reference = {k: (float(np.mean(v)), float(np.std(v))) for k, v in val_stats.items()}
    clean_stats = statistics(model, clean, images, residual_var, reference)
    n_cells = len(GLITCH_TYPES) * len(args.snrs)
    if args.supervised:  # labelled training images: their own shards, after the test cells
        data.update({"clean-fraction": 1.0, "samples-per-shard": args.supervised_train})
        clean_train = strain_images(data, q, images, 1 + n_cells)
        classifiers = {}

    tables: dict[str, dict[str, dict[str, float]]] = {}
    for c, name in enumerate(GLITCH_TYPES):
        data["glitch"]["types"] = {name: 1.0}
        if args.supervised:
            data.update({"clean-fraction": 0.0, "samples-per-shard": args.supervised_train})
            data["glitch"]["snr"] = [args.supervised_snr] * 2
            glitchy = strain_images(data, q, images, 2 + n_cells + c)
            classifiers[name] = train_classifier(glitchy, clean_train, args.seed + c)
            with torch.no_grad():
                clean_stats[f"supervised-{name}"] = classifiers[name](torch.from_numpy(clean))[
                    :, 0
                ].numpy()
        data.update({"clean-fraction": 0.0, "samples-per-shard": args.per_cell})
        for k, snr in enumerate(args.snrs):
            data["glitch"]["snr"] = [snr, snr]
            x = strain_images(data, q, images, 1 + c * len(args.snrs) + k)
            stats = statistics(model, x, images, residual_var, reference)
            if args.supervised:
                with torch.no_grad():
                    stats["supervised"] = classifiers[name](torch.from_numpy(x))[:, 0].numpy()
            y = np.r_[np.zeros(len(clean)), np.ones(len(x))]
            for stat, s in stats.items():
                baseline = clean_stats[f"supervised-{name}" if stat == "supervised" else stat]
                auc = float(roc_auc_score(y, np.r_[baseline, s]))
                tables.setdefault(stat, {}).setdefault(name, {})[f"{snr:g}"] = auc
    table = tables["vae"]
    print(f"noise: {data['noise-source']}; {args.clean} clean, {args.per_cell} per cell")
    for stat, rows in tables.items():
        print(f"\n{stat}\n{'class':16s}" + "".join(f"  SNR {s:>4g}" for s in args.snrs))
        for name, row in rows.items():
            print(f"{name:16s}" + "".join(f"  {row[f'{s:g}']:8.3f}" for s in args.snrs))
    print(f"CPU time {time.process_time() - start:.0f} s (one thread)")
    write_json(
        args.out,
        {
            "auroc": table,
            "auroc_by_statistic": tables,
            "supervised_snr": args.supervised_snr if args.supervised else None,
            "noise-source": data["noise-source"],
            "n_clean": args.clean,
            "per_cell": args.per_cell,
            "seed": args.seed,
            "vae": training,
        },
    )


if __name__ == "__main__":
    main()
