"""Figures of the GW report: corner plots, P-P plot, sampling efficiencies, ASDs with token masks, sweeps.

Every function reads the inference outputs (``posterior.h5``, ``summary.json``) and writes one
figure atomically; the rules register them with ``snakemake --report``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from twinflow.core.plotting import figure, save_figure

LABELS = {
    "chirp_mass": r"$\mathcal{M}$ [M$_\odot$]",
    "mass_ratio": "$q$",
    "chi_1": r"$\chi_1$",
    "chi_2": r"$\chi_2$",
    "chi_eff": r"$\chi_{\rm eff}$",
    "theta_jn": r"$\theta_{JN}$",
    "phase": r"$\phi$",
    "luminosity_distance": "$d_L$ [Mpc]",
    "ra": r"$\alpha$",
    "dec": r"$\delta$",
    "psi": r"$\psi$",
    "geocent_time": r"$\Delta t_c$ [s]",
    "a_1": "$a_1$",
    "a_2": "$a_2$",
    "tilt_1": r"$\theta_1$",
    "tilt_2": r"$\theta_2$",
    "phi_12": r"$\phi_{12}$",
    "phi_jl": r"$\phi_{JL}$",
}


def read_posterior(path: str | Path) -> dict:
    """Return samples, weights, injection values and event data stored in a ``posterior.h5``."""
    with h5py.File(path, "r") as f:
        out = {
            "samples": {k: f["samples"][k][:] for k in f["samples"]},
            "weights": f["weights"][:],
            "injection": dict(f["injection"].attrs) if "injection" in f else None,
            "event": str(f.attrs["event"]),
            "efficiency": float(f.attrs["sampling_efficiency"]),
            "ess": float(f.attrs["effective_sample_size"]),
            "frequencies": f["event/frequencies"][:],
            "event_attrs": dict(f["event"].attrs),
            "detectors": {},
            "network": None,
            # catalogue values, detector frame: name -> (median, lower, upper)
            "published": {
                k: tuple(float(x) for x in v)
                for k, v in (f["published"].attrs.items() if "published" in f else [])
                if k != "reference"
            },
            "published_reference": str(f["published"].attrs.get("reference", ""))
            if "published" in f
            else "",
            "maximum_likelihood": dict(f["maximum_likelihood"].attrs)
            if "maximum_likelihood" in f
            else None,
        }
        if "network" in f:
            g = f["network"]
            out["network"] = {
                "samples": {k: g["samples"][k][:] for k in g["samples"]},
                "weights": g["weights"][:],
                "ess": float(g.attrs["effective_sample_size"]),
                "efficiency": float(g.attrs["sampling_efficiency"]),
            }
        for d in f["event"]:
            if isinstance(f["event"][d], h5py.Group):
                g = f["event"][d]
                out["detectors"][d] = {k: g[k][:] for k in g} | {"band": list(g.attrs["band"])}
    return out


def with_derived(samples: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return ``samples`` plus ``chi_eff = (chi_1 + q chi_2) / (1 + q)`` (aligned spins,
    q = m2/m1 <= 1) when the spins and mass ratio are there, to compare with catalogues."""
    out = dict(samples)
    if {"chi_1", "chi_2", "mass_ratio"} <= set(samples):
        q = samples["mass_ratio"]
        out["chi_eff"] = (samples["chi_1"] + q * samples["chi_2"]) / (1 + q)
    return out


def _ranges(
    columns: Sequence[np.ndarray],
    truths: Sequence[float | None],
    bands: Sequence[tuple[float, float, float] | None] | None = None,
) -> list[tuple[float, float]]:
    out = []
    for i, (values, truth) in enumerate(zip(columns, truths)):
        lo, hi = np.percentile(values, [0.5, 99.5])
        if truth is not None:
            lo, hi = min(lo, truth), max(hi, truth)
        if bands is not None and bands[i] is not None:
            lo, hi = min(lo, bands[i][1]), max(hi, bands[i][2])
        pad = 0.05 * (hi - lo) if hi > lo else max(abs(lo) * 1e-3, 1e-6)
        out.append((lo - pad, hi + pad))
    return out


def corner_overlay(
    sets: Sequence[tuple[str, dict[str, np.ndarray], np.ndarray | None, str]],
    names: Sequence[str],
    path: str | Path,
    truths: Mapping[str, float] | None = None,
    title: str = "",
    published: Mapping[str, tuple[float, float, float]] | None = None,
    published_label: str = "published",
) -> None:
    """Overlay weighted corner plots: ``sets`` of (label, samples, weights or None, colour).

    A set whose weights have an effective sample size below 2 has no contours to draw: it is
    listed in the legend with its ESS but not plotted. ``published``: per parameter (median,
    lower, upper) of a catalogue's 90 % interval, drawn on the diagonal as a grey band with a
    dashed median.
    """
    import corner
    import matplotlib.lines as mlines
    import matplotlib.patches as mpatches
    import matplotlib.pyplot as plt

    names = [n for n in names if all(n in s[1] for s in sets)]
    truth_values = [None if truths is None else truths.get(n) for n in names]
    bands = [None if published is None else published.get(n) for n in names]
    ranges = _ranges([np.concatenate([s[1][n] for s in sets]) for n in names], truth_values, bands)
    fig = plt.figure(figsize=(1.6 * len(names) + 1, 1.6 * len(names) + 1))
    handles = []
    for label, samples, weights, colour in sets:
        ess = (
            len(next(iter(samples.values())))
            if weights is None
            else 1 / np.sum((weights / weights.sum()) ** 2)
        )
        if ess < 2:
            handles.append(
                mlines.Line2D(
                    [], [], color=colour, ls=":", label=f"{label} (ESS {ess:.1f}: not drawn)"
                )
            )
            continue
        data = np.column_stack([samples[n] for n in names])
        keep = np.ones(len(data), dtype=bool) if weights is None else weights > 0
        corner.corner(
            data[keep],
            weights=None if weights is None else weights[keep],
            fig=fig,
            range=ranges,
            color=colour,
            labels=[LABELS.get(n, n) for n in names],
            plot_datapoints=False,
            plot_density=False,
            fill_contours=False,
            levels=(0.5, 0.9),
            smooth=1.0,
            hist_kwargs={"density": True},
            truths=truth_values if truths is not None else None,
            truth_color="k",
        )
        handles.append(mlines.Line2D([], [], color=colour, label=f"{label} (ESS {ess:.0f})"))
    if any(b is not None for b in bands):
        diagonal = np.array(fig.axes).reshape(len(names), len(names)).diagonal()
        for ax, band in zip(diagonal, bands):
            if band is not None:
                ax.axvspan(band[1], band[2], color="0.5", alpha=0.25, lw=0)
                ax.axvline(band[0], color="0.3", ls="--", lw=1)
        handles.append(mpatches.Patch(color="0.5", alpha=0.25, label=f"{published_label} 90 %"))
    fig.legend(handles=handles, loc="upper right", fontsize=9, frameon=False)
    if title:
        fig.suptitle(title, x=0.02, ha="left")
    save_figure(fig, path)


def plot_event_corner(posterior_path: str | Path, path: str | Path) -> None:
    """Corner plot of one event: the model's samples (flow), reweighted, and refined if it ran."""
    post = read_posterior(posterior_path)
    n = len(post["weights"])
    published = post["published"] or None
    if published and "chi_eff" in published:
        post["samples"] = with_derived(post["samples"])
        if post["network"] is not None:
            post["network"]["samples"] = with_derived(post["network"]["samples"])
    names = list(post["samples"])
    network = post["network"]
    if network is None:
        title = f"{post['event']}: sampling efficiency {post['efficiency']:.2%}, ESS {post['ess']:.0f} of {n}"
        sets = [
            ("flow", post["samples"], None, "C0"),
            ("reweighted", post["samples"], post["weights"], "C3"),
        ]
    else:
        title = (
            f"{post['event']}: network ESS {network['ess']:.0f} (efficiency "
            f"{network['efficiency']:.2%}); refined ESS {post['ess']:.0f} of {n}"
        )
        sets = [
            ("flow", network["samples"], None, "C0"),
            ("network, reweighted", network["samples"], network["weights"], "C1"),
            ("refined", post["samples"], post["weights"], "C3"),
        ]
    corner_overlay(
        sets,
        names,
        path,
        truths=post["injection"],
        title=title,
        published=published,
        published_label=post["published_reference"] or "published",
    )


def plot_event_asd(posterior_path: str | Path, path: str | Path) -> None:
    """Each detector's ASD and data amplitude, with the tokens the model saw shaded."""
    post = read_posterior(posterior_path)
    f = post["frequencies"]
    detectors = post["detectors"]
    fig, axes = figure(
        len(detectors), 1, figsize=(7, 2.6 * len(detectors)), squeeze=False, sharex=True
    )
    for ax, (d, data) in zip(axes[:, 0], detectors.items()):
        lo, hi = data["band"]
        band = (f >= max(lo / 2, f[1])) & (f <= min(2 * hi, f[-1]))
        ax.loglog(
            f[band], data["strain_asd"][band], color="0.6", lw=0.5, label=r"$|\tilde d|\sqrt{2/T}$"
        )
        ax.loglog(f[band], data["asd"][band], color="C0", lw=1.2, label="ASD")
        for i, (a, b) in enumerate(data["token_edges"]):
            ax.axvspan(a, b, color="C2", alpha=0.12 if i % 2 else 0.22, lw=0)
        ax.axvline(lo, color="k", lw=0.8, ls="--")
        ax.axvline(hi, color="k", lw=0.8, ls="--")
        ax.set_ylabel(f"{d} [1/$\\sqrt{{\\mathrm{{Hz}}}}$]")
        ax.set_title(
            f"{d}: band {lo:g}-{hi:g} Hz, {len(data['token_edges'])} tokens kept (shaded)",
            fontsize=9,
        )
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("frequency [Hz]")
    save_figure(fig, path)


def plot_pp(collected: Mapping, path: str | Path) -> None:
    """P-P plot over the injections: the truth's posterior quantile per parameter, with KS p-values."""
    import scipy.stats

    events = [e for e in collected["events"].values() if "truth_quantile" in e]
    fig, ax = figure(figsize=(5.5, 5.5))
    n = len(events)
    grid = np.linspace(0, 1, 201)
    if n:
        # 90 % band of the empirical CDF of n uniform quantiles (binomial)
        lower = scipy.stats.binom.ppf(0.05, n, grid) / n
        upper = scipy.stats.binom.ppf(0.95, n, grid) / n
        ax.fill_between(grid, lower, upper, color="0.85", lw=0, label="90 % band")
    pvalues = collected.get("injections", {}).get("pp_ks_pvalues", {})
    names = sorted({k for e in events for k in e["truth_quantile"]})
    for i, name in enumerate(names):
        q = np.sort([e["truth_quantile"][name] for e in events if name in e["truth_quantile"]])
        cdf = np.searchsorted(q, grid, side="right") / len(q)
        ax.plot(
            grid,
            cdf,
            lw=1.2,
            color=f"C{i % 10}",
            label=f"{LABELS.get(name, name)} (p = {pvalues.get(name, np.nan):.2f})",
        )
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--")
    combined = collected.get("injections", {}).get("pp_combined_pvalue")
    ax.set_title(
        f"P-P, {n} injections; combined p = {combined:.3g}"
        if combined is not None
        else f"P-P, {n} injections"
    )
    ax.set_xlabel("credible level")
    ax.set_ylabel("fraction of injections with the truth inside")
    ax.legend(fontsize=7, loc="upper left")
    save_figure(fig, path)


def plot_efficiency(collected: Mapping, path: str | Path) -> None:
    """Histogram of the network's sampling efficiency over the injections; network against final ESS."""
    events = [e for e in collected["events"].values() if "injection" in e]
    eff = np.array([e.get("network", e)["sampling_efficiency"] for e in events])
    fig, (ax, ax_ess) = figure(ncols=2, figsize=(11, 3.8))
    if events:
        network_ess = np.array([e.get("network", e)["effective_sample_size"] for e in events])
        final_ess = np.array([e["effective_sample_size"] for e in events])
        target = max(e.get("target_ess", 1) for e in events)
        ax_ess.scatter(np.maximum(network_ess, 1), final_ess, color="C3", s=18)
        for e, x, y in zip(events, network_ess, final_ess, strict=True):
            ax_ess.annotate(e["event"].split("-")[-1], (max(x, 1), y), fontsize=6)
        ax_ess.axhline(target, color="0.5", ls=":", label=f"target ESS {target}")
        ax_ess.set_xscale("log")
        ax_ess.set_yscale("log")
        ax_ess.set_xlabel("network ESS (importance sampling)")
        ax_ess.set_ylabel("final ESS")
        ax_ess.set_title(f"{int(np.sum(final_ess >= target))} of {len(events)} reach the target")
        ax_ess.legend(fontsize=8)
    if len(eff):
        floor = 1.0 / max(e.get("network", e)["n_samples"] for e in events)
        values = np.log10(np.maximum(eff, floor))
        ax.hist(values, bins=max(5, min(30, len(values))), color="C0", alpha=0.8)
        median = np.median(eff)
        ax.axvline(np.log10(max(median, floor)), color="C3", lw=1.5, label=f"median {median:.2%}")
        ax.axvline(
            np.log10(floor), color="0.5", lw=0.8, ls=":", label="1 / N (one effective sample)"
        )
        ax.legend(fontsize=8)
    ax.set_xlabel(r"$\log_{10}$ network sampling efficiency $\epsilon$ = ESS / N")
    ax.set_ylabel("injections")
    ax.set_title(f"sampling efficiency over {len(eff)} injections")
    save_figure(fig, path)


def plot_sweep(sweep_dir: str | Path, path: str | Path) -> None:
    """One corner plot overlaying the reweighted posteriors of every setting of the sweep."""
    sweep_dir = Path(sweep_dir)
    summary = json.loads((sweep_dir / "summary.json").read_text())
    sets, names, truths = [], None, None
    for i, entry in enumerate(summary["settings"]):
        post = read_posterior(sweep_dir / entry["label"] / "posterior.h5")
        names = (
            list(post["samples"]) if names is None else [n for n in names if n in post["samples"]]
        )
        truths = post["injection"]
        label = f"{entry['label']} (eps {post['efficiency']:.1%})"
        sets.append((label, post["samples"], post["weights"], f"C{i % 10}"))
    corner_overlay(
        sets,
        names,
        path,
        truths=truths,
        title=f"{summary['event']}: one model, several analysis settings",
    )
