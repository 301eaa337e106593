"""The VAE detector's report pieces: ROC AUC per glitch class, the reconstruction gallery and the
latent-space plot.
"""

from __future__ import annotations

import numpy as np

from twinflow.core.plotting import figure, save_figure


def roc_auc_by_class(y: np.ndarray, scores: np.ndarray, glitch_type: np.ndarray) -> dict:
    """Return the ROC AUC of each glitch class present (its glitches against all clean images;
    the VAE trains on clean images only, so each is a class it never saw), with its count."""
    from sklearn.metrics import roc_auc_score

    from twinflow.glitch.data import GLITCH_TYPES

    out = {}
    clean = y == 0
    for index, name in enumerate(GLITCH_TYPES):
        mine = (y == 1) & (glitch_type == index)
        if mine.any() and clean.any():
            keep = clean | mine
            out[name] = {
                "roc_auc": float(roc_auc_score(y[keep], scores[keep])),
                "n": int(mine.sum()),
            }
    return out


def plot_reconstructions(path, x, recon, y, snr, scores, to_energy, n: int = 3) -> None:
    """Plot input and reconstruction for clean and glitchy test images."""
    clean, glitchy = np.flatnonzero(y == 0)[:n], np.flatnonzero(y == 1)
    glitchy = glitchy[np.argsort(-snr[glitchy])][
        np.linspace(0, len(glitchy) - 1, min(n, len(glitchy))).astype(int)
    ]
    picks = list(clean) + list(glitchy)
    fig, axes = figure(2, len(picks), figsize=(2.1 * len(picks), 4.4), squeeze=False)
    xe, re = to_energy(x[picks]), to_energy(recon[picks])
    vmax = max(25.0, float(np.percentile(xe, 99.5)))
    for c, i in enumerate(picks):
        for r, (image, name) in enumerate(((xe[c], "input"), (re[c], "reconstruction"))):
            ax = axes[r, c]
            ax.imshow(image, origin="lower", aspect="auto", vmin=0, vmax=vmax, cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if r == 0:
                title = "clean" if y[i] == 0 else f"glitch SNR {snr[i]:.0f}"
                ax.set_title(f"{title}\nscore {scores[i]:.2e}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name)
    fig.suptitle("VAE reconstructions (normalised energy; time ->, frequency ^)", y=1.06)
    save_figure(fig, path)


def plot_latent(path, mu: np.ndarray, y: np.ndarray, snr: np.ndarray) -> None:
    """Scatter the first two principal components of the latent means, clean against glitchy."""
    centred = mu - mu.mean(axis=0)
    if mu.shape[1] >= 2:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        pcs = centred @ vt[:2].T
    else:
        pcs = np.concatenate([centred, np.zeros_like(centred)], axis=1)
    fig, ax = figure(figsize=(5, 4.2))
    ax.scatter(*pcs[y == 0].T, s=8, c="0.5", label="clean", alpha=0.7)
    sc = ax.scatter(
        *pcs[y == 1].T, s=8, c=np.log10(snr[y == 1]), cmap="plasma", label="glitch", alpha=0.8
    )
    fig.colorbar(sc, ax=ax, label="log10 glitch SNR")
    ax.set_xlabel("latent PC 1")
    ax.set_ylabel("latent PC 2")
    ax.set_title("VAE latent means (test split)")
    ax.legend(fontsize=8)
    save_figure(fig, path)
