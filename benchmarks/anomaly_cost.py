"""Per-SR cost of CATHODE and SIGMA at 3, 6 and 12 signal regions, and SIGMA's fast templates.

Over one m_JJ range (the default scan's 2.9-4.1 TeV) split into 3, 6 and 12 adjacent SRs, with
everything each method needs per region:

- CATHODE: train the conditional flow on the data outside the SR, sample its template at the SR
  masses, train the classifier (data against template);
- SIGMA: train the flow-matching model once on all data; per SR integrate the interpolated field
  for the template and train the same classifier.

CATHODE's per-SR cost is the same flow training in every SR (the sidebands are all data outside
the SR), so it is measured in ``--cathode-regions`` SRs per configuration and its mean used for
the rest; SIGMA's template is timed in every SR. Then, in the SR with the signal (3.3-3.7 TeV),
SIGMA's template generation is timed for several (interpolation, solver, steps) settings, and
each template's classifier max SIC on labelled test events shows what the speed-up costs; the
default template is also generated with 65536 events per network pass (the chunk before it was
sized for the CPU's cache), so the ratio of the two is measured in the same run.

Settings are the default run's (``config/config.yaml``'s ``anomaly`` section), on the CPU.
Times are process CPU seconds (``time.process_time``, one thread), which other jobs on a
shared machine inflate less than wall time. Ratios are within this run.

    python benchmarks/anomaly_cost.py [--n-background 300000] [--out cost.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from twinflow.anomaly import metrics
from twinflow.anomaly.classifiers import classifier_from_settings
from twinflow.anomaly.events import Events
from twinflow.anomaly.flow_matching import GPU_CHUNK, sigma_from_settings
from twinflow.anomaly.flows import flow_from_settings
from twinflow.anomaly.methods import sample_masses
from twinflow.anomaly.regions import SignalRegion
from twinflow.anomaly.settings import with_defaults
from twinflow.anomaly.simulation import LHCOLikeGenerator
from twinflow.core.settings import load_yaml

M_RANGE = (2.9, 4.1)  # TeV: the default scan's centres 3.1, 3.5, 3.9 with width 0.4
TEMPLATE_SETTINGS = (  # (interpolation, solver, ODE steps)
    ("field", "midpoint", 10),  # the default of the 'sigma' method
    ("context", "midpoint", 10),
    ("context", "midpoint", 5),
    ("context", "rk4", 3),
    ("context", "euler", 5),
)


def cpu_seconds(fn, *args, **kwargs):
    start = time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - start


def regions(n: int) -> list[SignalRegion]:
    edges = np.linspace(*M_RANGE, n + 1)
    return [
        SignalRegion(i, float(lo), float(hi), 0.2)
        for i, (lo, hi) in enumerate(zip(edges, edges[1:]))
    ]


def default_settings() -> dict:
    """The ``anomaly`` settings of the default run (``config/config.yaml``), on the CPU.

    Not the schema's defaults: there SIGMA's network has width 128, where the default run
    uses 64.
    """
    config = load_yaml(Path(__file__).resolve().parents[1] / "config" / "config.yaml")
    return with_defaults({**config["anomaly"], "device": "cpu"})


def simulate(n_background: int, n_signal: int) -> tuple[Events, Events]:
    """The data (background + signal, shuffled) and labelled test events, from seed 0."""
    gen, rng = LHCOLikeGenerator(), np.random.default_rng(0)
    data = Events.concatenate(
        [gen.background(n_background, rng), gen.signal(n_signal, rng)]
    ).shuffled(rng)
    test = Events.concatenate([gen.background(100_000, rng), gen.signal(5000, rng)])
    return data, test


def context_template(sigma, masses, region: SignalRegion, margin: float, seed: int):
    """SIGMA's template at ``masses`` in ``region`` (context interpolation between anchors
    ``margin`` outside its edges, as the ``sigma-context`` method), and its CPU seconds."""
    return cpu_seconds(
        sigma.sample_interpolated,
        masses,
        region.low - margin,
        region.high + margin,
        seed=seed,
        interpolation="context",
    )


def classifier_seconds(s, data_sr: Events, template: np.ndarray) -> float:
    clf = classifier_from_settings(s["classifier"], seed=0, name="bench")
    return cpu_seconds(clf.fit, template, data_sr.x)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-background", type=int, default=300_000)
    parser.add_argument("--n-signal", type=int, default=1000)
    parser.add_argument("--cathode-regions", type=int, default=1)
    parser.add_argument("--flow-epochs", type=int, default=None, help="override flow.epochs")
    parser.add_argument("--sigma-epochs", type=int, default=None, help="override sigma.epochs")
    parser.add_argument(
        "--classifier-models", type=int, default=None, help="override classifier.n-models"
    )
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    s = default_settings()
    if args.flow_epochs:
        s["flow"]["epochs"] = args.flow_epochs
    if args.sigma_epochs:
        s["sigma"]["epochs"] = args.sigma_epochs
    if args.classifier_models:
        s["classifier"]["n-models"] = args.classifier_models
    data, test = simulate(args.n_background, args.n_signal)

    sigma, sigma_train = cpu_seconds(
        sigma_from_settings(s["sigma"], seed=0, device="cpu").fit, data.x, data.m
    )
    results: dict = {"settings": vars(args), "sigma_training_seconds": sigma_train, "table": []}
    print(f"events {len(data)}; SIGMA training once: {sigma_train:.0f} CPU s")
    print(
        " SRs | CATHODE per SR (flow + template + classifier) | SIGMA per SR (template + classifier) | totals"
    )
    for n_sr in (3, 6, 12):
        cathode, sigma_rows = [], []
        for k, region in enumerate(regions(n_sr)):
            inside = region.inside(data.m)
            data_sr = data.select(inside)
            n_tpl = int(s["sigma"]["oversampling"] * len(data_sr))
            masses = sample_masses(data_sr.m, n_tpl, region, np.random.default_rng(k))
            template, gen_s = context_template(
                sigma, masses, region, s["sigma"]["anchor-margin"], seed=k
            )
            sigma_rows.append((gen_s, classifier_seconds(s, data_sr, template)))
            if k < args.cathode_regions:
                flow = flow_from_settings(s["flow"], seed=k, name="cathode", device="cpu")
                _, fit_s = cpu_seconds(flow.fit, data.x[~inside], data.m[~inside])
                tpl, sample_s = cpu_seconds(flow.sample, n_tpl, masses)
                cathode.append((fit_s, sample_s, classifier_seconds(s, data_sr, tpl)))
        c = np.mean(cathode, axis=0)
        g = np.mean(sigma_rows, axis=0)
        row = {
            "regions": n_sr,
            "cathode_flow_seconds": c[0],
            "cathode_template_seconds": c[1],
            "cathode_classifier_seconds": c[2],
            "cathode_per_region_seconds": float(c.sum()),
            "sigma_template_seconds": g[0],
            "sigma_classifier_seconds": g[1],
            "sigma_per_region_seconds": float(g.sum()),
            "cathode_total_seconds": float(n_sr * c.sum()),
            "sigma_total_seconds": float(sigma_train + n_sr * g.sum()),
            "generative_ratio": float((c[0] + c[1]) / g[0]),
            "all_in_ratio": float(c.sum() / g.sum()),
        }
        results["table"].append(row)
        print(
            f" {n_sr:3d} | {c.sum():7.1f} s ({c[0]:.1f} + {c[1]:.1f} + {c[2]:.1f})"
            f" | {g.sum():6.1f} s ({g[0]:.2f} + {g[1]:.1f})"
            f" | CATHODE {row['cathode_total_seconds']:.0f} s, SIGMA {row['sigma_total_seconds']:.0f} s"
            f" | generative {row['generative_ratio']:.0f}x, all-in {row['all_in_ratio']:.1f}x"
        )

    region = SignalRegion(0, 3.3, 3.7, 0.2)
    data_sr = data.select(region.inside(data.m))
    test_sr = test.select(region.inside(test.m))
    masses = sample_masses(data_sr.m, int(4 * len(data_sr)), region, np.random.default_rng(9))
    print(
        f"\nSIGMA templates in 3.3-3.7 TeV ({len(masses)} events; S = {int(data_sr.label.sum())}):"
    )
    results["templates"] = []
    for interpolation, solver, steps in TEMPLATE_SETTINGS:
        sigma.settings.update(solver=solver, ode_steps=steps)
        template, gen_s = cpu_seconds(
            sigma.sample_interpolated, masses, 3.25, 3.75, seed=1, interpolation=interpolation
        )
        clf = classifier_from_settings(s["classifier"], seed=0, name="bench").fit(
            template, data_sr.x
        )
        sic = metrics.max_sic(test_sr.label, clf.predict(test_sr.x), 1e-3)
        results["templates"].append(
            {
                "interpolation": interpolation,
                "solver": solver,
                "steps": steps,
                "template_seconds": gen_s,
                "max_sic": sic,
            }
        )
        print(
            f"  {interpolation:8s} {solver:8s} {steps:2d} steps: {gen_s:6.2f} CPU s, max SIC {sic:.2f}"
        )
    s_sigma = s["sigma"]
    sigma.settings.update(solver=s_sigma["solver"], ode_steps=s_sigma["ode-steps"])
    timings = {}
    for chunk in (None, GPU_CHUNK):
        timings[chunk] = cpu_seconds(
            sigma.sample_interpolated,
            masses,
            3.25,
            3.75,
            seed=1,
            chunk=chunk,
            interpolation="context",
        )[1]
    results["chunk"] = {
        "default_seconds": timings[None],
        f"chunk_{GPU_CHUNK}_seconds": timings[GPU_CHUNK],
        "speed_up": timings[GPU_CHUNK] / timings[None],
    }
    print(
        f"  context template, default settings: {timings[None]:.2f} CPU s at the default chunk,"
        f" {timings[GPU_CHUNK]:.2f} s at {GPU_CHUNK} events per pass"
        f" ({timings[GPU_CHUNK] / timings[None]:.1f}x)"
    )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
