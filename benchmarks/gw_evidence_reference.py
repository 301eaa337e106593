"""A third ln Z for a peer-checked event, when ours and dynesty's disagree.

Importance sampling with bilby's likelihood (the one dynesty ran on) and a proposal fitted to
dynesty's own posterior samples: a Gaussian mixture (scikit-learn), mixed with a copy of itself
whose covariances are four times wider so that the weights keep a finite variance where the
fit is too narrow. The proposal shares nothing with our inference (neither the network nor the
refinement's mixtures), and the estimator shares nothing with nested sampling's volume
estimate, so it can tell which of the two ln Z is off. Draws outside the prior's bounds weigh
zero and still count in the mean.

Usage: python benchmarks/gw_evidence_reference.py results/gw/peer/events/injection-1/dynesty_result.json \
           --psd H1=results/gw/psd/H1.h5 L1=results/gw/psd/L1.h5 [--draws 20000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture


def log_mixture_density(x: np.ndarray, weights, means, covariances) -> np.ndarray:
    """Return ln q(x) of a Gaussian mixture (full covariances) at the rows of x."""
    from scipy.stats import multivariate_normal

    terms = [
        np.log(w) + multivariate_normal(m, c, allow_singular=False).logpdf(x)
        for w, m, c in zip(weights, means, covariances, strict=True)
    ]
    return logsumexp(np.stack(terms), axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dynesty_result", help="a gw_peer dynesty_result.json")
    parser.add_argument("--psd", nargs="+", required=True, help="DET=path of each PSD bank")
    parser.add_argument("--draws", type=int, default=20_000)
    parser.add_argument("--components", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    import bilby
    from tqdm import tqdm

    from twinflow.gw.inference.importance import (
        effective_sample_size,
        log_evidence,
        normalized_weights,
    )
    from twinflow.gw.inference.peer import bilby_priors, marginalizes_phase, peer_likelihood
    from twinflow.gw.inference.stage import load_event
    from twinflow.gw.prior import build_prior

    result = bilby.core.result.read_in_result(args.dynesty_result)
    settings = result.meta_data["twinflow"]["settings"]
    psd_paths = dict(item.split("=", 1) for item in args.psd)
    prior = build_prior(settings["prior"], "dataset.prior")
    marginalize = marginalizes_phase(prior, settings)
    event = load_event(settings, psd_paths, log=lambda *_: None)
    priors = bilby_priors(prior, event.trigger_time)
    likelihood = peer_likelihood(event, priors, settings, marginalize)
    names = [
        k
        for k, p in priors.items()
        if not isinstance(p, bilby.core.prior.DeltaFunction | bilby.core.prior.Constraint)
        and not (marginalize and k == "phase")
    ]
    fixed = {k: p.peak for k, p in priors.items() if isinstance(p, bilby.core.prior.DeltaFunction)}
    if marginalize:
        fixed["phase"] = 0.0  # a placeholder bilby expects; its likelihood marginalises it

    samples = np.column_stack([result.posterior[k].to_numpy() for k in names])
    gmm = GaussianMixture(args.components, covariance_type="full", random_state=args.seed)
    gmm.fit(samples)
    weights = np.concatenate([0.8 * gmm.weights_, 0.2 * gmm.weights_])
    means = np.concatenate([gmm.means_, gmm.means_])
    covariances = np.concatenate([gmm.covariances_, 4.0 * gmm.covariances_])

    rng = np.random.default_rng(args.seed)
    component = rng.choice(len(weights), size=args.draws, p=weights)
    x = np.empty((args.draws, len(names)))
    for c in range(len(weights)):
        rows = component == c
        x[rows] = rng.multivariate_normal(means[c], covariances[c], size=int(rows.sum()))
    log_q = log_mixture_density(x, weights, means, covariances)

    log_prior = np.zeros(args.draws)
    for i, k in enumerate(names):
        log_prior += priors[k].ln_prob(x[:, i])
    log_w = np.full(args.draws, -np.inf)
    inside = np.isfinite(log_prior)
    for row in tqdm(np.flatnonzero(inside), desc="bilby likelihood", unit="draw"):
        likelihood.parameters.update(fixed)
        likelihood.parameters.update(dict(zip(names, x[row], strict=True)))
        log_w[row] = likelihood.log_likelihood_ratio() + log_prior[row] - log_q[row]

    log_z, error = log_evidence(log_w)
    ess = effective_sample_size(normalized_weights(log_w))
    out = {
        "event": settings["event"],
        "parameters": names,
        "draws": args.draws,
        "inside_prior": int(inside.sum()),
        "effective_sample_size": float(ess),
        "log_bayes_factor": float(log_z),
        "log_bayes_factor_error": float(error),
        "dynesty": [float(result.log_bayes_factor), float(result.log_evidence_err)],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
