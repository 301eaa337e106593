"""The batched likelihood against bilby's GravitationalWaveTransient, evaluated sample by sample."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

bilby = pytest.importorskip("bilby")

from twinflow.core.settings import ConfigError  # noqa: E402
from twinflow.gw.inference.events import EventData  # noqa: E402
from twinflow.gw.inference.likelihood import GaussianLikelihood  # noqa: E402

bilby.core.utils.logger.setLevel("ERROR")

TRIGGER = 1126259462.4
DURATION, FS = 4.0, 1024.0
START = TRIGGER - (DURATION - 2.0)
INJECTION = dict(
    chirp_mass=28.0,
    mass_ratio=0.8,
    chi_1=0.3,
    chi_2=-0.2,
    theta_jn=0.6,
    phase=1.3,
    luminosity_distance=250.0,
    ra=1.2,
    dec=-0.4,
    psi=0.7,
    geocent_time=TRIGGER + 0.004,
)


def make_event(detectors, f_min, f_max, approximant="IMRPhenomXAS", seed=1, injection=INJECTION):
    """Return (bilby likelihood kwargs, EventData) for noise + an injection, with bilby's own tools."""
    bilby.core.utils.random.seed(seed)
    f_min = f_min if isinstance(f_min, dict) else {d: f_min for d in detectors}
    f_max = f_max if isinstance(f_max, dict) else {d: f_max for d in detectors}
    wg = bilby.gw.WaveformGenerator(
        duration=DURATION,
        sampling_frequency=FS,
        start_time=START,
        frequency_domain_source_model=bilby.gw.source.lal_binary_black_hole,
        parameter_conversion=bilby.gw.conversion.convert_to_lal_binary_black_hole_parameters,
        waveform_arguments=dict(
            waveform_approximant=approximant,
            reference_frequency=20.0,
            minimum_frequency=min(f_min.values()),
            maximum_frequency=max(f_max.values()),
        ),
    )
    ifos = bilby.gw.detector.InterferometerList(list(detectors))
    for ifo in ifos:
        ifo.minimum_frequency, ifo.maximum_frequency = f_min[ifo.name], f_max[ifo.name]
    ifos.set_strain_data_from_power_spectral_densities(
        sampling_frequency=FS, duration=DURATION, start_time=START
    )
    ifos.inject_signal(parameters=injection, waveform_generator=wg, raise_error=False)
    data = EventData(
        name="test",
        detectors=tuple(detectors),
        trigger_time=TRIGGER,
        start_time=START,
        duration=DURATION,
        sampling_frequency=FS,
        minimum_frequency=f_min,
        maximum_frequency=f_max,
        strain={ifo.name: ifo.frequency_domain_strain.copy() for ifo in ifos},
        psd={ifo.name: ifo.power_spectral_density_array.copy() for ifo in ifos},
    )
    return dict(interferometers=ifos, waveform_generator=wg), data


def draw_parameters(n, seed=0, spins="aligned"):
    """Half near the injection (ln L up to ~1e3), half broad (ln L << 0)."""
    rng = np.random.default_rng(seed)
    near = n // 2
    p = {
        "chirp_mass": np.r_[
            INJECTION["chirp_mass"] + rng.normal(0, 0.3, near), rng.uniform(20, 40, n - near)
        ],
        "mass_ratio": rng.uniform(0.5, 1.0, n),
        "theta_jn": np.arccos(rng.uniform(-1, 1, n)),
        "phase": rng.uniform(0, 2 * np.pi, n),
        "luminosity_distance": rng.uniform(200, 1500, n),
        "ra": np.r_[
            INJECTION["ra"] + rng.normal(0, 0.05, near), rng.uniform(0, 2 * np.pi, n - near)
        ],
        "dec": np.r_[
            INJECTION["dec"] + rng.normal(0, 0.05, near), np.arcsin(rng.uniform(-1, 1, n - near))
        ],
        "psi": rng.uniform(0, np.pi, n),
        "geocent_time": INJECTION["geocent_time"]
        + np.r_[rng.normal(0, 1e-3, near), rng.uniform(-0.05, 0.05, n - near)],
    }
    if spins == "aligned":
        p["chi_1"], p["chi_2"] = rng.uniform(-0.8, 0.8, n), rng.uniform(-0.8, 0.8, n)
    else:
        for i in (1, 2):
            p[f"a_{i}"], p[f"tilt_{i}"] = rng.uniform(0, 0.8, n), np.arccos(rng.uniform(-1, 1, n))
        p["phi_12"], p["phi_jl"] = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n)
    # the truth itself and parameters near it give the largest ln L
    for key, value in INJECTION.items():
        if key in p:
            p[key][0] = value
    return p


def bilby_log_likelihood_ratio(kwargs, parameters, **options):
    likelihood = bilby.gw.GravitationalWaveTransient(**kwargs, **options)
    n = len(parameters["ra"])
    return np.array(
        [
            likelihood.log_likelihood_ratio({k: v[i] for k, v in parameters.items()})
            for i in range(n)
        ]
    ), likelihood


@pytest.mark.parametrize(
    "detectors, f_min, f_max",
    [
        (("H1", "L1"), 20.0, 256.0),
        (("H1",), 30.0, 180.5),
        (("L1", "V1"), {"L1": 20.0, "V1": 35.25}, {"L1": 300.0, "V1": 200.0}),
        (
            ("H1", "L1", "V1"),
            {"H1": 20.0, "L1": 24.0, "V1": 30.0},
            {"H1": 256.0, "L1": 512.0, "V1": 128.0},
        ),
    ],
)
def test_log_likelihood_matches_bilby(detectors, f_min, f_max):
    kwargs, data = make_event(detectors, f_min, f_max)
    parameters = draw_parameters(40)
    reference, bilby_likelihood = bilby_log_likelihood_ratio(kwargs, parameters)
    with GaussianLikelihood(data, "IMRPhenomXAS", 20.0, processes=1, chunk_size=16) as likelihood:
        ours = likelihood.log_likelihood_ratio(parameters)
        assert likelihood.noise_log_likelihood == pytest.approx(
            bilby_likelihood.noise_log_likelihood(), rel=1e-12
        )
    assert np.abs(reference).max() > 100  # the test covers the high-SNR regime
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-9)


def test_phase_marginalized_matches_bilby_and_processes_agree():
    kwargs, data = make_event(("H1", "L1"), 20.0, 256.0)
    parameters = draw_parameters(40, seed=5)
    reference, _ = bilby_log_likelihood_ratio(
        kwargs,
        parameters,
        phase_marginalization=True,
        priors=bilby.gw.prior.BBHPriorDict(aligned_spin=True),
    )
    with GaussianLikelihood(
        data, "IMRPhenomXAS", 20.0, phase_marginalization=True, processes=2, chunk_size=8
    ) as pooled:
        ours = pooled.log_likelihood_ratio(parameters)
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-9)
    single = GaussianLikelihood(
        data, "IMRPhenomXAS", 20.0, phase_marginalization=True, processes=1
    )
    np.testing.assert_allclose(single.log_likelihood_ratio(parameters), ours, rtol=1e-12)


@pytest.mark.parametrize(
    "approximant, n, seed", [("IMRPhenomPv2", 8, 2), ("IMRPhenomXPHM", 24, 3)]
)
def test_precessing_model_matches_bilby(approximant, n, seed):
    """IMRPhenomXPHM turns last-digit input differences into 1e-6 ones: inputs must be bilby's to the bit."""
    kwargs, data = make_event(("H1", "L1"), 20.0, 200.0, approximant=approximant)
    # (with seed 3, converting these 24 samples in one vectorised call instead of bilby's
    # per-sample calls moved ln L by up to 5e-4 relative)
    parameters = draw_parameters(n, seed=seed, spins="precessing")
    reference, _ = bilby_log_likelihood_ratio(kwargs, parameters)
    ours = GaussianLikelihood(data, approximant, 20.0, processes=1).log_likelihood_ratio(
        parameters
    )
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-9)


def test_reconstructed_phase_follows_its_conditional_posterior():
    """Phases drawn by reconstruct_phase against bilby's ln L on a phase grid (KS test)."""
    kwargs, data = make_event(
        ("H1", "L1"), 20.0, 256.0, injection={**INJECTION, "luminosity_distance": 15000.0}
    )
    theta = {k: np.array([v]) for k, v in INJECTION.items()}
    theta["luminosity_distance"] = np.array([15000.0])
    likelihood = GaussianLikelihood(
        data, "IMRPhenomXAS", 20.0, phase_marginalization=True, processes=1
    )
    z = likelihood.evaluate(theta).d_inner_h
    draws = likelihood.reconstruct_phase(np.repeat(z, 4000), np.random.default_rng(0))
    grid = np.linspace(0, 2 * np.pi, 721)
    parameters = {k: np.repeat(v, grid.size) for k, v in theta.items()}
    parameters["phase"] = grid
    log_l, _ = bilby_log_likelihood_ratio(kwargs, parameters)
    density = np.exp(log_l - log_l.max())
    cdf = np.concatenate([[0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(grid))])
    cdf /= cdf[-1]
    assert scipy.stats.kstest(draws, lambda x: np.interp(x, grid, cdf)).pvalue > 0.01
    assert 1 < np.abs(z[0]) < 50  # a phase posterior that is neither flat nor a spike


def test_one_ulp_of_gps_time_explains_the_feasibility_mismatch():
    """A float64 ulp of GPS time (2.4e-7 s) moves ln L ~ 1e3 by > 1e-6 relative.

    So a likelihood that forms the time shift from a trigger-relative offset instead of from
    the absolute geocent_time, as bilby does, disagrees with bilby at the 1e-6 level; ours
    forms it as bilby does (the test above holds it to 1e-6).
    """
    loud = {**INJECTION, "luminosity_distance": 600.0}
    kwargs, data = make_event(("H1", "L1"), 20.0, 256.0, injection=loud)
    likelihood = GaussianLikelihood(data, "IMRPhenomXAS", 20.0, processes=1)
    t = loud["geocent_time"]
    parameters = {k: np.full(3, v) for k, v in loud.items()}
    parameters["geocent_time"] = np.array([t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf)])
    log_l = likelihood.log_likelihood_ratio(parameters)
    assert 500 < log_l[0] < 2000
    assert np.max(np.abs(log_l[1:] - log_l[0])) / log_l[0] > 1e-6


def test_bad_models_are_refused():
    _, data = make_event(("H1",), 20.0, 256.0)
    with pytest.raises(ConfigError, match="approximant = 'NotAModel'"):
        GaussianLikelihood(data, "NotAModel", 20.0)
    with pytest.raises(ConfigError, match="frequency-domain"):
        GaussianLikelihood(data, "SEOBNRv4", 20.0)
    for higher_modes in ("IMRPhenomXHM", "IMRPhenomXPHM"):
        with pytest.raises(ConfigError, match="phase marginalisation is exact only"):
            GaussianLikelihood(data, higher_modes, 20.0, phase_marginalization=True)


def test_psi_quarter_turn_leaves_the_phase_marginalized_likelihood_unchanged():
    """What the refinement's folding of psi rests on, checked on bilby's likelihood itself.

    psi + pi/2 turns the signal into -h; bilby's phase-marginalised likelihood does not see the
    sign, whatever the waveform (here one with higher modes and precession), while the plain
    likelihood does. ``symmetry_periods`` declares the symmetry exactly in the first case.
    """
    from twinflow.gw.inference.refined_posterior import symmetry_periods

    kwargs, _ = make_event(("H1", "L1"), 20.0, 256.0, approximant="IMRPhenomXPHM")
    parameters = draw_parameters(6, seed=7, spins="precessing")
    turned = dict(parameters, psi=parameters["psi"] + np.pi / 2)
    # bilby fixes the phase in the prior it is given: a fresh prior for each likelihood
    before, _ = bilby_log_likelihood_ratio(
        kwargs, parameters, phase_marginalization=True, priors=bilby.gw.prior.BBHPriorDict()
    )
    after, _ = bilby_log_likelihood_ratio(
        kwargs, turned, phase_marginalization=True, priors=bilby.gw.prior.BBHPriorDict()
    )
    np.testing.assert_allclose(after, before, rtol=1e-10, atol=1e-8)
    plain_before, _ = bilby_log_likelihood_ratio(kwargs, parameters)
    plain_after, _ = bilby_log_likelihood_ratio(kwargs, turned)
    assert np.max(np.abs(plain_after - plain_before)) > 1.0

    priors = bilby.gw.prior.BBHPriorDict()
    names = ["chirp_mass", "psi", "theta_jn"]
    assert symmetry_periods(priors, names, marginalize=True) == [None, np.pi / 2, None]
    assert symmetry_periods(priors, names, marginalize=False) == [None, None, None]
    priors["psi"] = bilby.core.prior.Sine(minimum=0, maximum=np.pi)  # not invariant
    assert symmetry_periods(priors, names, marginalize=True) == [None, None, None]
