"""Example figures of the training inputs: whitened strain and token masks of a few batches."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from twinflow.gw.dataset.shards import WaveformDataset


def plot_examples(
    batch_settings: Mapping,
    index_path: str | Path,
    psd_paths: Mapping[str, str | Path],
    strain_plot: str | Path,
    mask_plot: str | Path,
    seed: int = 0,
    n_masks: int = 24,
) -> None:
    """Plot the whitened strain of one example per detector (token edges marked) and a few masks."""
    import torch

    from twinflow.core.plotting import figure, save_figure
    from twinflow.gw.dataset.batches import BatchAssembler

    assembler = BatchAssembler.from_files(
        batch_settings, index_path, psd_paths, device="cpu", seed=seed
    )
    dataset = WaveformDataset(index_path)
    domain = assembler.domain
    example = dataset.read(0, 0, 1)
    # The noiseless whitened signal and one noisy realisation, all tokens kept.
    h_plus = torch.as_tensor(example["h_plus"]).to(torch.complex64)
    h_cross = torch.as_tensor(example["h_cross"]).to(torch.complex64)
    extrinsic = assembler.sample_extrinsic(1)
    signal = assembler.signal(h_plus, h_cross, extrinsic)[0]  # [D, n_bins]
    sigma = torch.stack([s[0] for s in assembler.sigma])  # first PSD of each bank
    clean = (signal / sigma).numpy()
    gen = torch.Generator().manual_seed(seed)
    noisy = (
        clean
        + (
            torch.randn(clean.shape, generator=gen) + 1j * torch.randn(clean.shape, generator=gen)
        ).numpy()
    )
    f = domain.sample_frequencies
    D = len(assembler.detectors)
    fig, axes = figure(D, 1, figsize=(7.5, 2.4 * D), sharex=True, squeeze=False)
    snr = np.sqrt(np.sum(np.abs(clean) ** 2, axis=1))
    for d, ax in enumerate(axes[:, 0]):
        ax.plot(f, noisy[d].real, lw=0.6, color="0.6", label="Re, signal + noise")
        ax.plot(f, clean[d].real, lw=1.0, color="C0", label="Re, signal")
        ax.plot(f, clean[d].imag, lw=1.0, color="C1", label="Im, signal")
        for edge in domain.token_edges[:, 0]:
            ax.axvline(edge, color="k", lw=0.3, alpha=0.3)
        for node in domain.nodes:
            ax.axvline(node, color="C3", lw=0.8, alpha=0.7)
        ax.set_ylabel(f"{assembler.detectors[d]} whitened")
        ax.set_xscale("log")
        ax.set_title(
            f"{assembler.detectors[d]}: optimal SNR {snr[d]:.1f} (first bank PSD)", fontsize=9
        )
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=3)
    axes[-1, 0].set_xlabel("frequency [Hz] (grey: token edges, red: band nodes)")
    save_figure(fig, strain_plot)

    zeros = np.zeros((n_masks, domain.n_bins), np.complex64)
    params = {name: np.zeros(n_masks) for name in dataset.parameters}
    batch = assembler({"h_plus": zeros, "h_cross": zeros, **params}, masks=True, noise=False)
    keep = np.zeros((n_masks, assembler.n_tokens), bool)
    T = domain.n_tokens
    for b in range(n_masks):
        valid = ~batch["padding_mask"][b].numpy()
        det = batch["detector_index"][b].numpy()[valid]
        lower = batch["token_frequency"][b, :, 0].numpy()[valid]
        pos = np.searchsorted(domain.token_edges[:, 0], lower - 1e-9)
        keep[b, det * T + pos] = True
    fig, ax = figure(figsize=(7.5, 0.18 * n_masks + 1.2))
    ax.imshow(keep, aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1)
    ax.grid(False)
    for d in range(1, D):
        ax.axvline(d * T - 0.5, color="C3", lw=1)
    ax.set_xticks([d * T + T / 2 for d in range(D)], assembler.detectors)
    ax.set_ylabel("training sample")
    ax.set_title(f"token masks (black: kept; {T} tokens per detector)", fontsize=9)
    save_figure(fig, mask_plot)
