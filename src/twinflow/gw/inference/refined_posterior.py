"""One event's refinement: the generic :func:`~twinflow.gw.inference.refinement.refine` on the
exact gravitational-wave likelihood and prior, started from the network's samples.

The parameters the refinement moves are those the network inferred (plus free parameters drawn
from the prior); fixed prior parameters stay fixed, and a marginalised phase stays
marginalised (it is reconstructed afterwards from the terms cached here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from twinflow.gw.inference.refinement import RefinementResult, refine
from twinflow.gw.inference.sampling import prior_log_density

#: Parameters on a circle: their posterior may wrap across the prior bounds.
PERIODIC = ("ra", "psi", "phase")


def symmetry_periods(prior, names: Sequence[str], *, marginalize: bool) -> list[float | None]:
    """Return per parameter the shift that leaves likelihood and prior unchanged (or None).

    psi -> psi + pi/2 flips the sign of both antenna patterns, so the signal in every detector
    becomes -h. The phase-marginalised likelihood depends on the data only through |<d, h>|
    and <h, h> (bilby's phase marginalisation is the same), so it does not change, whatever the
    waveform; with a uniform prior on psi over a whole number of quarter turns the posterior
    then has identical copies pi/2 apart, which the refinement's proposals are told about.
    Without phase marginalisation the copy sits at a shifted phase, and nothing is declared.
    """
    out: list[float | None] = [None] * len(names)
    if not marginalize or "psi" not in names:
        return out
    psi = prior["psi"]
    width = getattr(psi, "maximum", np.inf) - getattr(psi, "minimum", -np.inf)
    copies = width / (np.pi / 2)
    if type(psi).__name__ == "Uniform" and np.isfinite(width) and copies >= 2:
        if abs(copies - round(copies)) < 1e-9:
            out[list(names).index("psi")] = np.pi / 2
    return out


def refine_event(
    likelihood,
    prior,
    trigger_time: float,
    names: Sequence[str],
    samples: Mapping[str, np.ndarray],
    log_q: np.ndarray,
    log_likelihood_ratio: np.ndarray,
    d_inner_h: np.ndarray,
    optimal_snr: np.ndarray,
    settings: Mapping,
    rng: np.random.Generator,
    *,
    marginalize: bool,
    log=print,
) -> tuple[RefinementResult, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Return the refinement, its samples (name -> [n]), <h, d> and optimal SNR at them.

    ``samples`` are the network's (geocent_time as offset from the trigger), with ln q and the
    likelihood terms already computed; the likelihood is evaluated only at new points.
    """
    from twinflow.gw.prior import is_fixed

    names = [n for n in names if n != "phase" or not marginalize]
    bounds = np.array(
        [
            [getattr(prior[n], "minimum", -np.inf), getattr(prior[n], "maximum", np.inf)]
            for n in names
        ],
        dtype=float,
    )
    periodic = [getattr(prior[n], "boundary", None) == "periodic" or n in PERIODIC for n in names]
    fixed = {k: float(p.peak) for k, p in prior.items() if is_fixed(p)}
    if marginalize:
        fixed.pop("phase", None)
    x0 = np.column_stack([samples[n] for n in names])
    # <h, d> and the SNR of every evaluated point, to reconstruct the phase of the final samples
    cache: dict[bytes, tuple[complex, float]] = {}
    finite = np.isfinite(log_likelihood_ratio)
    for row, dh, snr in zip(x0[finite], d_inner_h[finite], optimal_snr[finite], strict=True):
        cache[row.tobytes()] = (dh, snr)

    def log_likelihood(x: np.ndarray) -> np.ndarray:
        params = {k: np.full(len(x), v) for k, v in fixed.items()}
        params.update({n: x[:, i] for i, n in enumerate(names)})
        params["geocent_time"] = trigger_time + params["geocent_time"]
        terms = likelihood.evaluate(params)
        snr = np.sqrt(terms.optimal_snr_squared)
        for row, dh, s in zip(x, terms.d_inner_h, snr, strict=True):
            cache[row.tobytes()] = (dh, s)
        return terms.log_likelihood_ratio

    def log_prior(x: np.ndarray) -> np.ndarray:
        return prior_log_density(prior, {n: x[:, i] for i, n in enumerate(names)}, names)

    result = refine(
        x0,
        log_q,
        log_likelihood,
        log_prior,
        bounds,
        periodic,
        settings,
        rng,
        initial_log_likelihood=log_likelihood_ratio,
        symmetry_periods=symmetry_periods(prior, names, marginalize=marginalize),
        log=log,
    )
    out = {n: result.samples[:, i].copy() for i, n in enumerate(names)}
    dh = np.zeros(len(result.samples), dtype=complex)
    snr = np.zeros(len(result.samples))
    for i, row in enumerate(result.samples):
        hit = cache.get(row.tobytes())
        if hit is not None:
            dh[i], snr[i] = hit
    return result, out, dh, snr
