"""Report figures of the scan: SIC and ROC curves, learned vs true w, timing, significance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from twinflow.anomaly import metrics
from twinflow.anomaly.data import SignalRegion
from twinflow.core.plotting import figure, save_figure

COLOURS = {
    "supervised": "black",
    "iad": "grey",
    "cwola": "tab:green",
    "anode": "tab:orange",
    "cathode": "tab:blue",
    "ranode": "tab:purple",
    "sigma": "tab:red",
}
STYLES = {"supervised": ":", "iad": "--"}


def _panels(n: int):
    fig, axes = figure(1, n, figsize=(4.2 * n, 3.6), squeeze=False, sharey=True)
    return fig, axes[0]


def plot_sic(
    path, results: Sequence[Mapping], regions: Sequence[SignalRegion], floor: float
) -> None:
    """SIC = TPR/sqrt(FPR) against signal efficiency, one panel per SR."""
    fig, axes = _panels(len(regions))
    for ax, region in zip(axes, regions):
        for r in (r for r in results if r["region"] == region.name):
            tpr, fpr, sic = metrics.sic_curve(r["label"], r["score"], floor)
            ax.plot(
                tpr,
                sic,
                color=COLOURS.get(r["method"]),
                ls=STYLES.get(r["method"], "-"),
                label=r["method"],
            )
        ax.axhline(1.0, color="k", lw=0.5)
        ax.set_xlabel("signal efficiency")
        ax.set_title(f"{region.name}: {region.low:g}-{region.high:g} TeV")
    axes[0].set_ylabel(r"SIC = $\epsilon_S/\sqrt{\epsilon_B}$")
    axes[-1].legend(fontsize=8)
    save_figure(fig, path)


def plot_roc(path, results: Sequence[Mapping], regions: Sequence[SignalRegion]) -> None:
    """Background rejection 1/FPR against signal efficiency, one panel per SR."""
    fig, axes = _panels(len(regions))
    for ax, region in zip(axes, regions):
        for r in (r for r in results if r["region"] == region.name):
            fpr, tpr, _ = metrics.roc_curve(r["label"], r["score"])
            keep = fpr > 0
            ax.semilogy(
                tpr[keep],
                1 / fpr[keep],
                color=COLOURS.get(r["method"]),
                ls=STYLES.get(r["method"], "-"),
                label=r["method"],
            )
        ax.semilogy([0.01, 1], [100, 1], color="k", lw=0.5, label="random")
        ax.set_xlabel("signal efficiency")
        ax.set_title(f"{region.name}: {region.low:g}-{region.high:g} TeV")
    axes[0].set_ylabel("background rejection 1/FPR")
    axes[-1].legend(fontsize=8)
    save_figure(fig, path)


def plot_w(path, summary: Mapping, regions: Sequence[SignalRegion]) -> None:
    """R-ANODE's learned signal fraction w against the true w, per SR."""
    fig, ax = figure(figsize=(4.8, 4.0))
    true, learned, names = [], [], []
    for region in regions:
        r = summary["regions"][region.name]["methods"].get("ranode", {})
        if "learned_w" in r:
            true.append(r["true_w"])
            learned.append(r["learned_w"])
            names.append(region.name)
    if true:
        ax.scatter(true, learned, color=COLOURS["ranode"], zorder=3)
        for t, w, n in zip(true, learned, names):
            ax.annotate(n, (t, w), textcoords="offset points", xytext=(4, 4), fontsize=8)
        top = 1.3 * max(max(true), max(learned), 1e-4)
        ax.plot([0, top], [0, top], color="k", lw=0.8, label="learned = true")
        ax.fill_between(
            [0, top], [0, 0.7 * top], [0, 1.3 * top], color="grey", alpha=0.2, label=r"$\pm$30%"
        )
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.legend()
    else:
        ax.text(0.5, 0.5, "R-ANODE not among the methods", ha="center", transform=ax.transAxes)
    ax.set_xlabel("true w = S / (S + B) in the SR")
    ax.set_ylabel("learned w (R-ANODE)")
    save_figure(fig, path)


def plot_timing(
    path, summary: Mapping, regions: Sequence[SignalRegion], methods: Sequence[str]
) -> None:
    """Mean per-SR cost of each method, split into its parts; SIGMA's one-off training beside it."""
    fig, ax = figure(figsize=(7.0, 3.8))
    parts = (
        ("sideband_flow_seconds", "sideband flow training"),
        ("generate_seconds", "template generation"),
        ("classifier_seconds", "classifier training"),
        ("other_seconds", "other training"),
        ("evaluate_seconds", "evaluation"),
    )
    rows = {}
    for method in methods:
        per = [summary["regions"][r.name]["methods"][method] for r in regions]
        row = {key: float(np.mean([p.get(key, 0.0) for p in per])) for key, _ in parts}
        train = float(np.mean([p["train_seconds"] for p in per]))
        row["other_seconds"] = max(
            train - row["generate_seconds"] - row["classifier_seconds"], 0.0
        )
        rows[method] = row
    bottom = np.zeros(len(methods))
    for key, label in parts:
        values = np.array([rows[m][key] for m in methods])
        ax.bar(list(methods), values, bottom=bottom, label=label)
        bottom += values
    if "sigma_training_seconds" in summary:
        ax.bar(
            ["sigma (once)"],
            [summary["sigma_training_seconds"]],
            color="lightgrey",
            hatch="//",
            label="SIGMA training (once for all SRs)",
        )
    ax.set_ylabel("seconds per signal region")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_significance(
    path, summary: Mapping, regions: Sequence[SignalRegion], methods: Sequence[str]
) -> None:
    """Expected significance across the scan, before and after each method's cut."""
    fig, ax = figure(figsize=(6.0, 3.8))
    centres = [r.centre for r in regions]
    before = [
        next(iter(summary["regions"][r.name]["methods"].values()))["significance_before"]
        for r in regions
    ]
    ax.plot(centres, before, color="k", marker="s", label="no cut")
    for method in methods:
        z = [summary["regions"][r.name]["methods"][method]["significance_after"] for r in regions]
        ax.plot(
            centres,
            z,
            marker="o",
            color=COLOURS.get(method),
            ls=STYLES.get(method, "-"),
            label=method,
        )
    eps = summary["settings"]["metrics"]["significance-background-efficiency"]
    ax.set_xlabel(r"signal-region centre $m_{JJ}$ [TeV]")
    ax.set_ylabel(rf"$Z = \epsilon_S S/\sqrt{{\epsilon_B B}}$ ($\epsilon_B$ = {eps:g})")
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, path)
