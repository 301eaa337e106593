"""The refinement methods against each other: likelihood evaluations, ESS, ln Z and time.

Part 1 (always): an 8-dimensional correlated Gaussian with an analytic evidence, started from
a shifted, a too-narrow and a too-wide proposal; per method the likelihood evaluations to reach
the target ESS, the ln Z error in units of its reported error, and the CPU time.

Part 2 (``--events``): default injections with the trained model (``--model``) and the config's
inference settings, once per method: network ESS and efficiency, final ESS, likelihood
evaluations, refinement wall time and CPU time.

Run: ``python benchmarks/gw_refinement.py [--events injection-0 injection-1] [--methods amis smc]``.
Times move with the machine's load: compare methods within one run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def gaussian_part(methods, target_ess: int) -> None:
    import scipy.stats

    from twinflow.gw.inference.refinement import refine

    rng = np.random.default_rng(5)
    d = 8
    a = rng.normal(size=(d, d))
    cov = a @ a.T / d + 0.5 * np.eye(d)
    mean = rng.normal(size=d)
    target = scipy.stats.multivariate_normal(mean, cov)
    bounds = np.array([[-30.0, 30.0]] * d)
    log_volume = d * np.log(60.0)

    def log_prior(x):
        return np.where(np.all((x > -30) & (x < 30), 1), -log_volume, -np.inf)

    print("| proposal | method | likelihood evaluations | ESS | (ln Z - truth) / error | CPU s |")
    print("|---|---|---|---|---|---|")
    sd = np.sqrt(np.diag(cov))
    for kind, m, c in (
        ("shifted 1.5 sd", mean + 1.5 * sd, cov),
        ("narrow /3", mean, cov / 9),
        ("wide x3", mean, 9 * cov),
    ):
        q = scipy.stats.multivariate_normal(m, c)
        x = q.rvs(5000, random_state=rng)
        for method in methods:
            t0 = time.process_time()
            r = refine(
                x,
                q.logpdf(x),
                lambda y: target.logpdf(y),
                log_prior,
                bounds,
                [False] * d,
                {"method": method, "target-ess": target_ess, "batch-size": 3000},
                np.random.default_rng(1),
                proposal_log_prob=q.logpdf,
                log=lambda *_: None,
            )
            pull = (r.log_evidence + log_volume) / r.log_evidence_error
            print(
                f"| {kind} | {method} | {r.n_likelihood_evaluations} | "
                f"{r.effective_sample_size:.0f} | {pull:+.1f} | {time.process_time() - t0:.1f} |"
            )


def injection_part(events, methods, config_path: Path, model: Path, psd: list[str]) -> None:
    from twinflow.core.settings import load_yaml
    from twinflow.gw.inference.stage import run_event
    from twinflow.gw.settings import inference_settings_for

    gw = load_yaml(config_path)["gw"]
    psd_map = dict(p.split("=", 1) for p in psd)
    print(
        "| event | method | network ESS | network efficiency | final ESS | evaluations | wall s | CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for event in events:
        for method in methods:
            settings = inference_settings_for(gw, event)
            settings["refinement"] = {**settings.get("refinement", {}), "method": method}
            with tempfile.TemporaryDirectory() as out:
                t0, c0 = time.perf_counter(), time.process_time()
                summary = run_event(
                    settings, model, out, psd_paths=psd_map, processes=2, log=lambda *_: None
                )
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            refinement = summary.get("refinement", {})
            print(
                f"| {event} | {method} | {summary['network']['effective_sample_size']:.0f} | "
                f"{summary['network']['sampling_efficiency']:.2%} | "
                f"{summary['effective_sample_size']:.0f} | "
                f"{refinement.get('n_likelihood_evaluations', 0)} | {wall:.0f} | {cpu:.0f} |"
            )
            print(json.dumps({k: refinement.get(k) for k in ("warnings", "pareto_k")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["amis", "smc"])
    parser.add_argument("--target-ess", type=int, default=2000)
    parser.add_argument("--events", nargs="*", default=[])
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--model", type=Path, default=Path("results/gw/train/model.pt"))
    parser.add_argument(
        "--psd", nargs="+", default=["H1=results/gw/psd/H1.h5", "L1=results/gw/psd/L1.h5"]
    )
    args = parser.parse_args()
    gaussian_part(args.methods, args.target_ess)
    if args.events:
        injection_part(args.events, args.methods, args.config, args.model, args.psd)


if __name__ == "__main__":
    main()
