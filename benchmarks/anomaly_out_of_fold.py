"""The excess after a cut of ANODE and R-ANODE with the SR data scored out of fold, against the
in-sample figure an earlier run's summary.json holds.

Reruns one (SR, method) job of a finished default run with the current code, on that run's
events and sideband flow, and prints the excess significance at the configured
``metrics.significance-background-efficiency`` beside the one in ``summary.json`` (from code
that scored the SR data with the density fitted to them), with the learned w of the fit on all
SR data and of each fold's fit (R-ANODE):

    python benchmarks/anomaly_out_of_fold.py --results results/anomaly --region 0 --method anode

Costs one default ANODE / R-ANODE job (1-4 CPU minutes); the scores go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from twinflow.anomaly.gather import evaluate_method_result, read_method_result
from twinflow.anomaly.scan import run_method
from twinflow.anomaly.settings import method_settings
from twinflow.core.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results/anomaly", help="a finished run's folder")
    parser.add_argument("--config", default="config/config.yaml", help="the run's config")
    parser.add_argument("--region", type=int, required=True, help="SR index (sr{i})")
    parser.add_argument("--method", required=True, choices=["anode", "ranode", "ranode-ideal"])
    parser.add_argument("--out", default="out_of_fold.h5", help="scores of the rerun (HDF5)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    anomaly = load_config(args.config)["anomaly"]
    settings = method_settings(anomaly, args.region, args.method)
    start = time.process_time()
    info = run_method(
        settings,
        f"{args.results}/events.h5",
        args.out,
        sideband_flow=f"{args.results}/sr{args.region}/sideband_flow.pt",
    )
    after = evaluate_method_result(read_method_result(args.out), anomaly["metrics"])
    with open(f"{args.results}/summary.json") as f:
        before = json.load(f)["regions"][f"sr{args.region}"]["methods"][args.method]
    row = {
        "region": args.region,
        "method": args.method,
        "excess_significance_out_of_fold": after["excess_significance"],
        "excess_significance_in_summary": before["excess_significance"],
        "learned_w": info.get("learned_w"),
        "w_per_fold": info.get("w_per_fold"),
        "true_w": info.get("true_w"),
        "cpu_seconds": time.process_time() - start,
    }
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
