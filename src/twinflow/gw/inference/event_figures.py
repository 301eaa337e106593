"""Figures of one real event: whitened strain with the maximum-likelihood signal, the sky map,
and the network's against the final effective sample size.

Each reads the event's ``posterior.h5`` (and ``summary.json``) written by
:mod:`twinflow.gw.inference.outputs` and writes one figure atomically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from twinflow.core.plotting import figure, save_figure
from twinflow.gw.detectors import (
    detector_geometry,
    greenwich_mean_sidereal_time,
    time_delay_from_geocenter,
)
from twinflow.gw.inference.report import read_posterior

#: Time shown around each detector's merger [s]: before, after.
ZOOM = (0.2, 0.1)


def whitened_time_series(
    frequency_series: np.ndarray, psd: np.ndarray, band: np.ndarray, sampling_frequency: float
) -> np.ndarray:
    """Return the time series of ``frequency_series`` (rfft / f_s) whitened by ``psd`` and
    band-passed to ``band`` (a mask over the bins), in units of the noise's standard deviation.

    White noise of variance s^2 has the one-sided PSD 2 s^2 / f_s, so multiplying by
    sqrt(2 f_s / PSD) and inverting gives unit variance. The data's Tukey window is 1 around
    the merger, so the window factor is left out: data and signal are scaled alike.
    """
    n = 2 * (len(frequency_series) - 1)
    white = np.zeros_like(frequency_series)
    white[band] = frequency_series[band] * np.sqrt(2 * sampling_frequency / psd[band])
    return np.fft.irfft(white, n)


def plot_whitened_strain(posterior_path: str | Path, path: str | Path) -> None:
    """Each detector's whitened, band-passed strain with the maximum-likelihood signal over it,
    zoomed to ``ZOOM`` around that signal's merger time in the detector."""
    post = read_posterior(posterior_path)
    attrs = post["event_attrs"]
    best = post["maximum_likelihood"]
    f = post["frequencies"]
    fs, start, trigger = (
        float(attrs["sampling_frequency"]),
        float(attrs["start_time"]),
        float(attrs["trigger_time"]),
    )
    detectors = post["detectors"]
    fig, axes = figure(
        len(detectors), 1, figsize=(8, 2.4 * len(detectors)), squeeze=False, sharex=True
    )
    for ax, (d, data) in zip(axes[:, 0], detectors.items()):
        lo, hi = data["band"]
        band = (f >= lo) & (f <= hi)
        strain = whitened_time_series(data["strain"], data["psd"], band, fs)
        t = start + np.arange(len(strain)) / fs - trigger
        ax.plot(t, strain, color="0.55", lw=0.7, label=f"{d} data, whitened, {lo:g}-{hi:g} Hz")
        if best is not None and "maximum_likelihood_signal" in data:
            signal = whitened_time_series(data["maximum_likelihood_signal"], data["psd"], band, fs)
            ax.plot(t, signal, color="C3", lw=1.2, label="maximum-likelihood signal")
            gmst = np.fmod(greenwich_mean_sidereal_time(best["geocent_time"]), 2 * np.pi)
            merger = (
                best["geocent_time"]
                + time_delay_from_geocenter(
                    detector_geometry(d).vertex, best["ra"], best["dec"], gmst
                )
                - trigger
            )
            ax.set_xlim(merger - ZOOM[0], merger + ZOOM[1])
        ax.set_ylabel("whitened strain [σ]")
        ax.legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel(f"time from the trigger {trigger:.2f} [s]")
    title = f"{post['event']}: whitened strain"
    if best is not None:
        title += f", maximum-likelihood sample (ln L ratio {best['log_likelihood_ratio']:.1f})"
    axes[0, 0].set_title(title, fontsize=9)
    save_figure(fig, path)


def sky_density(
    ra: np.ndarray, dec: np.ndarray, weights: np.ndarray | None = None, bins: int = 36
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (ra edges [2 bins + 1], dec edges [bins + 1], density [2 bins, bins] per sr).

    Bins are uniform in ra and in sin(dec), so each covers the same solid angle
    ``4 pi / (2 bins^2)``; the density integrates to the total weight over the sphere.
    """
    ra_edges = np.linspace(0, 2 * np.pi, 2 * bins + 1)
    sin_edges = np.linspace(-1, 1, bins + 1)
    histogram, _, _ = np.histogram2d(
        np.mod(ra, 2 * np.pi), np.sin(dec), bins=(ra_edges, sin_edges), weights=weights
    )
    solid_angle = (ra_edges[1] - ra_edges[0]) * (sin_edges[1] - sin_edges[0])
    return ra_edges, np.arcsin(sin_edges), histogram / solid_angle


def plot_skymap(posterior_path: str | Path, path: str | Path, bins: int = 36) -> None:
    """Mollweide histogram of the weighted posterior's (ra, dec), density per steradian.

    Bins are uniform in ra and in sin(dec), so they have equal solid angle. Right ascension
    increases to the left, as on the sky. Without free ra and dec (fixed in the prior) the
    figure marks the fixed position.
    """
    post = read_posterior(posterior_path)
    samples, weights = post["samples"], post["weights"]
    fig, ax = figure(figsize=(8, 4.6), subplot_kw={"projection": "mollweide"})
    if "ra" in samples and "dec" in samples:
        ra_edges, dec_edges, density = sky_density(samples["ra"], samples["dec"], weights, bins)
        mesh = ax.pcolormesh(
            np.pi - ra_edges,  # longitude on the plot: ra increases to the left
            dec_edges,
            density.T,
            cmap="Blues",
            shading="flat",
        )
        fig.colorbar(mesh, ax=ax, orientation="horizontal", shrink=0.6, pad=0.08).set_label(
            "posterior density [1/sr]"
        )
        title = f"{post['event']}: sky position (weighted posterior)"
    else:
        title = f"{post['event']}: sky position fixed by the prior"
    best = post["maximum_likelihood"]
    if best is not None:
        ax.plot(np.pi - best["ra"], best["dec"], "x", color="C3", ms=8, label="max. likelihood")
        ax.legend(loc="lower right", fontsize=8)
    hours = np.arange(2, 24, 4)
    ax.set_xticks(np.pi - hours * np.pi / 12)
    ax.set_xticklabels([f"{h}h" for h in hours])
    ax.grid(True, lw=0.4)
    ax.set_title(title, fontsize=10)
    save_figure(fig, path)


def plot_event_sample_sizes(summary: Mapping | str | Path, path: str | Path) -> None:
    """The event's effective sample size and sampling efficiency: network against final."""
    if not isinstance(summary, Mapping):
        summary = json.loads(Path(summary).read_text())
    network = summary.get("network", summary)
    stages = ["network", "final"]
    ess = [network["effective_sample_size"], summary["effective_sample_size"]]
    efficiency = [network["sampling_efficiency"], summary["sampling_efficiency"]]
    n = [network["n_samples"], summary["n_samples"]]
    target = summary.get("target_ess")
    fig, (ax_ess, ax_eff) = figure(ncols=2, figsize=(9, 3.6))
    colours = ["C1", "C3"]
    ax_ess.bar(stages, np.maximum(ess, 0.5), color=colours)
    for i, (value, count) in enumerate(zip(ess, n)):
        ax_ess.annotate(f"{value:.0f} of {count}", (i, max(value, 0.5)), ha="center", fontsize=8)
    if target:
        ax_ess.axhline(target, color="0.4", ls=":", label=f"target {target}")
        ax_ess.legend(fontsize=8, loc="upper left")
    ax_ess.set_yscale("log")
    ax_ess.set_ylim(0.5, 3 * max([*ess, target or 1]))
    ax_ess.set_ylabel("effective sample size")
    ax_eff.bar(stages, np.maximum(efficiency, 1e-6), color=colours)
    for i, value in enumerate(efficiency):
        ax_eff.annotate(f"{value:.2%}", (i, max(value, 1e-6)), ha="center", fontsize=8)
    ax_eff.set_yscale("log")
    ax_eff.set_ylim(max(min(efficiency), 1e-6) / 3, 1.5)
    ax_eff.set_ylabel("sampling efficiency ESS / N")
    fig.subplots_adjust(wspace=0.35)
    refinement = summary.get("refinement")
    extra = (
        f"; refinement: {refinement.get('method', '')}, "
        f"{refinement.get('n_likelihood_evaluations', 0):.0f} likelihood evaluations"
        if refinement
        else ""
    )
    fig.suptitle(
        f"{summary['event']}: final stage {summary.get('final_stage', 'network')}{extra}",
        fontsize=10,
    )
    save_figure(fig, path)
