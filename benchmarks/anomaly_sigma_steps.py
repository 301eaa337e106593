"""SIGMA's ODE steps: max SIC with signal, and the excess after the cut without, paired by seed.

Fewer midpoint steps make SIGMA's template proportionally cheaper, but coarser: 5 steps leave
an error of about 0.01 sigma per feature, where a signal region's ~124k data events resolve
about 0.003 sigma. Two checks, each paired by seed across the step counts:

1. With signal (the cost benchmark's events: LHCO-like background with 1000 signal events):
   one SIGMA model at the default run's settings, the 3.3-3.7 TeV template (context
   interpolation) at each step count, for template and classifier seeds 1..K, and each
   classifier's max SIC on labelled test events.
2. Without signal: for each seed, fresh background events (1M), a SIGMA trained on them, the
   template at each step count, the default classifier ensemble with the data scored out of
   fold, and the excess of data after the cut at eps_B = 1 % over the background expectation,
   each fold cut on its own share of 300k test background events (as the scan does; the
   sizes scale with --n-background). Z should
   follow N(0, 1) whatever the step count.

Process CPU seconds on one thread. config/README's tables (seeds 1-11 with signal, 1-16
without) came from one-off scripts with the same draws, seeds and classifier names, split over
parallel runs; this script reproduces their rows.

    python benchmarks/anomaly_sigma_steps.py [--steps 10 5] [--sic-seeds 1 2 3] [--null-seeds 1 2 3]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy import stats

from anomaly_cost import context_template, default_settings, simulate
from twinflow.anomaly import metrics
from twinflow.anomaly.classifiers import classifier_from_settings
from twinflow.anomaly.flow_matching import sigma_from_settings
from twinflow.anomaly.methods import sample_masses
from twinflow.anomaly.regions import SignalRegion
from twinflow.anomaly.simulation import LHCOLikeGenerator

REGION = SignalRegion(0, 3.3, 3.7, 0.2)


def templates(sigma, data_sr, seed: int, steps: list[int], s_sigma):
    """Yield (steps, template, CPU s) for one seed's masses and start points."""
    n_template = int(s_sigma["oversampling"] * len(data_sr))
    masses = sample_masses(data_sr.m, n_template, REGION, np.random.default_rng(seed))
    for n in steps:
        sigma.settings["ode_steps"] = n
        template, seconds = context_template(sigma, masses, REGION, s_sigma["anchor-margin"], seed)
        yield n, template, seconds


def max_sic_check(s, steps: list[int], seeds: list[int], n_background: int) -> None:
    data, test = simulate(n_background, 1000)
    data_sr = data.select(REGION.inside(data.m))
    test_sr = test.select(REGION.inside(test.m))
    sigma = sigma_from_settings(s["sigma"], seed=0, device="cpu").fit(data.x, data.m)
    floor = s["metrics"]["sic-min-background-efficiency"]
    sic = {n: [] for n in steps}
    print(f"max SIC with signal ({int(data_sr.label.sum())} in {len(data_sr)} SR events)")
    for seed in seeds:
        row = []
        for n, template, seconds in templates(sigma, data_sr, seed, steps, s["sigma"]):
            clf = classifier_from_settings(s["classifier"], seed=seed, name="bench")
            clf.fit(template, data_sr.x)
            sic[n].append(metrics.max_sic(test_sr.label, clf.predict(test_sr.x), floor))
            row.append(f"{n} steps {sic[n][-1]:.2f} ({seconds:.1f} CPU s)")
        print(f"  seed {seed}: " + ", ".join(row), flush=True)
    for n in steps[1:]:
        ratio = np.array(sic[n]) / np.array(sic[steps[0]])
        print(
            f"  {n} steps / {steps[0]}: mean ratio {ratio.mean():.3f}, higher in"
            f" {(ratio > 1).sum()} of {len(ratio)}"
        )


def null_check(s, steps: list[int], seeds: list[int], n_background: int) -> None:
    gen = LHCOLikeGenerator()
    eps = s["metrics"]["significance-background-efficiency"]
    z = {n: [] for n in steps}
    print(f"excess after the cut at eps_B = {eps} with no signal, Z with the full error")
    for seed in seeds:
        rng = np.random.default_rng(100 + seed)
        data = gen.background(n_background, rng)
        test = gen.background(int(0.3 * n_background), rng)
        data_sr = data.select(REGION.inside(data.m))
        test_sr = test.select(REGION.inside(test.m))
        sigma = sigma_from_settings(s["sigma"], seed=seed, device="cpu").fit(data.x, data.m)
        row = []
        for n, template, _ in templates(sigma, data_sr, seed, steps, s["sigma"]):
            ens = classifier_from_settings(s["classifier"], seed=seed, name="null")
            ens.fit(template, data_sr.x)
            by_fold = np.stack([ens.predict_fold(test_sr.x, k) for k in range(ens.n_folds)])
            excess = metrics.selected_excess_by_group(
                by_fold, ens.out_of_fold, ens.positive_fold, np.zeros(len(data_sr)), eps
            )
            z[n].append(excess["excess_significance"])
            row.append(f"{n} steps Z {z[n][-1]:+.2f}")
        print(f"  seed {seed}: " + ", ".join(row), flush=True)
    if len(seeds) < 2:
        return
    for n in steps:
        print(f"  {n} steps: mean Z {np.mean(z[n]):+.2f}, sd {np.std(z[n], ddof=1):.2f}")
    for n in steps[1:]:
        diff = np.array(z[n]) - np.array(z[steps[0]])
        p = stats.wilcoxon(diff).pvalue
        print(
            f"  {n} steps - {steps[0]}: {diff.mean():+.2f} +- {diff.std(ddof=1) / np.sqrt(len(diff)):.2f},"
            f" lower in {(diff < 0).sum()} of {len(diff)} (Wilcoxon p = {p:.3g})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-background", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 5])
    parser.add_argument("--sic-seeds", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--null-seeds", type=int, nargs="*", default=[1, 2, 3])
    args = parser.parse_args()
    torch.set_num_threads(1)
    s = default_settings()
    if args.sic_seeds:
        max_sic_check(s, args.steps, args.sic_seeds, args.n_background)
    if args.null_seeds:
        null_check(s, args.steps, args.null_seeds, args.n_background)


if __name__ == "__main__":
    main()
