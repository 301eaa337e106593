"""Does SIGMA's template need 4 events per SR event? Max SIC and cost against oversampling.

SIGMA's per-SR cost is its template: ``sigma.oversampling`` x the SR's events, each integrated
through the ODE. Fewer template events cost proportionally less, but the classifier then sees
a noisier background model. On the cost benchmark's events (LHCO-like background with 1000
signal events, seed 0), one SIGMA model at the default run's settings generates the 3.3-3.7 TeV
template (context interpolation) at each oversampling, for template and classifier seeds
1..K; each template's classifier (the default ensemble) is scored on labelled test events. The
comparison is paired by seed; process CPU seconds on one thread.

    python benchmarks/anomaly_sigma_oversampling.py [--seeds 1 2 3] [--oversampling 1 2 4]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from anomaly_cost import context_template, cpu_seconds, default_settings, simulate
from twinflow.anomaly import metrics
from twinflow.anomaly.classifiers import classifier_from_settings
from twinflow.anomaly.flow_matching import sigma_from_settings
from twinflow.anomaly.methods import sample_masses
from twinflow.anomaly.regions import SignalRegion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-background", type=int, default=1_000_000)
    parser.add_argument("--n-signal", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--oversampling", type=float, nargs="+", default=[1, 2, 4])
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    s = default_settings()
    data, test = simulate(args.n_background, args.n_signal)
    region = SignalRegion(0, 3.3, 3.7, 0.2)
    data_sr = data.select(region.inside(data.m))
    test_sr = test.select(region.inside(test.m))
    margin = s["sigma"]["anchor-margin"]
    sigma, train_s = cpu_seconds(
        sigma_from_settings(s["sigma"], seed=0, device="cpu").fit, data.x, data.m
    )
    floor = s["metrics"]["sic-min-background-efficiency"]
    cut = s["metrics"]["significance-background-efficiency"]
    print(
        f"SR {region.low}-{region.high} TeV: {len(data_sr)} events, S = {int(data_sr.label.sum())};"
        f" SIGMA training {train_s:.0f} CPU s"
    )
    print(" seed | oversampling | template CPU s | classifier CPU s | max SIC | SIC at eps_B")
    rows = []
    for seed in args.seeds:
        for factor in args.oversampling:
            n = int(factor * len(data_sr))
            masses = sample_masses(data_sr.m, n, region, np.random.default_rng(seed))
            template, template_s = context_template(sigma, masses, region, margin, seed)
            clf = classifier_from_settings(s["classifier"], seed=seed, name="bench")
            _, classifier_s = cpu_seconds(clf.fit, template, data_sr.x)
            score = clf.predict(test_sr.x)
            eps_s, eps_b = metrics.efficiency_at(test_sr.label, score, cut)
            row = {
                "seed": seed,
                "oversampling": factor,
                "template_seconds": template_s,
                "classifier_seconds": classifier_s,
                "max_sic": metrics.max_sic(test_sr.label, score, floor),
                "sic_at_cut": eps_s / np.sqrt(eps_b),
            }
            rows.append(row)
            print(
                f" {seed:4d} | {factor:12g} | {template_s:14.1f} | {classifier_s:16.1f}"
                f" | {row['max_sic']:7.2f} | {row['sic_at_cut']:6.2f}",
                flush=True,
            )
    reference = max(args.oversampling)
    for factor in args.oversampling:
        mine = [r for r in rows if r["oversampling"] == factor]
        ref = [r for r in rows if r["oversampling"] == reference]
        ratio = [a["max_sic"] / b["max_sic"] for a, b in zip(mine, ref)]
        print(
            f"oversampling {factor:g}: max SIC / oversampling {reference:g}'s, paired by seed:"
            f" {', '.join(f'{r:.2f}' for r in ratio)}; template + classifier"
            f" {np.mean([r['template_seconds'] + r['classifier_seconds'] for r in mine]):.1f} CPU s"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"settings": vars(args), "training_seconds": train_s, "rows": rows}, f)


if __name__ == "__main__":
    main()
