"""Refinement of a poor proposal with the exact likelihood, checked on problems with known answers.

References are independent of the code: the analytic evidence and moments of a Gaussian, and
scipy quadrature for a banana-shaped and a bounded, periodic target.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
from scipy.special import logsumexp

from twinflow.core.settings import ConfigError
from twinflow.gw.inference.refinement import kish_ess, refine

QUIET = {"log": lambda *a: None}


def box_prior(bounds):
    bounds = np.asarray(bounds, float)
    log_volume = float(np.sum(np.log(bounds[:, 1] - bounds[:, 0])))

    def log_prior(x):
        inside = np.all((x > bounds[:, 0]) & (x < bounds[:, 1]), 1)
        return np.where(inside, -log_volume, -np.inf)

    return log_prior, log_volume


def weighted_moments(result):
    w = result.weights
    mean = w @ result.samples
    return mean, np.cov(result.samples.T, aweights=w)


def check_honest(result):
    """The reported ESS is the returned weights' ESS; the target is claimed only when reached."""
    assert result.effective_sample_size == pytest.approx(kish_ess(result.log_weights), rel=1e-9)
    w = np.exp(result.log_weights - logsumexp(result.log_weights))
    assert result.effective_sample_size == pytest.approx(1 / np.sum(w**2), rel=1e-9)
    if result.reached_target:
        assert result.effective_sample_size >= result.target_ess
        assert not result.warnings
    else:
        assert result.warnings


# --------------------------------------------------------------------------------------------
# Correlated Gaussian in 8 dimensions, bounds far away: ln Z = offset - ln(prior volume)

D = 8
_rng = np.random.default_rng(5)
_A = _rng.normal(size=(D, D))
COV = _A @ _A.T / D + 0.5 * np.eye(D)
MEAN = _rng.normal(size=D)
BOUNDS = np.array([[-30.0, 30.0]] * D)
TARGET = scipy.stats.multivariate_normal(MEAN, COV)
OFFSET = 5.0


def refine_gaussian(mean, cov, settings):
    """Refine 3000 draws of N(mean, cov) towards the Gaussian target; return the result, the
    analytic ln Z and the number of likelihood calls made."""
    proposal = scipy.stats.multivariate_normal(mean, cov)
    x = proposal.rvs(3000, random_state=np.random.default_rng(0))
    log_prior, log_volume = box_prior(BOUNDS)
    calls = []

    def log_likelihood(y):
        calls.append(len(y))
        return TARGET.logpdf(y) + OFFSET

    result = refine(
        x,
        proposal.logpdf(x),
        log_likelihood,
        log_prior,
        BOUNDS,
        [False] * D,
        settings,
        np.random.default_rng(1),
        proposal_log_prob=proposal.logpdf,
        **QUIET,
    )
    return result, OFFSET - log_volume, sum(calls)


@pytest.mark.parametrize(
    "kind, method",
    [("shifted", "amis"), ("narrow", "amis"), ("wide", "amis"), ("shifted", "smc")],
)
def test_gaussian_from_a_poor_proposal(kind, method):
    sd = np.sqrt(np.diag(COV))
    mean, cov = {
        "shifted": (MEAN + 1.5 * sd, COV),  # the network's efficiency here is ~1 %
        "narrow": (MEAN, COV / 9),
        "wide": (MEAN, 9 * COV),
    }[kind]
    settings = {"method": method, "target-ess": 1500, "batch-size": 2000}
    if method == "smc":
        settings.update({"mcmc-steps": 2, "max-likelihood-evaluations": 60_000})
    result, truth, calls = refine_gaussian(mean, cov, settings)
    check_honest(result)
    assert result.reached_target
    assert result.n_likelihood_evaluations == calls  # the network's samples: 3000 more
    got_mean, got_cov = weighted_moments(result)
    assert np.max(np.abs(got_mean - MEAN) / np.sqrt(np.diag(COV))) < 0.1
    # each covariance element within 4.5 standard errors of a sample covariance of ESS draws
    # (36 elements: a chance failure has probability ~2e-4)
    se = np.sqrt((np.outer(np.diag(COV), np.diag(COV)) + COV**2) / result.effective_sample_size)
    assert np.max(np.abs(got_cov - COV) / se) < 4.5
    assert abs(result.log_evidence - truth) < 3 * result.log_evidence_error + 1e-3


# --------------------------------------------------------------------------------------------
# Two dimensions, evidence by quadrature


def banana_log_likelihood(y):
    a, b = y[:, 0], y[:, 1]
    return -0.5 * (a / 2) ** 2 - 0.5 * ((b - 0.5 * a**2 + 1) / 0.4) ** 2


def test_banana_evidence_against_quadrature():
    bounds = np.array([[-8.0, 8.0], [-6.0, 20.0]])
    log_prior, log_volume = box_prior(bounds)
    z, _ = scipy.integrate.dblquad(
        lambda b, a: math.exp(banana_log_likelihood(np.array([[a, b]]))[0]),
        -8,
        8,
        -6,
        20,
        epsabs=1e-10,
    )
    truth = math.log(z) - log_volume
    proposal = scipy.stats.multivariate_normal([0.5, 0.0], np.diag([0.5, 0.5]))  # far too narrow
    x = proposal.rvs(2000, random_state=np.random.default_rng(2))
    result = refine(
        x,
        proposal.logpdf(x),
        banana_log_likelihood,
        log_prior,
        bounds,
        [False, False],
        {"target-ess": 2000, "batch-size": 2000},
        np.random.default_rng(3),
        **QUIET,
    )
    check_honest(result)
    assert result.reached_target
    assert abs(result.log_evidence - truth) < 3 * result.log_evidence_error + 1e-3
    # the banana's mean: E[a] = 0, E[b] = E[a^2]/2 - 1 = 1 (the tails are inside the box)
    mean, _ = weighted_moments(result)
    assert mean[0] == pytest.approx(0.0, abs=0.1)
    assert mean[1] == pytest.approx(1.0, abs=0.1)


def test_bounded_and_periodic_against_quadrature():
    """A posterior piled against a bound, and one across the cut of a periodic parameter."""
    bounds = np.array([[0.0, 1.0], [0.0, math.pi]])

    def log_likelihood(y):  # a: mass near the lower bound; psi: von Mises across psi = 0 = pi
        return scipy.stats.beta(1.5, 8).logpdf(y[:, 0]) + 3 * np.cos(2 * (y[:, 1] - 0.1))

    log_prior, log_volume = box_prior(bounds)
    z_a = 1.0  # the beta density integrates to one on [0, 1]
    z_psi, _ = scipy.integrate.quad(lambda p: math.exp(3 * math.cos(2 * (p - 0.1))), 0, math.pi)
    truth = math.log(z_a * z_psi) - log_volume
    rng = np.random.default_rng(4)
    x = np.column_stack([rng.uniform(0.3, 0.7, 2000), rng.uniform(1.0, 2.0, 2000)])
    log_q = np.full(2000, -math.log(0.4))  # uniform on the box [0.3, 0.7] x [1, 2]
    result = refine(
        x,
        log_q,
        log_likelihood,
        log_prior,
        bounds,
        [False, True],
        {"target-ess": 2000, "batch-size": 2000},
        np.random.default_rng(5),
        **QUIET,
    )
    check_honest(result)
    assert result.reached_target
    assert abs(result.log_evidence - truth) < 3 * result.log_evidence_error + 1e-3
    weighted = result.samples[result.weights > 0]
    assert np.all((weighted >= bounds[:, 0]) & (weighted < bounds[:, 1]))
    # the beta(1.5, 8) mean 1.5 / 9.5; the circular mean of psi (period pi) is 0.1
    mean, _ = weighted_moments(result)
    assert mean[0] == pytest.approx(1.5 / 9.5, abs=0.01)
    w = result.weights
    circular = np.angle(np.sum(w * np.exp(2j * result.samples[:, 1]))) / 2
    assert circular == pytest.approx(0.1, abs=0.03)


def test_posterior_piled_into_a_corner_against_scipy():
    """A correlated Gaussian centred just outside a corner of the box: most of it is cut away.

    ln Z is the Gaussian's probability inside the box, from scipy's multivariate normal CDF.
    The mixtures draw beyond the bounds: those draws weigh zero and still count in ln Z.
    """
    mean = np.array([0.02, 0.97, 0.5, 0.5])
    sd = np.array([0.1, 0.05, 0.05, 0.05])
    cov = np.diag(sd**2)
    cov[0, 1] = cov[1, 0] = -0.8 * sd[0] * sd[1]
    target = scipy.stats.multivariate_normal(mean, cov)
    bounds = np.array([[0.0, 1.0]] * 4)
    log_prior, log_volume = box_prior(bounds)
    corner = scipy.stats.multivariate_normal(mean[:2], cov[:2, :2])
    # the other two dimensions lose 2 x 2.9e-7 of their mass beyond the bounds: negligible
    truth = math.log(corner.cdf([1.0, 1.0], lower_limit=[0.0, 0.0])) - log_volume
    start = scipy.stats.multivariate_normal([0.2, 0.85, 0.5, 0.5], 0.05**2)
    x = start.rvs(2000, random_state=np.random.default_rng(8))
    result = refine(
        x,
        start.logpdf(x),
        target.logpdf,
        log_prior,
        bounds,
        [False] * 4,
        {"target-ess": 2000, "batch-size": 2000},
        np.random.default_rng(9),
        **QUIET,
    )
    check_honest(result)
    assert result.reached_target
    assert abs(result.log_evidence - truth) < 3 * result.log_evidence_error
    # draws outside the box weigh zero, and ln Z is the mean weight over all draws
    outside = ~np.all((result.samples > bounds[:, 0]) & (result.samples < bounds[:, 1]), 1)
    assert outside.any() and np.all(result.weights[outside] == 0)
    mean_weight = logsumexp(result.log_weights) - math.log(len(result.log_weights))
    assert mean_weight == pytest.approx(result.log_evidence, abs=1e-9)


def test_a_missed_mode_is_found_or_reported():
    """The proposal covers one of two equal modes: the result is right, or it says it is not."""
    bounds = np.array([[-10.0, 10.0]] * 2)
    modes = np.array([[-4.0, 0.0], [4.0, 0.0]])

    def log_likelihood(y):
        parts = [scipy.stats.multivariate_normal(m, 0.25).logpdf(y) for m in modes]
        return np.logaddexp(*parts) - math.log(2)

    log_prior, log_volume = box_prior(bounds)
    proposal = scipy.stats.multivariate_normal(modes[1], 0.3)
    x = proposal.rvs(2000, random_state=np.random.default_rng(6))
    for budget in (8_000, 20_000):
        result = refine(
            x,
            proposal.logpdf(x),
            log_likelihood,
            log_prior,
            bounds,
            [False, False],
            {"target-ess": 3000, "batch-size": 2000, "max-likelihood-evaluations": budget},
            np.random.default_rng(7),
            **QUIET,
        )
        check_honest(result)
        left = float(np.sum(result.weights[result.samples[:, 0] < 0]))
        if result.reached_target:  # found: then both modes hold half, and ln Z is right
            assert left == pytest.approx(0.5, abs=0.05)
            assert abs(result.log_evidence + log_volume) < 3 * result.log_evidence_error + 1e-3
        else:
            assert any("effective sample size" in w or "Pareto" in w for w in result.warnings)


def test_heavy_tailed_weights_do_not_end_the_refinement_while_budget_remains():
    """A wide tail the proposal misses: the ESS target is met early, the weights' Pareto k is not.

    The posterior is 0.8 N(0, 1) + 0.2 N(0, 16) per pair of coordinates; the proposal is the
    core alone. The first refit already gives an ESS far above the target, but a few draws far
    out carry most of the missing mass: stopping there would return a result its own diagnostic
    rejects. The refinement goes on to the budget, and the result says why it is not reliable.
    """
    bounds = np.array([[-30.0, 30.0]] * 2)
    core = scipy.stats.multivariate_normal(np.zeros(2), np.eye(2))
    wide = scipy.stats.multivariate_normal(np.zeros(2), 16 * np.eye(2))

    def log_likelihood(y):
        return np.logaddexp(math.log(0.8) + core.logpdf(y), math.log(0.2) + wide.logpdf(y))

    log_prior, _ = box_prior(bounds)
    x = core.rvs(2000, random_state=np.random.default_rng(0))
    budget, batch = 10_000, 1000
    result = refine(
        x,
        core.logpdf(x),
        log_likelihood,
        log_prior,
        bounds,
        [False, False],
        {"target-ess": 500, "batch-size": batch, "max-likelihood-evaluations": budget},
        np.random.default_rng(10),
        **QUIET,
    )
    check_honest(result)
    assert result.effective_sample_size > 500
    assert result.diagnostics["pareto_k"] > 0.7
    assert not result.reached_target
    assert any("Pareto" in w for w in result.warnings)
    assert result.n_likelihood_evaluations > budget - batch


# --------------------------------------------------------------------------------------------
# Bad settings: one-line errors naming key and value, before any likelihood call


@pytest.mark.parametrize(
    "settings, key",
    [
        ({"target-ess": 5000, "max-likelihood-evaluations": 1000}, "refinement.target-ess"),
        ({"mcmc-steps": 0}, "refinement.mcmc-steps"),
        ({"max-iterations": -2}, "refinement.max-iterations"),
        ({"method": "nested"}, "refinement.method"),
        ({"defensive-fraction": 1.0}, "refinement.defensive-fraction"),
        ({"exploration-fraction": -0.1}, "refinement.exploration-fraction"),
        ({"reference-frame": "H1L1"}, "refinement.reference-frame"),
        ({"target-ess": 10.5}, "refinement.target-ess"),
        ({"stepz": 3}, "refinement"),
    ],
)
def test_bad_settings_fail_before_any_likelihood_call(settings, key):
    def log_likelihood(y):
        raise AssertionError("the likelihood was called")

    x = np.zeros((10, 2))
    with pytest.raises(ConfigError) as err:
        refine(
            x,
            np.zeros(10),
            log_likelihood,
            lambda y: np.zeros(len(y)),
            [[-1, 1]] * 2,
            [False] * 2,
            settings,
            np.random.default_rng(0),
            **QUIET,
        )
    message = str(err.value)
    assert "\n" not in message
    assert key in message
    value = next(iter(settings.values())) if key != "refinement" else "stepz"
    assert str(value) in message


# --------------------------------------------------------------------------------------------
# Symmetries: a posterior with identical copies, and the folded proposal's density


def test_folded_proposal_is_a_normalised_density_of_its_draws():
    """The spread proposal integrates to one over the whole box, and its draws follow it."""
    from twinflow.gw.inference.refinement import (
        Box,
        FoldedProposal,
        Folding,
        Proposal,
        fit_mixture,
    )

    space = Box(np.array([[-1.0, 1.0], [0.0, math.pi]]), [False, True])
    folding = Folding(space, [None, math.pi / 2])
    rng = np.random.default_rng(3)
    x = np.column_stack([rng.normal(0.2, 0.2, 3000).clip(-0.99, 0.99), rng.normal(1.2, 0.2, 3000)])
    mixture = fit_mixture(folding.fold(x), np.zeros(3000), folding.folded_space, 3, rng)
    proposal = FoldedProposal(Proposal(mixture, 0.1), folding)
    # the mixtures are not cut at the bounds of a (the prior is zero beyond them): integrate a
    # over far enough that the widened share's tails hold nothing, with the box's edges on the
    # grid (the uniform share steps there)
    a = np.concatenate(
        [np.linspace(-6, -1, 1001), np.linspace(-1, 1, 801)[1:], np.linspace(1, 6, 1001)[1:]]
    )
    psi = np.linspace(0, math.pi, 601)
    grid = np.stack(np.meshgrid(a, psi, indexing="ij"), -1).reshape(-1, 2)
    density = np.exp(proposal.log_prob(grid)).reshape(len(a), len(psi))
    total = scipy.integrate.trapezoid(scipy.integrate.simpson(density, x=psi), x=a)
    assert total == pytest.approx(1.0, abs=2e-3)
    draws = proposal.sample(20000, np.random.default_rng(4))
    assert np.all((draws[:, 1] >= 0) & (draws[:, 1] < math.pi))  # wrapped on the circle
    assert 0 < np.mean(~space.inside(draws)) < 0.05  # beyond a's bounds: the tails, no more
    # E_q[u / q] = 1 for the uniform density u on the box: holds only if draws and log_prob agree
    ratio = np.where(
        space.inside(draws), np.exp(-math.log(2 * math.pi) - proposal.log_prob(draws)), 0.0
    )
    assert ratio.mean() == pytest.approx(1.0, abs=4 * ratio.std() / math.sqrt(len(ratio)))
    upper = np.mean(draws[:, 1] >= math.pi / 2)
    assert upper == pytest.approx(0.5, abs=4 * math.sqrt(0.25 / len(draws)))


def test_symmetric_posterior_with_folding_against_quadrature():
    """Two identical narrow copies pi/2 apart, a proposal on one: both get half, ln Z is right."""
    bounds = np.array([[0.0, 1.0], [0.0, math.pi]])
    kappa = 40.0

    def log_likelihood(y):  # period pi/2 in psi: copies at 0.3 and 0.3 + pi/2
        return scipy.stats.norm(0.4, 0.08).logpdf(y[:, 0]) + kappa * np.cos(4 * (y[:, 1] - 0.3))

    log_prior, log_volume = box_prior(bounds)
    z_psi, _ = scipy.integrate.quad(
        lambda p: math.exp(kappa * math.cos(4 * (p - 0.3))), 0, math.pi, points=[0.3, 1.87]
    )
    z_a = scipy.stats.norm(0.4, 0.08).cdf(1) - scipy.stats.norm(0.4, 0.08).cdf(0)
    truth = math.log(z_a * z_psi) - log_volume
    rng = np.random.default_rng(8)
    x = np.column_stack([rng.uniform(0.1, 0.7, 2000), rng.uniform(0.15, 0.45, 2000)])
    log_q = np.full(2000, -math.log(0.6 * 0.3))  # uniform on one copy only
    result = refine(
        x,
        log_q,
        log_likelihood,
        log_prior,
        bounds,
        [False, True],
        {"target-ess": 2000, "batch-size": 2000, "max-likelihood-evaluations": 40000},
        np.random.default_rng(9),
        symmetry_periods=[None, math.pi / 2],
        **QUIET,
    )
    check_honest(result)
    assert result.reached_target
    assert abs(result.log_evidence - truth) < 3 * result.log_evidence_error + 1e-3
    upper = float(np.sum(result.weights[result.samples[:, 1] >= math.pi / 2]))
    assert upper == pytest.approx(0.5, abs=0.05)
    mean, _ = weighted_moments(result)
    assert mean[0] == pytest.approx(0.4, abs=0.01)


@pytest.mark.parametrize("method", ["amis", "smc"])
@pytest.mark.parametrize(
    "periods",
    [[None, 1.0], [0.5, None], [None, math.pi], [None]],
)
def test_bad_symmetry_periods_fail_before_any_likelihood_call(periods, method):
    """A period must divide a periodic dimension's width into two or more copies."""

    def never(y):
        raise AssertionError("the likelihood must not be called")

    bounds = np.array([[0.0, 1.0], [0.0, math.pi]])
    log_prior, _ = box_prior(bounds)
    x = np.column_stack([np.full(10, 0.5), np.full(10, 1.0)])
    with pytest.raises(ConfigError, match="symmetry_periods"):
        refine(
            x,
            np.zeros(10),
            never,
            log_prior,
            bounds,
            [False, True],
            {"target-ess": 100, "method": method},
            np.random.default_rng(0),
            symmetry_periods=periods,
            initial_log_likelihood=np.zeros(10),
            **QUIET,
        )


def test_evidence_drift_is_flagged_only_when_there_is_one():
    """Later batches that see more posterior mass are told apart from batches of one proposal."""
    from twinflow.gw.inference.refinement import DRIFT_SIGMA, evidence_drift

    rng = np.random.default_rng(11)
    batch = np.repeat(np.arange(8), 2000)
    false_alarms = 0
    for _ in range(200):  # weights of one fixed proposal: ln Z agrees between the halves
        log_w = rng.normal(0.0, 1.0, batch.size)
        z1, e1, z2, e2 = evidence_drift(log_w, batch)
        false_alarms += abs(z2 - z1) > DRIFT_SIGMA * math.hypot(e1, e2)
    assert false_alarms <= 2
    # the later batches find 30 % more mass (ln Z up by 0.26): flagged
    log_w = rng.normal(0.0, 1.0, batch.size) + np.where(batch >= 4, math.log(1.3), 0.0)
    z1, e1, z2, e2 = evidence_drift(log_w, batch)
    assert z2 - z1 == pytest.approx(math.log(1.3), abs=4 * math.hypot(e1, e2))
    assert z2 - z1 > DRIFT_SIGMA * math.hypot(e1, e2)


# --------------------------------------------------------------------------------------------
# Independent runs, pooled


def test_independent_runs_pool_into_exact_weights():
    settings = {"target-ess": 1500, "batch-size": 2000, "independent-runs": 2}
    result, truth, calls = refine_gaussian(MEAN + np.sqrt(np.diag(COV)), COV, settings)
    check_honest(result)
    runs = result.diagnostics["independent_runs"]
    assert len(runs) == 2
    assert result.n_likelihood_evaluations == calls  # the network's samples: 3000 more
    assert result.n_likelihood_evaluations <= 200_000
    # each run had half the budget and half the target; the pool is judged on the whole target
    assert all(r["n_likelihood_evaluations"] <= 100_000 for r in runs)
    assert result.effective_sample_size >= 1500 and result.reached_target
    assert len(result.samples) == len(result.log_weights) == len(result.log_prior)
    # the pooled ln Z (the mean of every weight of both runs) matches the analytic value
    assert abs(result.log_evidence - truth) < 3 * result.log_evidence_error + 1e-3
    for r in runs:
        assert abs(r["log_evidence"] - truth) < 4 * r["log_evidence_error"] + 1e-3


def test_runs_that_disagree_make_the_pool_unreliable():
    """Two runs whose ln Z differ beyond their errors: one missed mass the other found."""
    from twinflow.gw.inference.refinement import RefinementResult, _pooled
    from twinflow.gw.validation import check_refinement_settings

    rng = np.random.default_rng(3)

    def run(log_w):
        z = float(logsumexp(log_w) - np.log(len(log_w)))
        w = np.exp(log_w - logsumexp(log_w))
        error = float(np.sqrt(np.sum(w**2)))  # about the relative error of Z
        n = len(log_w)
        return RefinementResult(
            samples=rng.normal(size=(n, 2)),
            log_weights=log_w,
            log_proposal=np.zeros(n),
            log_likelihood=log_w,
            log_prior=np.zeros(n),
            effective_sample_size=kish_ess(log_w),
            sampling_efficiency=kish_ess(log_w) / n,
            log_evidence=z,
            log_evidence_error=error,
            n_likelihood_evaluations=n,
            wall_time=0.0,
            method="amis",
            target_ess=500,
            reached_target=True,
            warnings=[],
            diagnostics={"pareto_k": 0.0},
            search_warnings=["ln Z moved"],
        )

    s = check_refinement_settings({"target-ess": 1000, "independent-runs": 2})
    flat = rng.normal(0, 0.1, 4000)
    agree = _pooled([run(flat[:2000]), run(flat[2000:])], s, 0.0)
    all_w = np.concatenate([flat[:2000], flat[2000:]])
    assert agree.log_evidence == pytest.approx(logsumexp(all_w) - np.log(4000), abs=1e-12)
    assert agree.effective_sample_size == pytest.approx(kish_ess(all_w), rel=1e-12)
    assert not any("disagree" in w for w in agree.warnings)
    assert agree.warnings == ["run 1: ln Z moved", "run 2: ln Z moved"]
    assert not agree.reached_target  # the runs' own search warnings carry over
    # the second run found only half the mass (ln 2 = 0.69 lower: a missed mode)
    missed = _pooled([run(flat[:2000]), run(flat[2000:] - np.log(2))], s, 0.0)
    assert any("runs 1 and 2 disagree" in w for w in missed.warnings)
    assert not missed.reached_target


# --------------------------------------------------------------------------------------------
# Exploration: a mode along an undecided direction, mirrored in another


def test_exploration_share_is_a_normalised_density_of_its_draws():
    """The exploration share integrates to one, and its draws follow its density."""
    from twinflow.gw.inference.refinement import Box, Exploration, Proposal, fit_mixture

    # a (mirrored about pi/2), azimuth (periodic, redrawn uniformly), psi (periodic, kept)
    space = Box(
        np.array([[0.0, math.pi], [0.0, 2 * math.pi], [0.0, math.pi]]), [False, True, True]
    )
    rng = np.random.default_rng(11)
    x = np.column_stack(
        [rng.normal(0.7, 0.15, 3000), rng.normal(1.0, 0.3, 3000), rng.normal(0.2, 0.3, 3000)]
    )
    mixture = fit_mixture(space.wrap(x), np.zeros(3000), space, 3, rng)
    explorer = Proposal(mixture, 0.0, Exploration(uniform=(1,), reflect=(0,)), 0.999999)
    # its density is uniform in the azimuth: integrate (a, psi) at one azimuth, times 2 pi; a's
    # Gaussian tails reach beyond the box (the prior is zero there), so integrate beyond it
    a = np.linspace(-2.5, math.pi + 2.5, 801)
    psi = np.linspace(0, math.pi, 201)
    grid = np.stack(np.meshgrid(a, psi, indexing="ij"), -1).reshape(-1, 2)
    grid = np.column_stack([grid[:, 0], np.full(len(grid), 4.0), grid[:, 1]])
    density = 2 * math.pi * np.exp(explorer.log_prob(grid)).reshape(len(a), len(psi))
    assert scipy.integrate.simpson(scipy.integrate.simpson(density, x=psi), x=a) == pytest.approx(
        1.0, abs=2e-3
    )
    # the draws' frequencies of three regions against the density's integrals over them
    draws = explorer.sample(40000, np.random.default_rng(12))
    n = len(draws)
    assert np.mean(draws[:, 1] < 1.0) == pytest.approx(1 / (2 * math.pi), abs=4 * 0.4 / n**0.5)
    for column, axis, cut in ((0, a, 0.6), (2, psi, 0.5)):
        inside = np.where(axis < cut, 1.0, 0.0)
        share = density * (inside[:, None] if column == 0 else inside[None, :])
        expected = scipy.integrate.trapezoid(scipy.integrate.trapezoid(share, x=psi), x=a)
        assert 0.05 < expected < 0.95
        tolerance = 4 * math.sqrt(expected * (1 - expected) / n) + 2e-3
        assert np.mean(draws[:, column] < cut) == pytest.approx(expected, abs=tolerance)


def mirrored_modes_problem():
    """Two equal, narrow modes: (a, azimuth) = (0.8, 1.5) and (pi - 0.8, 4.5), the same in four
    more dimensions; the proposal's draws cover the first only. Returns what ``refine`` needs
    and the analytic ln Z (both modes lie well inside the box)."""
    bounds = np.array([[0.0, math.pi], [0.0, 2 * math.pi]] + [[-3.0, 3.0]] * 4)
    periodic = [False, True] + [False] * 4
    scale = np.array([0.08, 0.25, 0.05, 0.05, 0.05, 0.05])
    modes = [
        scipy.stats.multivariate_normal(np.array([0.8, 1.5, 0, 0, 0, 0]), np.diag(scale**2)),
        scipy.stats.multivariate_normal(
            np.array([math.pi - 0.8, 4.5, 0, 0, 0, 0]), np.diag(scale**2)
        ),
    ]

    def log_likelihood(y):
        return np.logaddexp(*(m.logpdf(y) for m in modes)) - math.log(2)

    log_prior, log_volume = box_prior(bounds)
    start = scipy.stats.multivariate_normal(modes[0].mean, np.diag((1.5 * scale) ** 2))
    x = start.rvs(3000, random_state=np.random.default_rng(13))
    return (x, start.logpdf(x), log_likelihood, log_prior, bounds, periodic), -log_volume


@pytest.mark.parametrize("fraction", [0.0, 0.1])
def test_exploration_finds_a_mirrored_mode_elsewhere_on_the_circle(fraction):
    """Without exploration the second mode is never drawn (the test's control); with it, it is
    found: each mode holds half the weight and ln Z is the analytic one."""
    from twinflow.gw.inference.refinement import Exploration

    arguments, truth = mirrored_modes_problem()
    result = refine(
        *arguments,
        {
            "target-ess": 2000,
            "batch-size": 3000,
            "max-likelihood-evaluations": 60000,
            "exploration-fraction": fraction,
        },
        np.random.default_rng(14),
        exploration=Exploration(uniform=(1,), reflect=(0,)),
        **QUIET,
    )
    check_honest(result)
    mirrored = float(np.sum(result.weights[result.samples[:, 0] > math.pi / 2]))
    if fraction == 0:
        assert mirrored < 0.01
        assert result.log_evidence < truth - 0.5  # half the evidence missed
    else:
        assert result.reached_target
        assert mirrored == pytest.approx(0.5, abs=0.05)
        assert abs(result.log_evidence - truth) < 3 * result.log_evidence_error + 1e-3


def test_exploration_of_a_dimension_without_bounds_fails_before_any_likelihood_call():
    from twinflow.gw.inference.refinement import Exploration

    def log_likelihood(y):
        raise AssertionError("the likelihood was called")

    with pytest.raises(ConfigError, match="exploration.*finite bounds"):
        refine(
            np.zeros((10, 2)),
            np.zeros(10),
            log_likelihood,
            lambda y: np.zeros(len(y)),
            [[-1, 1], [-np.inf, np.inf]],
            [False] * 2,
            {},
            np.random.default_rng(0),
            exploration=Exploration(uniform=(1,)),
            **QUIET,
        )


# --------------------------------------------------------------------------------------------
# The defensive share drawn from the prior


def beta_prior(dim: int):
    """A prior of independent Beta(2, 6) on [0, 1]: its sampler and normalised ln density."""
    beta = scipy.stats.beta(2, 6)

    def sample(n, rng):
        return rng.beta(2, 6, size=(n, dim))

    def log_prior(x):
        inside = np.all((x > 0) & (x < 1), 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.sum(beta.logpdf(np.clip(x, 1e-300, 1 - 1e-16)), 1)
        return np.where(inside, out, -np.inf)

    return sample, log_prior


def test_prior_share_is_a_normalised_density_of_its_draws():
    from twinflow.gw.inference.refinement import Box, PriorShare, Proposal, fit_mixture

    sample, log_prior = beta_prior(2)
    space = Box(np.array([[0.0, 1.0]] * 2), [False, False])
    rng = np.random.default_rng(15)
    mixture = fit_mixture(rng.normal(0.6, 0.05, (2000, 2)), np.zeros(2000), space, 2, rng)
    proposal = PriorShare(Proposal(mixture, 0.0), 0.3, sample, log_prior)
    a = np.linspace(-0.5, 1.5, 801)
    grid = np.stack(np.meshgrid(a, a, indexing="ij"), -1).reshape(-1, 2)
    density = np.exp(proposal.log_prob(grid)).reshape(len(a), len(a))
    total = scipy.integrate.trapezoid(scipy.integrate.trapezoid(density, x=a), x=a)
    assert total == pytest.approx(1.0, abs=3e-3)
    draws = proposal.sample(40000, np.random.default_rng(16))
    # E_q[pi / q] = 1: the prior's draws and its density in log_prob agree
    ratio = np.exp(log_prior(draws) - proposal.log_prob(draws))
    assert ratio.max() <= 1 / 0.3 + 1e-9  # every weight bounded by L / share
    assert ratio.mean() == pytest.approx(1.0, abs=4 * ratio.std() / math.sqrt(len(ratio)))


def test_a_posterior_close_to_its_prior_against_quadrature():
    """A weak likelihood under a skewed prior in 6 dimensions, from a proposal much too narrow:
    with the defensive share drawn from the prior the target is reached and ln Z is right."""
    dim = 6
    sample, log_prior = beta_prior(dim)
    width = 0.4

    def log_likelihood(y):
        return -0.5 * np.sum(((y - 0.45) / width) ** 2, 1)

    one, _ = scipy.integrate.quad(
        lambda t: scipy.stats.beta(2, 6).pdf(t) * math.exp(-0.5 * ((t - 0.45) / width) ** 2), 0, 1
    )
    truth = dim * math.log(one)
    start = scipy.stats.multivariate_normal(np.full(dim, 0.3), 0.05**2 * np.eye(dim))
    x = start.rvs(3000, random_state=np.random.default_rng(17))
    result = refine(
        x,
        start.logpdf(x),
        log_likelihood,
        log_prior,
        np.array([[0.0, 1.0]] * dim),
        [False] * dim,
        {"target-ess": 2000, "batch-size": 3000, "max-likelihood-evaluations": 60000},
        np.random.default_rng(18),
        prior_sample=sample,
        **QUIET,
    )
    check_honest(result)
    assert result.reached_target
    assert abs(result.log_evidence - truth) < 3 * result.log_evidence_error + 1e-3
