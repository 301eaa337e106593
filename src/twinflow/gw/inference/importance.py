"""Importance sampling: weights, effective sample size, sampling efficiency and the evidence.

Samples ``theta_i ~ q(theta | d)`` from the posterior model get weights
``w_i = L(d | theta_i) pi(theta_i) / q(theta_i | d)``. Then (e.g. Dingo, arXiv:2210.05686, and
Kish's effective sample size):

- ``ESS = (sum w)^2 / sum w^2``, sampling efficiency ``epsilon = ESS / N``;
- ``Z ~ mean(w)``, so ``ln Z = logsumexp(ln w) - ln N``;
- the standard error of ``ln Z`` is the relative standard error of that mean,
  ``sigma_lnZ = sqrt(Var(w) / (N mean(w)^2)) = sqrt((N - ESS) / (N ESS))``.

Everything is computed from log-weights (a log-sum-exp shift), since ln L reaches thousands.
Samples with zero prior density or a failed likelihood get weight 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import logsumexp


def log_weights(
    log_likelihood: np.ndarray, log_prior: np.ndarray, log_q: np.ndarray
) -> np.ndarray:
    """Return the unnormalised log-weights ``ln L + ln pi - ln q`` (-inf where the prior or L is 0)."""
    log_likelihood, log_prior, log_q = (
        np.asarray(x, dtype=float) for x in (log_likelihood, log_prior, log_q)
    )
    with np.errstate(invalid="ignore"):
        log_w = log_likelihood + log_prior - log_q
    log_w[~np.isfinite(log_prior) | ~np.isfinite(log_likelihood)] = -np.inf
    if np.any(np.isnan(log_w) | (log_w == np.inf)):
        raise ValueError("log-weights are NaN or +inf: check log q and the likelihood")
    return log_w


def normalized_weights(log_w: np.ndarray) -> np.ndarray:
    """Return weights that sum to one, from log-weights."""
    log_w = np.asarray(log_w, dtype=float)
    if not np.any(np.isfinite(log_w)):
        return np.zeros_like(log_w)
    return np.exp(log_w - logsumexp(log_w))


def effective_sample_size(weights: np.ndarray) -> float:
    """Return Kish's effective sample size ``(sum w)^2 / sum w^2`` (any normalisation of w)."""
    w = np.asarray(weights, dtype=float)
    total = w.sum()
    if total <= 0:
        return 0.0
    w = w / total  # rescale first: sum(w^2) of raw likelihood weights can overflow
    return float(1.0 / np.sum(w**2))


def log_evidence(log_w: np.ndarray) -> tuple[float, float]:
    """Return (ln Z, its standard error) from the log-weights of N samples."""
    log_w = np.asarray(log_w, dtype=float)
    n = log_w.size
    if not np.any(np.isfinite(log_w)):
        return -np.inf, np.inf
    log_z = float(logsumexp(log_w) - np.log(n))
    ess = effective_sample_size(normalized_weights(log_w))
    return log_z, float(np.sqrt(max(n - ess, 0.0) / (n * ess)))


@dataclasses.dataclass
class ImportanceResult:
    """Weights and summary statistics of one importance-sampled posterior."""

    log_weights: np.ndarray  # [N], unnormalised
    weights: np.ndarray  # [N], normalised to sum 1
    effective_sample_size: float
    sampling_efficiency: float  # ESS / N
    log_evidence: float
    log_evidence_error: float

    @property
    def n_samples(self) -> int:
        return len(self.weights)

    def summary(self) -> dict:
        return {
            "n_samples": self.n_samples,
            "effective_sample_size": self.effective_sample_size,
            "sampling_efficiency": self.sampling_efficiency,
            "log_evidence": self.log_evidence,
            "log_evidence_error": self.log_evidence_error,
        }


def importance_sample(
    log_likelihood: np.ndarray, log_prior: np.ndarray, log_q: np.ndarray
) -> ImportanceResult:
    """Return the importance weights and their statistics for samples drawn from q."""
    log_w = log_weights(log_likelihood, log_prior, log_q)
    weights = normalized_weights(log_w)
    ess = effective_sample_size(weights)
    log_z, log_z_error = log_evidence(log_w)
    return ImportanceResult(log_w, weights, ess, ess / len(log_w), log_z, log_z_error)


def weighted_quantile(values: np.ndarray, quantiles, weights: np.ndarray) -> np.ndarray:
    """Return quantiles of weighted samples (inverse of the weighted empirical CDF, interpolated)."""
    values, weights = np.asarray(values, dtype=float), np.asarray(weights, dtype=float)
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cdf = np.cumsum(w) - 0.5 * w
    cdf /= w.sum()
    return np.interp(quantiles, cdf, v)


def resample(weights: np.ndarray, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """Return indices of an equally weighted subsample by rejection (each kept with w / max w).

    Rejection keeps distinct samples only (none repeated), so its size is about
    ``N mean(w) / max(w)``, never more than the information the weights hold; ``n`` caps it.
    """
    w = np.asarray(weights, dtype=float)
    keep = np.flatnonzero(rng.uniform(size=w.size) < w / w.max())
    rng.shuffle(keep)
    return keep if n is None else keep[:n]
