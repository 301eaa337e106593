"""R-ANODE's learned w with the exact background density in place of the sideband flow.

Separates the two sources of a biased w. The LHCO-like generator's background density is known
exactly (``LHCOLikeGenerator.background_log_prob``), so R-ANODE can be fitted with P_B = the
truth: whatever bias w keeps then comes from the joint fit of w and the signal flow P_S, not from
background mismodelling. Each seed simulates the default run's data (``anomaly.data`` of the
config, ``--n-signal`` injected), fits R-ANODE in one SR with P_B exact and with P_B the sideband
flow the workflow trains (the config's ``flow`` settings and seed), for each ``--w-init`` and
``--overlap-penalty``, and prints the learned w against the true S/(S + B), its curvature error,
the profile w (the maximum-likelihood w at the fitted P_S, both densities fixed) and the max SIC
of R-ANODE's score on the labelled test events in the SR::

    python benchmarks/anomaly_ranode_w.py --seeds 1 2 3 4 5 --n-signal 750 1000 --out w.json

One fit costs 10-30 CPU s, a sideband flow about a minute, the events about 20 s per seed and
N_sig (one thread).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from twinflow.anomaly import metrics
from twinflow.anomaly.flows import flow_from_settings
from twinflow.anomaly.ranode import RAnode, profile_w
from twinflow.anomaly.regions import SignalRegion
from twinflow.anomaly.settings import method_settings
from twinflow.anomaly.simulation import LHCOLikeGenerator, simulate_events
from twinflow.core.config import load_config


class ExactBackground:
    """The generator's background density in the place of a sideband flow."""

    fit_seconds = 0.0

    @staticmethod
    def log_prob(x: np.ndarray, m: np.ndarray) -> np.ndarray:
        return LHCOLikeGenerator.background_log_prob(x, m)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--n-signal", type=int, nargs="+", default=[1000])
    parser.add_argument("--region", type=int, default=1, help="SR index in scan.centres")
    parser.add_argument("--w-init", type=float, nargs="+", default=None, help="default: config")
    parser.add_argument(
        "--background", nargs="+", default=["exact", "sideband-flow"], help="P_B variants"
    )
    parser.add_argument(
        "--overlap-penalty", type=float, nargs="+", default=None, help="default: config"
    )
    parser.add_argument("--out", default="ranode_w.json")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the workflow's jobs run on one thread
    anomaly = load_config(args.config)["anomaly"]
    if anomaly["data"]["source"] != "simulated":
        raise SystemExit(f"--config {args.config!r}: needs anomaly.data.source: simulated")
    rows = []
    for seed in args.seeds:
        for n_signal in args.n_signal:
            anomaly["seed"] = seed
            data_settings = dict(anomaly["data"], **{"n-signal": n_signal})
            for sample in ("n-extra-background", "n-train-signal"):
                data_settings[sample] = 0  # only the data enter R-ANODE's fit
            events = simulate_events(data_settings, seed)
            samples = {"data": events["data"]}
            settings = method_settings(anomaly, args.region, "ranode")
            settings["ranode"].update({"w-grid": [], "signal-samples": 0, "background-flows": 1})
            region = SignalRegion.from_settings(settings["region"])
            test = events["test"].select(region.inside(events["test"].m))
            for background in args.background:
                if background == "exact":
                    density = ExactBackground()
                else:  # the workflow's sideband flow: same settings and seed
                    data = samples["data"]
                    sideband = data.select(region.sidebands(data.m))
                    density = flow_from_settings(
                        anomaly["flow"],
                        seed=seed + region.index,
                        name=f"sideband flow {region.name}",
                        device="cpu",
                        features=sideband.x.shape[1],
                    ).fit(sideband.x, sideband.m)
                variants = [
                    (w_init, penalty)
                    for w_init in args.w_init or [anomaly["ranode"]["w-init"]]
                    for penalty in args.overlap_penalty or [anomaly["ranode"]["overlap-penalty"]]
                ]
                for w_init, penalty in variants:
                    settings["ranode"].update({"w-init": w_init, "overlap-penalty": penalty})
                    start = time.process_time()
                    method = RAnode(settings, region, density).fit(samples)
                    sr = method.region_data(samples)
                    log_ps = method.signal_flow.log_prob(sr.x, sr.m)
                    info = method.info
                    true_w, w, error = info["true_w"], info["learned_w"], info["learned_w_error"]
                    row = {
                        "seed": seed,
                        "n_signal": n_signal,
                        "background": background,
                        "w_init": w_init,
                        "overlap_penalty": penalty,
                        "true_w": true_w,
                        "learned_w": w,
                        "learned_w_error": error,
                        "relative_bias": w / true_w - 1 if true_w > 0 else None,
                        "within_30_percent": abs(w - true_w) <= 0.3 * true_w,
                        "truth_inside_error": abs(w - true_w) <= error,
                        "profile_w": profile_w(log_ps, method.background.log_prob(sr.x, sr.m)),
                        "signal_background_overlap": info["signal_background_overlap"],
                        "max_sic": metrics.max_sic(
                            test.label,
                            method.score(test.x, test.m),
                            anomaly["metrics"]["sic-min-background-efficiency"],
                        ),
                        "epochs_run": info["epochs_run"],
                        "cpu_seconds": time.process_time() - start,
                    }
                    rows.append(row)
                    print(
                        f"seed {seed} N_sig {n_signal} P_B {background:13s} w-init {w_init:.3g} "
                        f"penalty {penalty:.3g}: "
                        f"w {w:.5f} +- {error:.5f} (true {true_w:.5f}, "
                        f"{(w - true_w) / error:+.1f} sigma), profile w "
                        f"{row['profile_w']:.5f}, max SIC {row['max_sic']:.1f}",
                        flush=True,
                    )
                    with open(args.out, "w") as f:
                        json.dump({"config": args.config, "region": args.region, "rows": rows}, f)


if __name__ == "__main__":
    main()
