"""Per-SR cost of SIGMA's background template against CATHODE's per-SR retraining, same run.

CATHODE trains a conditional flow on the sidebands of every signal region and samples it;
SIGMA trains one flow-matching model once and, per region, only integrates the interpolated
vector field. This script times both generative parts on the same LHCO-like events and prints
the ratio (the literature: ~30 min against ~30 s per SR on a GPU, i.e. ~60x).

    python benchmarks/anomaly_sigma_vs_cathode.py [--n-background 300000] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from anomaly_cost import default_settings
from twinflow.anomaly.flow_matching import sigma_from_settings
from twinflow.anomaly.flows import flow_from_settings
from twinflow.anomaly.methods import sample_masses
from twinflow.anomaly.regions import SignalRegion
from twinflow.anomaly.simulation import LHCOLikeGenerator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-background", type=int, default=300_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    s = default_settings()
    rng = np.random.default_rng(0)
    events = LHCOLikeGenerator().background(args.n_background, rng)
    region = SignalRegion(0, 3.3, 3.7, 0.2)
    m_sr = events.m[region.inside(events.m)]
    n_template = int(s["cathode"]["oversampling"] * len(m_sr))
    masses = sample_masses(m_sr, n_template, region, rng)

    start = time.perf_counter()
    sigma = sigma_from_settings(s["sigma"], seed=0, device=args.device).fit(events.x, events.m)
    sigma_train = time.perf_counter() - start
    start = time.perf_counter()
    sigma.sample_interpolated(masses, 3.25, 3.75)
    sigma_per_sr = time.perf_counter() - start

    start = time.perf_counter()
    sb = ~region.inside(events.m)
    flow = flow_from_settings(s["flow"], seed=0, name="cathode", device=args.device).fit(
        events.x[sb], events.m[sb]
    )
    flow.sample(n_template, masses)
    cathode_per_sr = time.perf_counter() - start

    print(
        f"events {args.n_background}, template {n_template}, threads {args.threads}, device {args.device}"
    )
    print(f"SIGMA training (once): {sigma_train:.1f} s")
    print(f"SIGMA per SR (template): {sigma_per_sr:.1f} s")
    print(f"CATHODE per SR (flow training + template): {cathode_per_sr:.1f} s")
    print(f"ratio CATHODE / SIGMA per SR: {cathode_per_sr / sigma_per_sr:.1f}x (goal >= 20x)")
    for n_sr in (1, 5, 10, 20):
        print(
            f"  {n_sr:2d} SRs: CATHODE {n_sr * cathode_per_sr:.0f} s, SIGMA {sigma_train + n_sr * sigma_per_sr:.0f} s"
        )


if __name__ == "__main__":
    main()
