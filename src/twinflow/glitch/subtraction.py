"""Inference and subtraction: generate the strain Q-plot of each test sample from its auxiliary
channels, subtract it, and measure what is left.

All quantities are in normalised tile energy (the strain images un-scaled with the training
statistics). With ``b`` the mean energy of a noise-only tile (1/ln 2 under median
normalisation), target ``T``, generated ``G`` and residual ``R = T - G``:

- **glitch energy removed**: ``sum_M (G - b) / sum_M (T - b)`` over the glitch's pixels ``M``
  (where the glitch alone carries energy >= ``mask-energy``), summed over glitchy test samples;
- **denoising accuracy**: the share of glitchy test samples whose residual has no connected
  (8-neighbour) cluster of pixels with ``R >= cluster-threshold`` (16, i.e. SNR^2 16) away from
  the chirp pixels (a chirp left in the residual is wanted, not a failure);
- **veto accuracy**: over all test samples, agreement between "the target has a glitch cluster
  (T >= cluster-threshold on the glitch's pixels)" and "the generated image has a cluster"
  (G >= cluster-threshold anywhere);
- **denoising accuracy of a perfect model** (the same test with G = glitch alone + b): the
  ceiling set by the glitch-noise cross term of ``|n + s|^2``, which no model can predict;
- **denoising accuracy in amplitude** (and its perfect-model ceiling): the same test on the
  amplitude residual ``sqrt(T) - sqrt(G)``, whose square is the normalised energy of what is
  left; a cluster at ``sqrt(cluster-threshold)`` (SNR 4). Since ``| |n + s| - |s| | <= |n|``,
  a perfect model leaves only noise-level residuals here: this is the test a model can pass,
  while the energy test above is capped by the cross term;
- **GlitchFlow-style cluster metrics** (truth-free): per glitchy sample, the intersection over
  union of the pixels at ``>= cluster-threshold`` (SNR^2) before subtraction (``T``) and after
  (``R``), outside the chirp's pixels (0: the glitch's cluster is gone, 1: untouched), and the
  share of glitches whose cluster disappears (no pixel of it left above threshold); both also
  against the glitch SNR (bins ``SNR_BINS``, the label's SNR: the optimal SNR for simulated
  data, the trigger's for detector data);
- **chirp power retained**: ``sum_C R' / sum_C (T - b)`` over the chirp's pixels ``C`` (chirp
  alone >= ``mask-energy``, outside the glitch's pixels), where ``R' = T - max(G, b)`` counts
  only energy the model took away, summed over test samples with a chirp.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import scipy.ndimage
import torch

from twinflow.core.io import write_json
from twinflow.core.plotting import figure, save_figure
from twinflow.glitch.validation import check_subtraction_settings

EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)
SNR_BINS = (5, 6, 8, 10, 15, 20, 30)
#: Metrics that need the glitch alone and the chirp alone (unknown for detector data, where
#: they are reported as null; the residual cluster tests need only the trigger labels).
NEEDS_TRUTH = (
    "glitch_energy_removed",
    "denoising_accuracy_perfect_model",
    "denoising_accuracy_amplitude_perfect_model",
    "veto_accuracy",
    "chirp_power_retained",
)


def has_cluster(image: np.ndarray, threshold: float, exclude: np.ndarray | None = None) -> bool:
    """Return whether ``image`` has a connected cluster of pixels >= ``threshold`` (outside
    ``exclude``)."""
    above = image >= threshold
    if exclude is not None:
        above &= ~exclude
    labelled, count = scipy.ndimage.label(above, structure=EIGHT_NEIGHBOURS)
    return count > 0


def subtraction_metrics(
    target: np.ndarray,
    generated: np.ndarray,
    glitch_energy: np.ndarray,
    chirp_energy: np.ndarray,
    has_glitch: np.ndarray,
    has_chirp: np.ndarray,
    glitch_snr: np.ndarray,
    settings: Mapping,
    background: float,
) -> dict:
    """Return the metrics of the module docstring for test images [N, S, S] in energy units."""
    threshold, mask_level = settings["cluster-threshold"], settings["mask-energy"]
    residual = target - generated
    glitch_mask = glitch_energy >= mask_level
    chirp_mask = (chirp_energy >= mask_level) & ~glitch_mask
    n = len(target)

    def left_clean(residuals: np.ndarray, level: float) -> np.ndarray:
        """[n] bool: no residual cluster >= level outside the chirp's pixels."""
        return np.array([not has_cluster(residuals[i], level, chirp_mask[i]) for i in range(n)])

    clean_residual = left_clean(residual, threshold)
    target_cluster = np.array(
        [has_cluster(np.where(glitch_mask[i], target[i], 0), threshold) for i in range(n)]
    )
    generated_cluster = np.array([has_cluster(generated[i], threshold) for i in range(n)])
    g = has_glitch.astype(bool)
    removed_num = np.sum(np.where(glitch_mask, generated - background, 0)[g])
    removed_den = np.sum(np.where(glitch_mask, target - background, 0)[g])
    c = has_chirp.astype(bool)
    kept = target - np.maximum(generated, background)
    chirp_num = np.sum(np.where(chirp_mask, kept, 0)[c])
    chirp_den = np.sum(np.where(chirp_mask, target - background, 0)[c])
    loud = g & (glitch_snr >= 10)
    # The same test for a perfect model (the glitch's own expected energy plus the background):
    # what is left is the glitch-noise cross term in |n + s|^2, which no model can predict.
    oracle = target - (glitch_energy + background)
    oracle_clean = left_clean(oracle, threshold)
    # The same two tests on amplitudes: sqrt(T) - sqrt(G) >= sqrt(threshold)
    amplitude = np.sqrt(np.maximum(target, 0))
    amp_threshold = float(np.sqrt(threshold))
    amp_clean = left_clean(amplitude - np.sqrt(np.maximum(generated, 0)), amp_threshold)
    amp_oracle_clean = left_clean(amplitude - np.sqrt(glitch_energy + background), amp_threshold)
    overlap = cluster_overlap_metrics(
        target, residual, has_glitch, glitch_snr, threshold, chirp_mask
    )
    return {
        **overlap,
        "n_test": int(n),
        "n_glitch": int(g.sum()),
        "n_chirp": int(c.sum()),
        "glitch_energy_removed": float(removed_num / removed_den) if removed_den > 0 else None,
        "denoising_accuracy": float(clean_residual[g].mean()) if g.any() else None,
        "denoising_accuracy_snr_ge_10": float(clean_residual[loud].mean()) if loud.any() else None,
        "clean_samples_left_clean": float(clean_residual[~g].mean()) if (~g).any() else None,
        "denoising_accuracy_perfect_model": float(oracle_clean[g].mean()) if g.any() else None,
        "denoising_accuracy_amplitude": float(amp_clean[g].mean()) if g.any() else None,
        "denoising_accuracy_amplitude_snr_ge_10": float(amp_clean[loud].mean())
        if loud.any()
        else None,
        "denoising_accuracy_amplitude_perfect_model": float(amp_oracle_clean[g].mean())
        if g.any()
        else None,
        "veto_accuracy": float(np.mean(target_cluster == generated_cluster)),
        "chirp_power_retained": float(chirp_num / chirp_den) if chirp_den > 0 else None,
        "mean_abs_residual": float(np.mean(np.abs(residual))),
        "cluster_threshold": float(threshold),
        "background_energy": float(background),
    }


def cluster_overlap_metrics(
    target: np.ndarray,
    residual: np.ndarray,
    has_glitch: np.ndarray,
    glitch_snr: np.ndarray,
    threshold: float,
    exclude: np.ndarray,
) -> dict:
    """Return the GlitchFlow-style metrics (module docstring): the median per-sample IoU of the
    above-threshold pixels before and after subtraction, the share of glitches whose cluster
    disappears, overall and per SNR bin, over glitchy samples with a cluster before."""
    before = (target >= threshold) & ~exclude
    after = (residual >= threshold) & ~exclude
    inter = (before & after).sum(axis=(1, 2))
    union = (before | after).sum(axis=(1, 2))
    use = has_glitch.astype(bool) & (before.sum(axis=(1, 2)) > 0)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    vanished = inter == 0

    def summary(mask: np.ndarray) -> dict:
        return {
            "n": int(mask.sum()),
            "iou_median": float(np.median(iou[mask])) if mask.any() else None,
            "vanished_share": float(vanished[mask].mean()) if mask.any() else None,
        }

    edges = (*SNR_BINS, np.inf)
    by_snr = {
        f"{lo:g}-{hi:g}": summary(use & (glitch_snr >= lo) & (glitch_snr < hi))
        for lo, hi in zip(edges[:-1], edges[1:])
    }
    overall = summary(use)
    return {
        "cluster_iou_median": overall["iou_median"],
        "cluster_vanished_share": overall["vanished_share"],
        "n_glitch_with_cluster": overall["n"],
        "cluster_metrics_by_snr": by_snr,
    }


def baseline_errors(aux: np.ndarray, target: np.ndarray, generated: np.ndarray) -> dict:
    """Return the mean absolute error (normalised image units) of the model and of the trivial
    baselines: zero output and the auxiliary Q-plot (the brightest witness) copied to strain."""
    copied = aux.max(axis=1)
    return {
        "model": float(np.mean(np.abs(generated - target))),
        "zero": float(np.mean(np.abs(target))),
        "aux-copy": float(np.mean(np.abs(copied - target))),
    }


def run_subtraction(
    settings: Mapping,
    images: str | Path,
    model_path: str | Path,
    metrics_out: str | Path,
    gallery_out: str | Path,
    log=print,
) -> dict:
    """Generate, subtract and score the test split; write metrics.json and the gallery plot."""
    from twinflow.core.device import configure_cpu_threads, select_device
    from twinflow.glitch.qtransform import load_images, noise_energy_mean
    from twinflow.glitch.train import load_translation_model, predict

    check_subtraction_settings(settings)
    configure_cpu_threads()
    test = load_images(images, "test")
    model = load_translation_model(model_path)
    device = select_device(settings["device"])
    generated_norm = predict(model, torch.from_numpy(test.aux), device)[:, 0].numpy()
    target = test.strain_energy(test.strain)
    generated = test.strain_energy(generated_norm)
    background = noise_energy_mean(test.settings["norm"])
    labels = test.labels
    glitch_energy, chirp_energy = labels["glitch_energy"], labels["chirp_energy"]
    if not test.truth:  # detector data: has_glitch comes from the trigger list
        glitch_energy = chirp_energy = np.zeros_like(target)
    metrics = subtraction_metrics(
        target,
        generated,
        glitch_energy,
        chirp_energy,
        labels["has_glitch"],
        labels["has_chirp"],
        labels["glitch_snr"],
        settings,
        background,
    )
    if not test.truth:
        for key in NEEDS_TRUTH:
            metrics[key] = None
    metrics["truth"] = test.truth
    metrics["mean_abs_error_normalised"] = baseline_errors(test.aux, test.strain, generated_norm)
    metrics["settings"] = dict(settings)
    write_json(metrics_out, metrics)
    plot_gallery(gallery_out, test, target, generated, settings["gallery-size"])
    log("; ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
    return metrics


def plot_gallery(
    path: str | Path, test, target: np.ndarray, generated: np.ndarray, rows: int
) -> None:
    """Plot aux | target | generated | residual for the loudest-glitch, a median and a clean/chirp
    test sample, up to ``rows`` rows."""
    labels = test.labels
    glitchy = np.flatnonzero(labels["has_glitch"])
    order = glitchy[np.argsort(-labels["glitch_snr"][glitchy])]
    picks = (
        list(order[np.linspace(0, len(order) - 1, min(rows - 1, len(order))).astype(int)])
        if len(order)
        else []
    )
    chirps = np.flatnonzero(labels["has_chirp"] & ~labels["has_glitch"])
    if len(chirps) and len(picks) < rows:
        picks.append(int(chirps[0]))
    picks = picks[:rows] or [0]
    extent = [test.times[0], test.times[-1], 0, len(test.frequencies) - 1]
    aux_energy = test.aux_scale.inverse(test.aux[picks]).max(axis=1)
    fig, axes = figure(len(picks), 4, figsize=(13, 2.4 * len(picks)), squeeze=False)
    vmax = max(25.0, float(np.percentile(target[picks], 99.9)))
    for r, i in enumerate(picks):
        panels = (aux_energy[r], target[i], generated[i], target[i] - generated[i])
        names = ("aux (max over channels)", "target strain", "generated", "residual")
        for c, (image, name) in enumerate(zip(panels, names)):
            ax = axes[r, c]
            if c == 3:
                im = ax.imshow(
                    image,
                    origin="lower",
                    aspect="auto",
                    extent=extent,
                    cmap="RdBu_r",
                    vmin=-25,
                    vmax=25,
                )
            else:
                im = ax.imshow(
                    image,
                    origin="lower",
                    aspect="auto",
                    extent=extent,
                    cmap="viridis",
                    vmin=0,
                    vmax=vmax if c else None,
                )
            ax.grid(False)
            ticks = np.linspace(0, len(test.frequencies) - 1, 4).astype(int)
            ax.set_yticks(ticks, [f"{test.frequencies[t]:.0f}" for t in ticks] if c == 0 else [])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                kind = (
                    f"glitch SNR {labels['glitch_snr'][i]:.1f}"
                    if labels["has_glitch"][i]
                    else "no glitch"
                )
                kind += ", chirp" if labels["has_chirp"][i] else ""
                ax.set_ylabel(f"{kind}\nfrequency [Hz]", fontsize=8)
            if r == len(picks) - 1:
                ax.set_xlabel("time [s]")
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle("Glitch Flow on the test split (normalised energy)")
    save_figure(fig, path)
