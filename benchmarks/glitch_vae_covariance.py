"""The VAE glitch detector with each posterior covariance: ELBO, KL, ROC AUC and training time.

For one ``--covariance`` (diagonal, low-rank, full), trains the VAE of the config's
``glitch.vae`` section on an images file, then reports on the clean validation images the mean
negative ELBO (reconstruction + KL, beta 1) and KL per image (latent posterior from the
encoder, reconstruction from its mean), the test split's ROC AUC (all glitches, SNR >= the
threshold, and per class) and the training CPU time (one thread).

    python benchmarks/glitch_vae_covariance.py --images results/glitch/images.h5 \\
        --covariance full --out full.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from twinflow.core.io import write_json
from twinflow.core.settings import load_yaml
from twinflow.glitch.settings import stage_settings


def main() -> None:
    from twinflow.glitch.qtransform import load_images
    from twinflow.glitch.vae import load_vae, reconstruction_error, train_vae
    from twinflow.glitch.vae_scores import score_vae

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--covariance", default="diagonal")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    glitch = load_yaml(args.config)["glitch"]
    settings = {**stage_settings(glitch, "train-vae"), "covariance": args.covariance}
    settings["device"] = "cpu"
    with tempfile.TemporaryDirectory() as folder:
        f = Path(folder)
        start = time.process_time()
        train_vae(settings, args.images, f / "v.pt", f / "v.csv", f / "v.png", log=print)
        cpu = time.process_time() - start
        score = {**stage_settings(glitch, "score-vae"), "device": "cpu"}
        scores = score_vae(
            score, args.images, f / "v.pt", f / "s.json", f / "r.png", f / "c.png", f / "l.png"
        )
        model, _ = load_vae(f / "v.pt")
    val = load_images(args.images, "validation")
    clean = ~val.labels["has_glitch"] & ~val.labels["has_chirp"]
    x = torch.from_numpy(val.strain[clean])[:, None]
    with torch.no_grad():
        recon, mu, params = model.eval()(x)
        kl = model.kl(mu, params)
        rec = reconstruction_error(recon, x, settings["loss"])
    result = {
        "covariance": args.covariance,
        "validation_kl": float(kl.mean()),
        "validation_reconstruction": float(rec.mean()),
        "validation_negative_elbo": float((rec + kl).mean()),
        "roc_auc": scores["roc_auc"],
        "roc_auc_snr_ge_threshold": scores["roc_auc_snr_ge_threshold"],
        "roc_auc_by_class": scores["roc_auc_by_class"],
        "train_cpu_seconds": cpu,
        "settings": settings,
    }
    print({k: v for k, v in result.items() if k != "settings"})
    write_json(args.out, result)


if __name__ == "__main__":
    main()
