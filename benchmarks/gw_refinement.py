"""The refinement methods against each other: likelihood evaluations, ESS, ln Z and time.

Part 1 (unless ``--no-gaussian``): an 8-dimensional correlated Gaussian with an analytic evidence, started from
a shifted, a too-narrow and a too-wide proposal; per method the likelihood evaluations to reach
the target ESS, the ln Z error in units of its reported error, and the CPU time.

Part 2 (``--events``): default injections with the trained model (``--model``) and the config's
inference settings, once per method: network ESS and efficiency, final ESS, likelihood
evaluations, refinement wall time and CPU time.

``--pocomc`` adds pocomc (preconditioned SMC, ``pip install twinflow[bench]``), the maintained
library nearest to this job, to both parts, twice: as it is meant to be used, tempering from the
prior, and started from our proposal (on the injections, the mixture AMIS fits first to the
network's weighted samples), by handing pocomc that proposal as its "prior" and ``L pi / g`` as
its likelihood. It runs until its own effective sample size reaches the target (``n_total``)
and estimates ln Z by importance sampling from ``n_evidence`` = target draws of its last flow,
weighted by "likelihood" x "prior" = L pi: that is ln Z of L pi, whatever g's mass outside the
prior's box. Its ESS is that of its
weighted particles, which MCMC moves made from one another, so it is not the same measure as
our independently drawn, exactly weighted samples: the comparison is of the likelihood calls
each needs to call its answer done, and of ln Z against the truth or against each other.

Run: ``python benchmarks/gw_refinement.py [--events injection-0 injection-1] [--methods amis smc]
[--pocomc]``. Times move with the machine's load: compare methods within one run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


class _Density:
    """A density pocomc takes as its prior: ``logpdf``, ``rvs``, ``bounds`` and ``dim``."""

    def __init__(self, log_pdf, draw, bounds: np.ndarray):
        self.logpdf, self._draw, self.bounds = log_pdf, draw, np.asarray(bounds, float)
        self.dim = len(self.bounds)

    def rvs(self, size: int = 1) -> np.ndarray:
        return self._draw(size)


def _inside(x: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    return np.all((x > bounds[:, 0]) & (x < bounds[:, 1]), 1)


def run_pocomc(
    log_likelihood,
    log_prior,
    bounds: np.ndarray,
    periodic,
    target_ess: int,
    *,
    prior_draw=None,
    proposal=None,
    seed: int = 1,
) -> dict:
    """Run pocomc to ``target_ess`` from the prior (``prior_draw(n)``) or from ``proposal``
    (``sample(n, rng)`` and ``log_prob``); return its likelihood calls, ln Z, error, ESS and time.

    From a proposal g the "prior" is g truncated to the box and the "likelihood" ln L + ln pi -
    ln g. pocomc's evidence (importance sampling from its last flow, ``n_evidence`` > 0) weights
    draws by "likelihood" x "prior" = L pi, so it is Z, however much of g falls outside the box.
    """
    import pocomc

    calls = [0]
    bounds = np.asarray(bounds, float)

    def counted(x):
        calls[0] += len(x)
        return np.asarray(log_likelihood(x), float)

    rng = np.random.default_rng(seed)
    if proposal is None:
        prior = _Density(log_prior, prior_draw, bounds)
        likelihood = counted
    else:

        def draw(n):
            out = np.empty((0, len(bounds)))
            while len(out) < n:
                x = proposal.sample(2 * n, rng)
                out = np.concatenate([out, x[_inside(x, bounds)]])
            return out[:n]

        def log_g(x):
            return np.where(_inside(x, bounds), proposal.log_prob(x), -np.inf)

        def likelihood(x):
            log_pi = np.asarray(log_prior(x), float)
            out = np.full(len(x), -np.inf)
            ok = np.isfinite(log_pi)
            if ok.any():
                out[ok] = counted(x[ok]) + log_pi[ok] - log_g(x[ok])
            return out

        prior = _Density(log_g, draw, bounds)
    t0, c0 = time.perf_counter(), time.process_time()
    sampler = pocomc.Sampler(
        prior=prior,
        likelihood=likelihood,
        vectorize=True,
        periodic=[i for i, p in enumerate(periodic) if p] or None,
        random_state=seed,
    )
    sampler.run(n_total=target_ess, n_evidence=target_ess, progress=False)
    log_z, log_z_error = sampler.evidence()
    _, weights, _, _ = sampler.posterior(trim_importance_weights=False)
    return {
        "calls": calls[0],
        "log_evidence": float(log_z),
        "log_evidence_error": float(log_z_error),
        "ess": float(weights.sum() ** 2 / np.sum(weights**2)),
        "wall": time.perf_counter() - t0,
        "cpu": time.process_time() - c0,
    }


class _Frozen:
    """A scipy frozen distribution as a proposal: ``sample(n, rng)`` and ``log_prob``."""

    def __init__(self, dist):
        self.dist = dist

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.dist.rvs(n, random_state=rng)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        return self.dist.logpdf(x)


def _pocomc_row(label: str, r: dict, truth: float | None = None) -> str:
    delta = r["log_evidence"] - truth if truth is not None else None
    z = (
        f"{delta / r['log_evidence_error']:+.1f} ({delta:+.3f} nat)"
        if truth is not None
        else f"{r['log_evidence']:.2f} +- {r['log_evidence_error']:.2f}"
    )
    return f"| {label} | {r['calls']} | {r['ess']:.0f} | {z} | {r['cpu']:.1f} |"


def gaussian_part(methods, target_ess: int, pocomc: bool = False) -> None:
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
        if pocomc:
            r = run_pocomc(
                target.logpdf, log_prior, bounds, [False] * d, target_ess, proposal=_Frozen(q)
            )
            print(_pocomc_row(f"{kind} | pocomc from it", r, -log_volume))
    if pocomc:
        r = run_pocomc(
            target.logpdf,
            log_prior,
            bounds,
            [False] * d,
            target_ess,
            prior_draw=lambda n: rng.uniform(-30, 30, size=(n, d)),
        )
        print(_pocomc_row("(none) | pocomc from the prior", r, -log_volume))


def injection_part(
    events, methods, config_path: Path, model: Path, psd: list[str], pocomc: bool = False
) -> None:

    from twinflow.core.settings import load_yaml
    from twinflow.gw.inference import posterior, refined_posterior
    from twinflow.gw.inference.stage import run_event
    from twinflow.gw.settings import inference_settings_for

    gw = load_yaml(config_path)["gw"]
    psd_map = dict(p.split("=", 1) for p in psd)
    print(
        "| event | method | network ESS | network efficiency | final ESS | evaluations | wall s "
        "| CPU s | ln BF |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for event in events:
        captured: dict = {}
        for method in methods:
            settings = inference_settings_for(gw, event)
            settings["refinement"] = {**settings.get("refinement", {}), "method": method}
            capture = _capturing(captured, posterior, refined_posterior)
            with tempfile.TemporaryDirectory() as out, capture:
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
                f"{refinement.get('n_likelihood_evaluations', 0)} | {wall:.0f} | {cpu:.0f} | "
                f"{summary['log_bayes_factor']:.2f} +- {summary['log_evidence_error']:.2f} |"
            )
            print(json.dumps({k: refinement.get(k) for k in ("warnings", "pareto_k")}))
        if pocomc and "log_likelihood" not in captured:
            print(f"| {event} | pocomc | the network's ESS met the target: nothing to refine |")
        elif pocomc:
            for label, r in _pocomc_on_event(captured).items():
                print(
                    f"| {event} | pocomc from {label} | | | {r['ess']:.0f} | {r['calls']} | "
                    f"{r['wall']:.0f} | {r['cpu']:.0f} | "
                    f"{r['log_evidence']:.2f} +- {r['log_evidence_error']:.2f} |"
                )


def _capturing(captured: dict, posterior, refined_posterior):
    """Patch the event's refinement so that its prior, start and callables land in ``captured``
    (the refinement itself still runs)."""
    from contextlib import ExitStack
    from unittest import mock

    real_event, real_refine = posterior.refine_event, refined_posterior.refine

    def refine_event(likelihood, prior, trigger_time, names, *args, marginalize, **kwargs):
        captured["prior"] = prior
        captured["names"] = [n for n in names if n != "phase" or not marginalize]
        return real_event(
            likelihood, prior, trigger_time, names, *args, marginalize=marginalize, **kwargs
        )

    def refine(x0, log_q, log_likelihood, log_prior, bounds, periodic, settings, rng, **kwargs):
        captured.update(
            x0=x0,
            log_q=log_q,
            log_likelihood=log_likelihood,
            log_prior=log_prior,
            bounds=bounds,
            periodic=periodic,
            settings=settings,
            log_l0=kwargs.get("initial_log_likelihood"),
        )
        return real_refine(
            x0, log_q, log_likelihood, log_prior, bounds, periodic, settings, rng, **kwargs
        )

    stack = ExitStack()
    stack.enter_context(mock.patch.object(posterior, "refine_event", refine_event))
    stack.enter_context(mock.patch.object(refined_posterior, "refine", refine))
    return stack


def _pocomc_on_event(c: dict) -> dict:
    """pocomc from the prior and from AMIS's first proposal, on one event's captured refinement."""
    from twinflow.gw.inference.refinement import Box, Proposal, _flattened, fit_mixture
    from twinflow.gw.validation import check_refinement_settings

    s = check_refinement_settings(c["settings"])
    names, prior, bounds, periodic = c["names"], c["prior"], c["bounds"], c["periodic"]
    with np.errstate(invalid="ignore"):
        log_w = c["log_l0"] + np.asarray(c["log_prior"](c["x0"]), float) - c["log_q"]
    log_w[~np.isfinite(log_w)] = -np.inf
    d = len(names)
    rng = np.random.default_rng(1)
    space = Box(bounds, periodic)
    mixture = fit_mixture(c["x0"], _flattened(log_w, 20 * (d + 1)), space, s["components"], rng)
    first = Proposal(mixture, s["defensive-fraction"])

    def prior_draw(n):
        draws = prior.sample(n)
        return np.column_stack([np.asarray(draws[k], float) for k in names])

    common = (c["log_likelihood"], c["log_prior"], bounds, periodic, s["target-ess"])
    return {
        "the prior": run_pocomc(*common, prior_draw=prior_draw),
        "AMIS's first proposal": run_pocomc(*common, proposal=first),
    }


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
    parser.add_argument("--pocomc", action="store_true", help="add pocomc (see the docstring)")
    parser.add_argument("--no-gaussian", action="store_true", help="skip part 1")
    args = parser.parse_args()
    if args.pocomc:
        try:
            import pocomc  # noqa: F401
        except ImportError:
            parser.error("--pocomc needs pocomc: pip install 'twinflow[bench]'")
    if not args.no_gaussian:
        gaussian_part(args.methods, args.target_ess, args.pocomc)
    if args.events:
        injection_part(args.events, args.methods, args.config, args.model, args.psd, args.pocomc)


if __name__ == "__main__":
    main()
