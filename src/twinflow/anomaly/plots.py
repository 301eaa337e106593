"""Report figures of the scan: SIC and ROC curves, learned vs true w, timing, significance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from twinflow.anomaly import metrics
from twinflow.anomaly.regions import SignalRegion
from twinflow.core.plotting import figure, save_figure

COLOURS = {
    "supervised": "black",
    "iad": "grey",
    "cwola": "tab:green",
    "anode": "tab:orange",
    "cathode": "tab:blue",
    "ranode": "tab:purple",
    "ranode-ideal": "plum",
    "sigma": "tab:red",
    "sigma-context": "darkred",
    "sigma-data": "salmon",
    "sigma-cr": "tab:brown",
}
FEATURES = (r"$m_{J1}$ [TeV]", r"$\Delta m_J$ [TeV]", r"$\tau_{21}^{J1}$", r"$\tau_{21}^{J2}$")
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
    true, learned, errors, names = [], [], [], []
    for region in regions:
        r = summary["regions"][region.name]["methods"].get("ranode", {})
        if "learned_w" in r:
            true.append(r["true_w"])
            learned.append(r["learned_w"])
            errors.append(r.get("learned_w_error", 0.0))
            names.append(region.name)
    if true:
        ax.errorbar(true, learned, yerr=errors, fmt="o", color=COLOURS["ranode"], zorder=3)
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


def plot_w_grid(path, summary: Mapping, regions: Sequence[SignalRegion]) -> None:
    """R-ANODE's max SIC with w held fixed on a grid, per SR (the learned and true w marked)."""
    fig, ax = figure(figsize=(4.8, 4.0))
    drawn = False
    for region in regions:
        r = summary["regions"][region.name]["methods"].get("ranode", {})
        if r.get("w_grid"):
            line = ax.semilogx(r["w_grid"], r["max_sic_w_grid"], "o-", label=region.name)[0]
            ax.axvline(r["learned_w"], color=line.get_color(), ls="--", lw=0.8)
            if r["true_w"] > 0:
                ax.axvline(r["true_w"], color=line.get_color(), ls=":", lw=0.8)
            drawn = True
    if drawn:
        ax.legend(title="dashed: learned w, dotted: true w", fontsize=7, title_fontsize=7)
    else:
        ax.text(0.5, 0.5, "no w grid (anomaly.ranode.w-grid)", ha="center", transform=ax.transAxes)
    ax.set_xlabel("fixed signal fraction w")
    ax.set_ylabel("max SIC (R-ANODE)")
    save_figure(fig, path)


def plot_signal_samples(path, results: Sequence[Mapping], region: SignalRegion) -> None:
    """Samples of R-ANODE's P_S(x, m) against the true signal and background in one SR."""
    r = next((r for r in results if r["method"] == "ranode" and r["region"] == region.name), None)
    fig, axes = figure(1, 4, figsize=(16, 3.6), squeeze=False)
    axes = axes[0]
    if r is None or "signal_samples" not in r:
        axes[0].text(0.5, 0.5, "no P_S samples", ha="center", transform=axes[0].transAxes)
        save_figure(fig, path)
        return
    test_x, label, samples = r["test_x"], r["label"], r["signal_samples"]
    for k, ax in enumerate(axes):
        lo, hi = np.quantile(np.concatenate([test_x[:, k], samples[:, k]]), [0.001, 0.999])
        bins = np.linspace(lo, hi, 50)
        ax.hist(
            test_x[label == 0, k],
            bins,
            density=True,
            histtype="step",
            color="grey",
            label="true background",
        )
        ax.hist(
            test_x[label == 1, k],
            bins,
            density=True,
            histtype="step",
            color="black",
            label="true signal",
        )
        ax.hist(
            samples[:, k],
            bins,
            density=True,
            histtype="step",
            color=COLOURS["ranode"],
            label=r"samples of $P_S(x, m)$",
        )
        ax.set_xlabel(FEATURES[k] if k < len(FEATURES) else f"feature {k}")
    info = r["info"]
    axes[0].set_title(
        f"{region.name}: learned w = {info['learned_w']:.4f} ± {info['learned_w_error']:.4f}, "
        f"true {info['true_w']:.4f}",
        fontsize=8,
        loc="left",
    )
    axes[-1].legend(fontsize=7)
    save_figure(fig, path)


def _band(ax, x, values, colour, label):
    """Median and 16-84 % band over seeds; values: [len(x), seeds] (nan for missing)."""
    values = np.asarray(values, dtype=float)
    lo, med, hi = np.nanquantile(values, [0.16, 0.5, 0.84], axis=1)
    ax.plot(x, med, "o-", color=colour, label=label, ms=3)
    ax.fill_between(x, lo, hi, color=colour, alpha=0.2)


def plot_scan_metric(path, table: Sequence[Mapping], key: str, ylabel: str, log: bool = False):
    """A metric against N_sig per method and SR: median over seeds and the 16-84 % band."""
    regions = sorted({row["region"] for row in table})
    methods = list(dict.fromkeys(row["method"] for row in table))
    n_sig = sorted({row["n_signal"] for row in table})
    seeds = sorted({row["seed"] for row in table})
    index = {(r["region"], r["method"], r["n_signal"], r["seed"]): r for r in table}
    fig, axes = _panels(len(regions))
    for ax, region in zip(axes, regions):
        for method in methods:
            values = [
                [index.get((region, method, n, s), {}).get(key, np.nan) for s in seeds]
                for n in n_sig
            ]
            if np.all(np.isnan(np.asarray(values, dtype=float))):
                continue
            _band(ax, n_sig, values, COLOURS.get(method), method)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel(r"injected signal $N_{sig}$")
        ax.set_title(region)
    axes[0].set_ylabel(ylabel)
    axes[-1].legend(fontsize=7)
    save_figure(fig, path)


def plot_scan_w(path, table: Sequence[Mapping]) -> None:
    """R-ANODE's learned w (with its error) against the true w, every (N_sig, seed, SR)."""
    fig, ax = figure(figsize=(4.8, 4.0))
    rows = [r for r in table if r["method"] == "ranode" and "learned_w" in r]
    if rows:
        true = np.array([r["true_w"] for r in rows])
        ax.errorbar(
            true,
            [r["learned_w"] for r in rows],
            yerr=[r["learned_w_error"] for r in rows],
            fmt="o",
            ms=3,
            color=COLOURS["ranode"],
        )
        top = 1.2 * max(true.max(), max(r["learned_w"] for r in rows), 1e-4)
        ax.plot([0, top], [0, top], color="k", lw=0.8, label="learned = true")
        ax.fill_between(
            [0, top], [0, 0.7 * top], [0, 1.3 * top], color="grey", alpha=0.2, label=r"$\pm$30%"
        )
        ax.legend()
    ax.set_xlabel("true w = S / (S + B) in the SR")
    ax.set_ylabel("learned w (R-ANODE)")
    save_figure(fig, path)


def plot_false_positives(path, table: Sequence[Mapping], threshold: float) -> None:
    """At N_sig = 0: each seed's max SIC and excess significance after the cut, per method."""
    rows = [r for r in table if r["n_signal"] == 0]
    methods = list(dict.fromkeys(r["method"] for r in table))
    fig, axes = figure(1, 2, figsize=(9, 3.6), squeeze=False)
    for ax, key, label in (
        (axes[0][0], "max_sic", "max SIC (N_sig = 0)"),
        (axes[0][1], "excess_significance", r"excess after the cut [$\sigma$] (N_sig = 0)"),
    ):
        for i, method in enumerate(methods):
            values = [r[key] for r in rows if r["method"] == method]
            ax.scatter(np.full(len(values), i), values, color=COLOURS.get(method), s=14)
        ax.set_xticks(range(len(methods)), methods, rotation=45, fontsize=7)
        ax.set_ylabel(label)
    axes[0][1].axhline(threshold, color="k", ls="--", lw=0.8)
    axes[0][0].axhline(1.0, color="k", lw=0.5)
    save_figure(fig, path)
