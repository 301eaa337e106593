"""One event's refinement: the generic :func:`~twinflow.gw.inference.refinement.refine` on the
exact gravitational-wave likelihood and prior, started from the network's samples.

The parameters the refinement moves are those the network inferred (plus free parameters drawn
from the prior); fixed prior parameters stay fixed, and a marginalised phase stays
marginalised (it is reconstructed afterwards from the terms cached here). Where the sky and the
merger time are all free, the mixtures work in the detectors' frame
(:mod:`~twinflow.gw.inference.detector_frame`, setting ``reference-frame``), and the samples,
proposal densities and prior densities are mapped back to (ra, dec, geocent_time) on return.

In that frame the proposals also explore (:class:`~twinflow.gw.inference.refinement.Exploration`)
the two directions two detectors leave most open: the azimuth about their baseline (the
arrival-time difference fixes only the ring's opening angle; the antenna patterns leave
separate modes along the ring) and the inclination's mirror theta_jn -> pi - theta_jn (a
face-on and a face-off binary differ only in the sign of the circular polarisation, which two
nearly aligned detectors barely see). The mirror modes of the measured events sit elsewhere
on the ring too, so one share draws both moves together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from twinflow.gw.inference.detector_frame import SKY_AND_TIME, DetectorFrame
from twinflow.gw.inference.refinement import Exploration, RefinementResult, refine
from twinflow.gw.inference.sampling import prior_log_density
from twinflow.gw.validation import check_refinement_settings

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


def prior_sampler(prior, names: Sequence[str], frame: DetectorFrame | None = None):
    """Return ``sample(n, rng)``: n draws [n, D] of the 1-d priors of ``names`` (each by its
    inverse CDF, ``rescale``, from the generator's uniforms: reproducible with its seed), with
    (ra, dec, geocent_time) mapped to the detectors' frame when one is given, as the refinement's
    coordinates are. Their density is the refinement's prior density in those coordinates."""

    def sample(n: int, rng: np.random.Generator) -> np.ndarray:
        u = rng.uniform(size=(n, len(names)))
        x = np.column_stack(
            [np.asarray(prior[k].rescale(u[:, i]), float) for i, k in enumerate(names)]
        )
        if frame:
            rows = [list(names).index(k) for k in SKY_AND_TIME]
            for r, values in zip(rows, frame.to_frame(*(x[:, r] for r in rows))[:3]):
                x[:, r] = values
        return x

    return sample


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
    frame = None
    if check_refinement_settings(settings)["reference-frame"] == "detectors" and set(
        SKY_AND_TIME
    ) <= set(names):
        frame = DetectorFrame(likelihood.data.detectors, trigger_time)
    # the refinement's coordinates: the frame's three in place of (ra, dec, geocent_time)
    swap = dict(zip(SKY_AND_TIME, frame.names)) if frame else {}
    coordinates = [swap.get(n, n) for n in names]
    bounds = np.array(
        [
            [getattr(prior[n], "minimum", -np.inf), getattr(prior[n], "maximum", np.inf)]
            for n in names
        ],
        dtype=float,
    )
    periodic = [getattr(prior[n], "boundary", None) == "periodic" or n in PERIODIC for n in names]
    if frame:
        t = prior["geocent_time"]
        for row, (lo_hi, circle) in zip(
            (coordinates.index(n) for n in frame.names),
            zip(frame.bounds((t.minimum, t.maximum)), (False, True, False)),
        ):
            bounds[row], periodic[row] = lo_hi, circle
    fixed = {k: float(p.peak) for k, p in prior.items() if is_fixed(p)}
    if marginalize:
        fixed.pop("phase", None)

    def parameters(x: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Return the parameters of refinement coordinates x, ln |d(parameters) / d(x)|, and
        per row whether x lies in the frame's box (always, without a frame)."""
        values = {n: x[:, i] for i, n in enumerate(coordinates)}
        if not frame:
            return values, np.zeros(len(x)), np.ones(len(x), dtype=bool)
        zenith = values[frame.names[0]]
        ra, dec, dt, log_jacobian = frame.from_frame(*(values.pop(n) for n in frame.names))
        inside = (zenith >= 0) & (zenith <= np.pi)
        return {**values, "ra": ra, "dec": dec, "geocent_time": dt}, log_jacobian, inside

    x0 = np.column_stack([samples[n] for n in names])
    log_q0 = np.asarray(log_q, dtype=float)
    if frame:
        rows = [names.index(n) for n in SKY_AND_TIME]
        *x0_frame, log_jacobian = frame.to_frame(*(x0[:, r] for r in rows))
        for r, values in zip(rows, x0_frame):
            x0[:, r] = values
        log_q0 = log_q0 - log_jacobian
    # <h, d> and the SNR of every evaluated point, to reconstruct the phase of the final samples
    cache: dict[bytes, tuple[complex, float]] = {}
    finite = np.isfinite(log_likelihood_ratio)
    for row, dh, snr in zip(x0[finite], d_inner_h[finite], optimal_snr[finite], strict=True):
        cache[row.tobytes()] = (dh, snr)

    def log_likelihood(x: np.ndarray) -> np.ndarray:
        params = {k: np.full(len(x), v) for k, v in fixed.items()}
        params.update(parameters(x)[0])
        params["geocent_time"] = trigger_time + params["geocent_time"]
        terms = likelihood.evaluate(params)
        snr = np.sqrt(terms.optimal_snr_squared)
        for row, dh, s in zip(x, terms.d_inner_h, snr, strict=True):
            cache[row.tobytes()] = (dh, s)
        return terms.log_likelihood_ratio

    def log_prior(x: np.ndarray) -> np.ndarray:
        # A zenith beyond [0, pi] names a direction that one inside names too: zero prior there,
        # or the mixtures' spill-over would count those directions twice.
        values, log_jacobian, inside = parameters(x)
        log_pi = prior_log_density(prior, values, names) + log_jacobian
        return np.where(inside, log_pi, -np.inf)

    exploration = None
    if frame:
        exploration = Exploration(
            uniform=(coordinates.index(frame.names[1]),),  # the azimuth
            reflect=tuple(
                i
                for i, n in enumerate(coordinates)
                if n == "theta_jn" and np.allclose(bounds[i], [0.0, np.pi])
            ),
        )
    result = refine(
        x0,
        log_q0,
        log_likelihood,
        log_prior,
        bounds,
        periodic,
        settings,
        rng,
        initial_log_likelihood=log_likelihood_ratio,
        symmetry_periods=symmetry_periods(prior, names, marginalize=marginalize),
        exploration=exploration,
        prior_sample=prior_sampler(prior, names, frame),
        log=log,
    )
    dh = np.zeros(len(result.samples), dtype=complex)
    snr = np.zeros(len(result.samples))
    for i, row in enumerate(result.samples):
        hit = cache.get(row.tobytes())
        if hit is not None:
            dh[i], snr[i] = hit
    values, log_jacobian, _ = parameters(result.samples)
    out = {n: values[n].copy() for n in names}
    if frame:  # densities per unit (ra, dec, geocent_time), as the network's; weights unchanged
        result = dataclasses.replace(
            result,
            samples=np.column_stack([out[n] for n in names]),
            log_proposal=result.log_proposal - log_jacobian,
            log_prior=result.log_prior - log_jacobian,
        )
    return result, out, dh, snr
