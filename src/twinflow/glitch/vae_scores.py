"""Anomaly scores of the VAE glitch detector (the reconstruction error of an image: mean
squared, its largest residual tile energy, or both combined; or its negative ELBO) and the
scoring stage, which writes ROC AUC, average precision and the plots of the test split.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from twinflow.core.io import write_json
from twinflow.core.plotting import figure, save_figure
from twinflow.core.settings import require
from twinflow.glitch.vae import ConvVAE, _clean, load_vae, vae_loss
from twinflow.glitch.vae_report import plot_latent, plot_reconstructions, roc_auc_by_class
from twinflow.glitch.validation import check_score_settings


@torch.no_grad()
def anomaly_scores(
    model: ConvVAE,
    x: torch.Tensor,
    settings: Mapping,
    device,
    batch_size: int = 256,
    to_energy=None,
    reference: Mapping | None = None,
):
    """Return (scores, reconstructions, latent means) of images x [N, 1, S, S] (eval mode).

    ``reconstruction``: the per-image mean squared error of the reconstruction from the latent
    mean; ``elbo``: the negative ELBO (reconstruction term + beta * KL) of the training loss;
    ``energy-max``: the largest residual tile energy E(x) - E(x_rec) (``to_energy`` maps
    scaled images to tile energies); ``combined``: the sum of the ``reconstruction`` and
    ``energy-max`` scores, each standardised by ``reference`` ({score: (mean, std)} on clean
    images, :func:`score_reference`). A faint glitch lights up a few tiles: the mean over all
    tiles dilutes it, the maximum does not; long faint glitches (wandering lines) spread
    over many tiles, where the mean sees more; the sum keeps both.
    """
    from twinflow.core.device import to_device

    model.eval().to(device)
    scores, recons, mus = [], [], []
    for i in range(0, len(x), batch_size):
        batch = to_device(x[i : i + batch_size], device)
        recon, mu, logvar = model(batch)
        kind = settings["score"]
        if kind == "elbo":
            score = vae_loss(recon, batch, mu, logvar, settings, kl=model.kl(mu, logvar)).cpu()
        else:
            parts = residual_scores(batch.cpu(), recon.cpu(), to_energy)
            if kind == "combined":
                score = sum((parts[k] - reference[k][0]) / reference[k][1] for k in parts)
            else:
                score = parts[kind]
        scores.append(score)
        recons.append(recon.cpu())
        mus.append(mu.cpu())
    return torch.cat(scores).numpy(), torch.cat(recons).numpy(), torch.cat(mus).numpy()


def residual_scores(x: torch.Tensor, recon: torch.Tensor, to_energy=None) -> dict:
    """Return {"reconstruction": mean squared residual, "energy-max": largest residual tile
    energy} per image of scaled images x and their reconstructions [B, 1, S, S] (the second
    only with ``to_energy``, scaled images [B, S, S] -> tile energies)."""
    out = {"reconstruction": (recon - x).pow(2).flatten(1).mean(-1)}
    if to_energy is not None:
        residual = to_energy(x[:, 0].numpy()) - to_energy(recon[:, 0].numpy())
        out["energy-max"] = torch.from_numpy(residual.reshape(len(x), -1).max(-1))
    return out


@torch.no_grad()
def score_reference(model: ConvVAE, clean: torch.Tensor, device, to_energy) -> dict:
    """Return {score: (mean, std)} of :func:`residual_scores` on clean images [N, 1, S, S]."""
    from twinflow.core.device import to_device

    model.eval().to(device)
    recon = torch.cat(
        [model(to_device(clean[i : i + 256], device))[0].cpu() for i in range(0, len(clean), 256)]
    )
    parts = residual_scores(clean, recon, to_energy)
    return {k: (float(v.mean()), float(v.std())) for k, v in parts.items()}


def score_vae(
    settings: Mapping,
    images: str | Path,
    model_path: str | Path,
    metrics_out: str | Path,
    roc_out: str | Path,
    recon_out: str | Path,
    latent_out: str | Path,
    log=print,
) -> dict:
    """Score the test split (glitchy against clean, chirps left out); write ROC AUC and average
    precision (all glitches and those with SNR >= ``snr-threshold``) and the plots."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    from twinflow.core.device import configure_cpu_threads, select_device
    from twinflow.glitch.qtransform import load_images

    configure_cpu_threads()
    check_score_settings(settings)
    model, training = load_vae(model_path)
    test = load_images(images, "test")
    labels = test.labels
    use = ~labels["has_chirp"]
    x = torch.from_numpy(test.strain[use])[:, None]
    y = labels["has_glitch"][use].astype(int)
    snr = labels["glitch_snr"][use]
    device = select_device(settings["device"])
    reference = None
    if settings["score"] == "combined":  # the clean validation images set the scales
        reference_set = load_images(images, "validation")
        if _clean(reference_set).sum() < 2:  # few clean windows (detector data): the training's
            log("fewer than 2 clean validation images: the training split's set the scales")
            reference_set = load_images(images, "train")
        clean = torch.from_numpy(reference_set.strain[_clean(reference_set)])[:, None]
        require(
            len(clean) >= 2,
            "score",
            settings["score"],
            "a score other than 'combined' (fewer than 2 clean images to set its scales)",
        )
        reference = score_reference(model, clean, device, reference_set.strain_energy)
    scores, recon, mu = anomaly_scores(
        model,
        x,
        {**training, **settings},
        device,
        to_energy=test.strain_energy,
        reference=reference,
    )
    require(
        0 < y.sum() < len(y),
        "split",
        int(y.sum()),
        "a test split with both glitchy and clean images",
    )
    loud = (y == 0) | (snr >= settings["snr-threshold"])
    result = {
        "n_clean": int((y == 0).sum()),
        "n_glitch": int(y.sum()),
        "n_glitch_snr_ge_threshold": int((y[loud] == 1).sum()),
        "roc_auc": float(roc_auc_score(y, scores)),
        "average_precision": float(average_precision_score(y, scores)),
        "roc_auc_snr_ge_threshold": float(roc_auc_score(y[loud], scores[loud]))
        if 0 < y[loud].sum() < loud.sum()
        else None,
        "average_precision_snr_ge_threshold": float(average_precision_score(y[loud], scores[loud]))
        if 0 < y[loud].sum() < loud.sum()
        else None,
        "roc_auc_by_class": roc_auc_by_class(y, scores, labels["glitch_type"][use]),
        "snr_threshold": float(settings["snr-threshold"]),
        "score": settings["score"],
        "settings": dict(settings),
    }
    write_json(metrics_out, result)

    fig, ax = figure(figsize=(4.8, 4.2))
    for mask, label in (
        (np.ones_like(loud), "all glitches"),
        (loud, f"glitch SNR >= {settings['snr-threshold']:g}"),
    ):
        if 0 < y[mask].sum() < mask.sum():
            fpr, tpr, _ = roc_curve(y[mask], scores[mask])
            ax.plot(fpr, tpr, label=f"{label} (AUC {roc_auc_score(y[mask], scores[mask]):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false-positive rate (clean flagged)")
    ax.set_ylabel("true-positive rate (glitches found)")
    ax.set_title(f"VAE glitch detector ({settings['score']} score)")
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, roc_out)

    plot_reconstructions(
        recon_out, x.numpy()[:, 0], recon[:, 0], y, snr, scores, test.strain_energy
    )
    plot_latent(latent_out, mu, y, snr)
    log(
        f"VAE: ROC AUC {result['roc_auc']:.4f} (SNR >= {settings['snr-threshold']:g}: "
        f"{result['roc_auc_snr_ge_threshold']}), average precision {result['average_precision']:.4f}"
    )
    return result
