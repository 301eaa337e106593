"""Importance-sampling statistics on hand-made weights and on a toy with a known posterior."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from twinflow.gw.inference.importance import (
    effective_sample_size,
    importance_sample,
    log_evidence,
    log_weights,
    resample,
    weighted_quantile,
)


@pytest.mark.parametrize(
    "weights",
    [
        [1.0, 1.0, 1.0, 1.0],
        [1.0, 0.0, 0.0, 0.0],
        [3.0, 1.0],
        [0.2, 0.5, 0.1, 0.9, 0.05, 0.0, 0.3],
    ],
)
def test_statistics_equal_the_standard_formulas(weights):
    w = np.asarray(weights)
    n = w.size
    ess = w.sum() ** 2 / np.sum(w**2)
    # the standard error of the sample mean of w, relative to the mean (population std)
    error = np.std(w) / np.sqrt(n) / np.mean(w)
    for offset in (0.0, 5000.0, -5000.0):  # ln L of thousands must not overflow
        with np.errstate(divide="ignore"):
            log_w = np.log(w) + offset
        result = importance_sample(log_w, np.zeros(n), np.zeros(n))
        assert result.effective_sample_size == pytest.approx(ess, rel=1e-12)
        assert result.sampling_efficiency == pytest.approx(ess / n, rel=1e-12)
        assert result.log_evidence == pytest.approx(
            np.log(np.mean(w)) + offset, rel=1e-12, abs=1e-12
        )
        assert result.log_evidence_error == pytest.approx(error, rel=1e-9, abs=1e-12)
        assert result.weights.sum() == pytest.approx(1.0)


def test_zero_prior_and_failed_likelihood_give_zero_weight():
    log_w = log_weights(
        [1.0, -np.inf, 2.0, 0.5], [0.0, 0.0, -np.inf, 0.0], [0.1, 0.2, 0.3, np.inf]
    )
    assert np.isfinite(log_w[0]) and np.all(np.isneginf(log_w[1:]))
    assert effective_sample_size(np.exp(log_w)) == pytest.approx(1.0)
    assert log_evidence(np.full(3, -np.inf)) == (-np.inf, np.inf)


def test_toy_posterior_from_a_wrong_proposal():
    """Gaussian prior x Gaussian likelihood: posterior and evidence are known in closed form.

    The proposal is deliberately wrong: a Student-t (5 dof) shifted by half a posterior width
    and 1.6 times too broad. The weighted mean and variance must recover the truth, and the
    log evidence the analytic value within its reported error.
    """
    rng = np.random.default_rng(42)
    prior_sigma, noise_sigma, x = 2.0, 0.5, np.array([1.3, -0.7])
    post_var = 1 / (1 / prior_sigma**2 + 1 / noise_sigma**2)
    post_mean = post_var * x / noise_sigma**2
    true_log_z = scipy.stats.norm(0, np.sqrt(prior_sigma**2 + noise_sigma**2)).logpdf(x).sum()

    proposal = scipy.stats.t(
        df=5, loc=post_mean + 0.5 * np.sqrt(post_var), scale=1.6 * np.sqrt(post_var)
    )
    n = 40000
    theta = proposal.rvs(size=(n, 2), random_state=rng)
    log_q = proposal.logpdf(theta).sum(axis=1)
    log_prior = scipy.stats.norm(0, prior_sigma).logpdf(theta).sum(axis=1)
    log_l = scipy.stats.norm(theta, noise_sigma).logpdf(x).sum(axis=1)

    result = importance_sample(log_l, log_prior, log_q)
    w = result.weights
    mean = w @ theta
    var = w @ (theta - mean) ** 2
    assert 0.2 < result.sampling_efficiency < 0.95
    np.testing.assert_allclose(
        mean, post_mean, atol=4 * np.sqrt(post_var / result.effective_sample_size)
    )
    np.testing.assert_allclose(var, post_var, rtol=0.05)
    assert abs(result.log_evidence - true_log_z) < 4 * result.log_evidence_error
    # the proposal really is wrong: its own mean is off by half a posterior width
    assert np.all(np.abs(theta.mean(axis=0) - post_mean) > 0.3 * np.sqrt(post_var))

    # the reported error is the real scatter of ln Z over independent runs
    estimates, errors = [], []
    for _ in range(40):
        theta = proposal.rvs(size=(500, 2), random_state=rng)
        r = importance_sample(
            scipy.stats.norm(theta, noise_sigma).logpdf(x).sum(axis=1),
            scipy.stats.norm(0, prior_sigma).logpdf(theta).sum(axis=1),
            proposal.logpdf(theta).sum(axis=1),
        )
        estimates.append(r.log_evidence)
        errors.append(r.log_evidence_error)
    assert np.std(estimates) == pytest.approx(np.mean(errors), rel=0.35)
    assert abs(np.mean(estimates) - true_log_z) < 3 * np.mean(errors) / np.sqrt(40) + 0.01


def test_weighted_quantile_and_resample_against_scipy():
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, 200000)
    w = scipy.stats.norm.pdf(x)  # uniform proposal reweighted to a standard normal
    for p in (0.05, 0.5, 0.9):
        assert weighted_quantile(x, p, w) == pytest.approx(scipy.stats.norm.ppf(p), abs=0.02)
    keep = resample(w / w.sum(), rng)
    assert scipy.stats.kstest(x[keep], scipy.stats.truncnorm(-3, 3).cdf).pvalue > 0.01
