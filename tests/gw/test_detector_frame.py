"""The detectors' frame of the refinement: bilby's conversion, its Jacobian, and a refinement in it."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

from twinflow.gw.inference.detector_frame import DetectorFrame

TRIGGER = 1167559936.6  # GW170104: 2.6 rad of GMST from the training reference time


def _frame_draws(n: int, seed: int):
    rng = np.random.default_rng(seed)
    return (
        np.arccos(rng.uniform(-1, 1, n)),
        rng.uniform(0, 2 * np.pi, n),
        rng.uniform(-0.1, 0.1, n),
    )


def test_frame_matches_bilby_zenith_azimuth_and_detector_time():
    import bilby

    ifos = bilby.gw.detector.InterferometerList(["H1", "L1"])
    frame = DetectorFrame(["H1", "L1"], TRIGGER)
    assert frame.names == ("zenith", "azimuth", "H1_time")
    zenith, azimuth, tau = _frame_draws(50, 1)
    ra, dec, dt, _ = frame.from_frame(zenith, azimuth, tau)
    for i in range(len(zenith)):
        ra_b, dec_b = bilby.gw.utils.zenith_azimuth_to_ra_dec(
            zenith[i], azimuth[i], TRIGGER + dt[i], ifos
        )
        assert abs(math.remainder(ra_b - ra[i], 2 * math.pi)) < 1e-9
        assert dec_b == pytest.approx(dec[i], abs=1e-9)
        delay = ifos[0].time_delay_from_geocenter(ra_b, dec_b, TRIGGER + dt[i])
        assert dt[i] + delay == pytest.approx(tau[i], abs=1e-12)
    back = frame.to_frame(ra, dec, dt)
    np.testing.assert_allclose(back[0], zenith, atol=1e-9)
    np.testing.assert_allclose(np.angle(np.exp(1j * (back[1] - azimuth))), 0, atol=1e-9)
    np.testing.assert_allclose(back[2], tau, atol=1e-12)


def test_one_detector_frame_puts_the_delay_in_the_zenith():
    frame = DetectorFrame(["L1"], TRIGGER)
    zenith, azimuth, tau = _frame_draws(20, 2)
    _, _, dt, _ = frame.from_frame(zenith, azimuth, tau)
    np.testing.assert_allclose(tau - dt, -frame.max_delay * np.cos(zenith), atol=1e-12)


def test_jacobian_is_the_determinant_of_the_map():
    frame = DetectorFrame(["H1", "L1"], TRIGGER)
    zenith, azimuth, tau = _frame_draws(10, 3)
    ra, dec, dt, log_jacobian = frame.from_frame(zenith, azimuth, tau)
    inverse = frame.to_frame(ra, dec, dt)[3]
    np.testing.assert_allclose(inverse, -log_jacobian, atol=1e-9)
    step = 1e-6
    for i in range(len(zenith)):
        point = np.array([zenith[i], azimuth[i], tau[i]])
        columns = []
        for k in range(3):
            e = np.zeros(3)
            e[k] = step
            hi, lo = (np.array(frame.from_frame(*(point + s * e))[:3]) for s in (1, -1))
            diff = hi - lo
            diff[0] = math.remainder(diff[0], 2 * math.pi)
            columns.append(diff / (2 * step))
        numeric = np.log(abs(np.linalg.det(np.column_stack(columns))))
        assert numeric == pytest.approx(log_jacobian[i], abs=1e-5)
        assert log_jacobian[i] == pytest.approx(
            np.log(np.sin(zenith[i]) / np.cos(dec[i])), abs=1e-12
        )


class _RingLikelihood:
    """A two-detector-like likelihood: the H1 arrival time and the cosine of the zenith about the
    H1-L1 baseline are measured (Gaussian), the azimuth not at all. Computed with bilby's own
    conversion functions, independently of the frame under test."""

    SIGMA_TIME, SIGMA_COS = 2e-4, 0.02

    def __init__(self, cos_zenith: float = 0.3):
        import bilby

        self.COS_ZENITH = cos_zenith

        self.ifos = bilby.gw.detector.InterferometerList(["H1", "L1"])
        self.data = types.SimpleNamespace(detectors=["H1", "L1"])
        self.baseline = self.ifos[0].vertex - self.ifos[1].vertex

    def evaluate(self, p):
        import bilby

        h1, cos_zenith = [], []
        for ra, dec, t in zip(p["ra"], p["dec"], p["geocent_time"], strict=True):
            h1.append(t - TRIGGER + self.ifos[0].time_delay_from_geocenter(ra, dec, t))
            gmst = bilby.gw.utils.greenwich_mean_sidereal_time(t)
            theta, phi = math.pi / 2 - dec, ra - gmst
            n = np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
            cos_zenith.append(n @ self.baseline / np.linalg.norm(self.baseline))
        log_l = (
            -0.5 * (np.array(h1) / self.SIGMA_TIME) ** 2
            - 0.5 * ((np.array(cos_zenith) - self.COS_ZENITH) / self.SIGMA_COS) ** 2
        )
        return types.SimpleNamespace(
            log_likelihood_ratio=log_l,
            d_inner_h=np.zeros(len(log_l), dtype=complex),
            optimal_snr_squared=np.ones(len(log_l)),
        )

    def log_evidence(self, time_window: float) -> float:
        """ln Z under an isotropic sky and a uniform geocentre time (the ring lies well inside)."""
        from scipy.stats import norm

        # int over cos(zenith) in [-1, 1] of the Gaussian, / 2 (isotropic)
        inside = norm.cdf((1 - self.COS_ZENITH) / self.SIGMA_COS) - norm.cdf(
            (-1 - self.COS_ZENITH) / self.SIGMA_COS
        )
        sky = math.sqrt(2 * math.pi) * self.SIGMA_COS / 2 * inside
        time = math.sqrt(2 * math.pi) * self.SIGMA_TIME / time_window
        return math.log(sky * time)


def _sky_prior() -> dict:
    """bilby_pipe's sky and time prior: isotropic, and +-0.1 s about the trigger."""
    from bilby.core.prior import Cosine, Uniform

    return {
        "ra": Uniform(0, 2 * np.pi, boundary="periodic"),
        "dec": Cosine(),
        "geocent_time": Uniform(-0.1, 0.1),
    }


def _refine_from(likelihood, prior, start, log_q, settings, rng):
    """Refine from the draws ``start`` (one array per prior key; time from the trigger) with ln
    density ``log_q``, as the inference does from a network's; return the result and samples."""
    from twinflow.gw.inference.refined_posterior import refine_event

    terms = likelihood.evaluate({**start, "geocent_time": TRIGGER + start["geocent_time"]})
    result, samples, _, _ = refine_event(
        likelihood,
        prior,
        TRIGGER,
        list(prior),
        start,
        log_q,
        terms.log_likelihood_ratio,
        terms.d_inner_h,
        np.ones(len(log_q)),
        settings,
        rng,
        marginalize=False,
        log=lambda *a: None,
    )
    return result, samples


def _refine_ring(frame: str, seed: int = 4, cos_zenith: float = 0.3):
    """Refine the ring posterior from prior draws (a network that knows nothing)."""
    from twinflow.gw.inference.sampling import prior_log_density

    prior = _sky_prior()
    names = list(prior)
    likelihood = _RingLikelihood(cos_zenith)
    rng = np.random.default_rng(seed)
    start = {k: prior[k].sample(2000) for k in names}
    log_q = prior_log_density(prior, start, names)
    settings = {
        "target-ess": 500,
        "max-likelihood-evaluations": 60000,
        "batch-size": 2000,
        "reference-frame": frame,
    }
    result, samples = _refine_from(likelihood, prior, start, log_q, settings, rng)
    return prior, names, likelihood, result, samples


@pytest.mark.parametrize(
    "frame, cos_zenith",
    # 0.99: the ring shrinks to a cap around the baseline, whose mixtures spill beyond zenith 0
    [("detectors", 0.3), ("detectors", 0.99)],
)
def test_refinement_in_the_detector_frame_recovers_the_ring_evidence(frame, cos_zenith):
    from twinflow.gw.inference.sampling import prior_log_density

    prior, names, likelihood, result, samples = _refine_ring(frame, cos_zenith=cos_zenith)
    assert result.effective_sample_size >= 500
    expected = likelihood.log_evidence(0.2)
    assert abs(result.log_evidence - expected) < 4 * result.log_evidence_error + 0.02
    # returned densities are per unit (ra, dec, geocent_time), whichever frame sampled
    finite = np.isfinite(result.log_prior)
    np.testing.assert_allclose(
        result.log_prior[finite],
        prior_log_density(prior, {k: v[finite] for k, v in samples.items()}, names),
        atol=1e-8,
    )
    np.testing.assert_allclose(result.samples, np.column_stack([samples[k] for k in names]))


def test_the_detector_frame_needs_fewer_likelihood_calls_on_the_ring():
    """Why the frame is the default: on the ring the sky-frame mixtures need 3x the calls or
    more (or do not reach the target within 10x)."""
    results = {f: _refine_ring(f)[3] for f in ("detectors", "sky")}
    assert results["detectors"].reached_target
    calls = {f: r.n_likelihood_evaluations for f, r in results.items()}
    assert calls["detectors"] < 0.5 * calls["sky"], calls


class _MirroredRingLikelihood(_RingLikelihood):
    """The ring, with two equal modes on it: one face-on (theta_jn 0.8) at one place, one
    face-off (theta_jn pi - 0.8) at another, as the measured two-detector events show. By
    symmetry each holds half the posterior."""

    KAPPA, SIGMA_THETA = 50.0, 0.1

    def __init__(self):
        super().__init__(0.3)
        b = self.baseline / np.linalg.norm(self.baseline)
        u = np.cross(b, [0.0, 0.0, 1.0])
        u /= np.linalg.norm(u)
        v = np.cross(b, u)
        ring = math.sqrt(1 - self.COS_ZENITH**2)
        self.modes = [
            (self.COS_ZENITH * b + ring * (math.cos(a) * u + math.sin(a) * v), theta)
            for a, theta in ((0.5, 0.8), (2.8, math.pi - 0.8))
        ]

    def evaluate(self, p):
        import bilby

        out = super().evaluate(p)
        gmst = bilby.gw.utils.greenwich_mean_sidereal_time(p["geocent_time"])
        phi, theta = p["ra"] - gmst, math.pi / 2 - p["dec"]
        n = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], 1)
        terms = [
            self.KAPPA * (n @ direction - 1)
            - 0.5 * ((p["theta_jn"] - theta_jn) / self.SIGMA_THETA) ** 2
            for direction, theta_jn in self.modes
        ]
        out.log_likelihood_ratio = out.log_likelihood_ratio + np.logaddexp(*terms)
        return out


@pytest.mark.parametrize("exploring", [0.0, 0.1])
def test_exploration_finds_the_face_off_mode_elsewhere_on_the_ring(exploring):
    """The network's draws know only the face-on inclination (and nothing of the sky): without
    exploration the face-off mode is never found (the control), with it each holds half."""
    from bilby.core.prior import Sine
    from scipy.stats import norm

    from twinflow.gw.inference.sampling import prior_log_density

    prior = {"theta_jn": Sine(), **_sky_prior()}
    names = list(prior)
    likelihood = _MirroredRingLikelihood()
    rng = np.random.default_rng(5)
    n = 3000
    start = {k: prior[k].sample(n) for k in names[1:]}
    start["theta_jn"] = rng.normal(0.8, 0.15, n)
    log_q = prior_log_density(prior, start, names[1:]) + norm(0.8, 0.15).logpdf(start["theta_jn"])
    settings = {
        "target-ess": 500,
        "max-likelihood-evaluations": 60000,
        "batch-size": 3000,
        "exploration-fraction": exploring,
    }
    result, samples = _refine_from(likelihood, prior, start, log_q, settings, rng)
    face_off = float(np.sum(result.weights[samples["theta_jn"] > math.pi / 2]))
    if exploring:
        assert result.reached_target
        assert face_off == pytest.approx(0.5, abs=0.07)
    else:
        assert face_off < 0.02


class _BroadRingLikelihood(_RingLikelihood):
    """The ring of a quiet signal: the zenith and the arrival time barely measured."""

    SIGMA_TIME, SIGMA_COS = 0.01, 0.5


def test_a_quiet_ring_against_its_analytic_evidence():
    """A posterior close to the prior (the defensive share drawn from the prior, mapped to the
    detectors' frame), from draws that know the time roughly and the sky not at all."""
    from twinflow.gw.inference.sampling import prior_log_density

    prior = _sky_prior()
    names = list(prior)
    likelihood = _BroadRingLikelihood(0.3)
    rng = np.random.default_rng(19)
    n = 2000  # a network that knows the time but not the sky
    start = {"ra": prior["ra"].sample(n), "dec": prior["dec"].sample(n)}
    start["geocent_time"] = rng.uniform(-0.03, 0.03, n)
    log_q = prior_log_density(prior, start, names[:2]) - math.log(0.06)
    settings = {"target-ess": 1000, "max-likelihood-evaluations": 40000, "batch-size": 2000}
    result, _ = _refine_from(likelihood, prior, start, log_q, settings, rng)
    assert result.reached_target
    expected = likelihood.log_evidence(0.2)
    assert abs(result.log_evidence - expected) < 4 * result.log_evidence_error + 0.01


def test_prior_draws_in_the_detector_frame_follow_the_prior():
    """Mapped back to (ra, dec, geocent_time), the frame's prior draws follow bilby's priors (a
    draw left in sky coordinates would not), and the other parameters keep theirs."""
    from bilby.core.prior import Cosine, PowerLaw, Sine, Uniform
    from scipy.stats import kstest

    from twinflow.gw.inference.refined_posterior import prior_sampler

    prior = {
        "theta_jn": Sine(),
        "ra": Uniform(0, 2 * np.pi, boundary="periodic"),
        "luminosity_distance": PowerLaw(2, 200, 1500),
        "dec": Cosine(),
        "geocent_time": Uniform(-0.1, 0.1),
    }
    names = list(prior)
    frame = DetectorFrame(["H1", "L1"], TRIGGER)
    x = prior_sampler(prior, names, frame)(20000, np.random.default_rng(20))
    rows = [names.index(k) for k in ("ra", "dec", "geocent_time")]
    ra, dec, dt, _ = frame.from_frame(*(x[:, r] for r in rows))
    values = {**{k: x[:, i] for i, k in enumerate(names)}, "ra": ra, "dec": dec}
    values["geocent_time"] = dt
    for k in names:
        assert kstest(values[k], prior[k].cdf).pvalue > 1e-3, k
    again = prior_sampler(prior, names, frame)(20000, np.random.default_rng(20))
    np.testing.assert_array_equal(x, again)  # reproducible with the generator's seed
