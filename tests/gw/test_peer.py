"""The peer check: the JSD against exact Gaussian values, bilby's likelihood built from our event
data against ours, dynesty's ln Z against quadrature, and the settings of gw.peer and gw.pp."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
from tests.conftest import TEST_CONFIG

from twinflow.core.config import validate_config
from twinflow.core.settings import ConfigError, load_yaml
from twinflow.gw.inference.peer import jensen_shannon_divergence, js_divergence_of_densities
from twinflow.gw.settings import (
    inference_settings_for,
    peer_settings_for,
    pp_event_names,
    pp_settings_for,
)
from twinflow.gw.validation import check_config


def exact_jsd(p, q) -> float:
    """JSD [nat] of two scipy distributions by adaptive quadrature of their exact densities."""

    def integrand(x):
        a, b = p.pdf(x), q.pdf(x)
        m = (a + b) / 2
        return 0.5 * (
            (a * np.log(a / m) if a > 0 else 0.0) + (b * np.log(b / m) if b > 0 else 0.0)
        )

    lo = min(p.ppf(1e-12), q.ppf(1e-12))
    hi = max(p.isf(1e-12), q.isf(1e-12))
    return scipy.integrate.quad(integrand, lo, hi, limit=200, points=[p.mean(), q.mean()])[0]


@pytest.mark.parametrize(
    "shift, scale",
    [(0.3, 1.0), (1.0, 1.0), (0.0, 1.5), (0.5, 0.7)],
)
def test_jsd_of_gaussian_samples_matches_the_exact_value(shift, scale):
    rng = np.random.default_rng(0)
    p, q = scipy.stats.norm(0, 1), scipy.stats.norm(shift, scale)
    a, b = p.rvs(40_000, random_state=rng), q.rvs(40_000, random_state=rng)
    exact = exact_jsd(p, q)
    assert 0.005 < exact < np.log(2)
    assert jensen_shannon_divergence(a, b) == pytest.approx(exact, rel=0.08)


def test_jsd_limits_and_weights():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, 40_000)
    # small shift: JSD ~ shift^2 / 8 for unit Gaussians (a quarter of the KL divergence)
    assert jensen_shannon_divergence(a, rng.normal(0.1, 1, 40_000)) == pytest.approx(
        0.1**2 / 8, rel=0.35
    )
    # the same distribution: far below the goal of 0.005 nat
    assert jensen_shannon_divergence(a, rng.normal(0, 1, 40_000)) < 5e-4
    # no overlap: ln 2
    assert jensen_shannon_divergence(a[:5000], a[:5000] + 50) == pytest.approx(np.log(2), rel=1e-3)
    # weighted samples: a wide Gaussian reweighted to N(0.5, 1) against direct draws of N(0.5, 1)
    wide = rng.normal(0, 3, 30_000)
    w = scipy.stats.norm(0.5, 1).pdf(wide) / scipy.stats.norm(0, 3).pdf(wide)
    direct = rng.normal(0.5, 1, 10_000)
    assert jensen_shannon_divergence(wide, direct, weights_a=w) < 1e-3
    assert jensen_shannon_divergence(wide, direct) > 0.1  # unweighted they differ


def test_jsd_ignores_zero_weight_draws_and_stays_finite_in_far_tails():
    # an importance-sampled posterior keeps its draws outside the prior with zero weight; they
    # must neither stretch the grid nor change the answer
    rng = np.random.default_rng(2)
    p, q = scipy.stats.norm(0, 1), scipy.stats.norm(0.3, 1)
    a, b = p.rvs(40_000, random_state=rng), q.rvs(40_000, random_state=rng)
    outside = rng.uniform(20, 40, 2000)
    weights = np.concatenate([np.ones(len(a)), np.zeros(len(outside))])
    with_outside = jensen_shannon_divergence(np.concatenate([a, outside]), b, weights_a=weights)
    assert with_outside == pytest.approx(exact_jsd(p, q), rel=0.08)
    assert with_outside == jensen_shannon_divergence(a, b, weights_a=np.ones(len(a)))
    # a KDE tail holding the smallest subnormal float, where the other density is 0
    tail = np.array([1.0, 5e-324, 0.0])
    assert js_divergence_of_densities(tail, np.array([1.0, 0.0, 0.0])) == 0.0
    assert js_divergence_of_densities(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == (
        pytest.approx(np.log(2))
    )


# --------------------------------------------------------------------------------------------
# The dynesty run on a tiny problem

bilby = pytest.importorskip("bilby")
bilby.core.utils.logger.setLevel("ERROR")

TRIGGER = 1126259462.4
INJECTION = dict(
    chirp_mass=28.0,
    mass_ratio=0.8,
    chi_1=0.3,
    chi_2=-0.2,
    theta_jn=0.6,
    phase=1.3,
    luminosity_distance=2000.0,
    ra=1.2,
    dec=-0.4,
    psi=0.7,
    geocent_time=0.0,
)
# two free parameters (and the phase, marginalised); everything else fixed at the injection
PRIOR = {
    **{k: v for k, v in INJECTION.items()},
    "luminosity_distance": {"distribution": "Uniform", "minimum": 500, "maximum": 4000},
    "theta_jn": {"distribution": "Sine"},
    "phase": {"distribution": "Uniform", "minimum": 0, "maximum": 2 * np.pi},
}
ANALYSIS = {
    "detectors": ["H1", "L1"],
    "duration": 4.0,
    "sampling-frequency": 1024.0,
    "minimum-frequency": {"H1": 20.0, "L1": 20.0},
    "maximum-frequency": {"H1": 256.0, "L1": 256.0},
}
WAVEFORM = {"approximant": "IMRPhenomXAS", "reference-frequency": 20.0}


@pytest.fixture(scope="module")
def event():
    """An injection in Gaussian noise from bilby's aLIGO design PSD, built as our inference does."""
    from twinflow.gw.inference.injections import make_injection

    f = np.linspace(0, 512, int(4 * 1024) // 2 + 1)
    ifo = bilby.gw.detector.get_empty_interferometer("H1")
    psd = ifo.power_spectral_density.power_spectral_density_interpolated(f)
    psd = np.where(np.isfinite(psd), psd, np.inf)
    return make_injection(
        "tiny",
        INJECTION,
        {"H1": psd, "L1": psd},
        ANALYSIS,
        WAVEFORM,
        TRIGGER,
        2.0,
        np.random.default_rng(3),
    )


def test_bilby_likelihood_from_our_event_data_is_ours(event):
    """The interferometers built from an EventData give bilby the likelihood we compute (also windowed)."""
    import dataclasses

    from twinflow.gw.inference.likelihood import GaussianLikelihood
    from twinflow.gw.inference.peer import bilby_priors, peer_likelihood
    from twinflow.gw.prior import build_prior

    rng = np.random.default_rng(2)
    n = 12
    parameters = {k: np.full(n, float(v)) for k, v in INJECTION.items()}
    parameters["geocent_time"] = np.full(n, TRIGGER)
    parameters["luminosity_distance"] = rng.uniform(500, 4000, n)
    parameters["theta_jn"] = rng.uniform(0, np.pi, n)
    for window_factor in (1.0, 0.9):
        data = dataclasses.replace(event, window_factor=window_factor)
        priors = bilby_priors(build_prior(PRIOR), TRIGGER)
        theirs = peer_likelihood(data, priors, WAVEFORM, phase_marginalization=True)
        reference = []
        for i in range(n):
            reference.append(theirs.log_likelihood_ratio({k: v[i] for k, v in parameters.items()}))
        with GaussianLikelihood(
            data, "IMRPhenomXAS", 20.0, phase_marginalization=True, processes=1
        ) as ours:
            np.testing.assert_allclose(
                ours.log_likelihood_ratio(parameters), reference, rtol=1e-6, atol=1e-8
            )
            assert theirs.noise_log_likelihood() == pytest.approx(ours.noise_log_likelihood)


def quadrature(event) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
    """Return ln BF (the integral of L / L_noise over the prior of (d_L, theta_jn), trapezoid
    rule) and the grid as weighted posterior samples."""
    from twinflow.gw.inference.likelihood import GaussianLikelihood

    distance = np.linspace(500, 4000, 81)
    theta = np.linspace(0, np.pi, 81)
    dd, tt = np.meshgrid(distance, theta, indexing="ij")
    parameters = {k: np.full(dd.size, float(v)) for k, v in INJECTION.items()}
    parameters["geocent_time"] = np.full(dd.size, TRIGGER)
    parameters["luminosity_distance"], parameters["theta_jn"] = dd.ravel(), tt.ravel()
    with GaussianLikelihood(
        event, "IMRPhenomXAS", 20.0, phase_marginalization=True, processes=1
    ) as likelihood:
        log_l = likelihood.log_likelihood_ratio(parameters).reshape(dd.shape)
    peak = log_l.max()
    density = np.exp(log_l - peak) * (np.sin(tt) / 2) / (4000 - 500)
    integral = np.trapezoid(np.trapezoid(density, theta, axis=1), distance)
    samples = {"luminosity_distance": dd.ravel(), "theta_jn": tt.ravel()}
    return float(np.log(integral) + peak), samples, density.ravel() / density.sum()


@pytest.fixture(scope="module")
def grid(event):
    return quadrature(event)


@pytest.fixture(scope="module")
def dynesty_result(event):
    from twinflow.gw.inference.peer import run_dynesty
    from twinflow.gw.prior import build_prior

    settings = {
        **WAVEFORM,
        "peer": {
            "nlive": 40,
            "dlogz": 0.5,
            "sample": "acceptance-walk",
            "naccept": 5,
            "npool": 1,
            "seed": 4,
        },
    }
    return run_dynesty(
        event, build_prior(PRIOR), settings, phase_marginalization=True, log=lambda *_: None
    )


def test_dynesty_peer_run_matches_quadrature(grid, dynesty_result):
    result = dynesty_result
    assert sorted(result.search_parameter_keys) == ["luminosity_distance", "theta_jn"]
    reference = grid[0]
    assert reference > 5  # a detectable signal: ln BF is informative
    error = result.log_evidence_err
    assert 0 < error < 1
    assert abs(result.log_bayes_factor - reference) < 3 * error + 0.1
    meta = result.meta_data["twinflow"]
    assert meta["phase_marginalization"] and meta["wall_time"] > 0
    # the posterior covers the injected distance
    assert (
        np.percentile(result.posterior["luminosity_distance"], 1)
        < INJECTION["luminosity_distance"]
        < np.percentile(result.posterior["luminosity_distance"], 99)
    )


def test_comparison_of_a_weighted_posterior_with_dynesty(tmp_path, grid, dynesty_result):
    """The quadrature grid as 'our' weighted posterior: small JSDs, ln Z within errors, the table."""
    import json

    import pandas as pd

    from twinflow.gw.inference.peer import collect_peer, compare_peer_event

    log_bf, samples, weights = grid
    frame = pd.DataFrame(samples)
    weighted = frame.assign(weights=weights)
    ours = bilby.core.result.Result(
        label="tiny",
        search_parameter_keys=list(samples),
        priors=dynesty_result.priors,
        posterior=frame.sample(2000, weights=weights, replace=True, random_state=0),
        nested_samples=weighted,
        log_bayes_factor=log_bf,
        log_evidence_err=0.01,
        sampling_time=2.0,
        sampler="twinflow-importance-sampling",
        meta_data={"effective_sample_size": 1 / np.sum(weights**2)},
    )
    ours.save_to_file(filename=str(tmp_path / "ours.json"), extension="json")
    dynesty_result.save_to_file(filename=str(tmp_path / "dynesty.json"), extension="json")
    (tmp_path / "summary.json").write_text(json.dumps({"phase_marginalized": True}))
    c = compare_peer_event(
        tmp_path / "ours.json",
        tmp_path / "dynesty.json",
        tmp_path / "comparison.json",
        ours_summary_path=tmp_path / "summary.json",
        corner_plot=tmp_path / "corner.png",
    )
    assert sorted(c["parameters"]) == ["luminosity_distance", "theta_jn"]
    assert 0 <= c["max_jsd"] < 0.05  # dynesty's ~100 posterior samples limit the agreement
    assert c["delta_log_evidence"] == pytest.approx(log_bf - dynesty_result.log_bayes_factor)
    assert abs(c["delta_log_evidence"]) < 3 * c["delta_log_evidence_error"] + 0.1
    assert c["speed_up"] == pytest.approx(c["wall_time"]["dynesty"] / 2.0)
    assert (tmp_path / "corner.png").stat().st_size > 0
    collected = collect_peer(
        [tmp_path / "comparison.json"],
        tmp_path / "peer.json",
        csv=tmp_path / "peer.csv",
        markdown=tmp_path / "peer.md",
    )
    assert collected["met"]["max_jsd"] == (c["max_jsd"] <= 0.005)
    assert pd.read_csv(tmp_path / "peer.csv")["event"].tolist() == ["tiny"]
    assert "| tiny |" in (tmp_path / "peer.md").read_text()
    # a dynesty run with another phase marginalisation than ours is refused
    (tmp_path / "summary.json").write_text(json.dumps({"phase_marginalized": False}))
    with pytest.raises(ConfigError, match="phase marginalisation"):
        compare_peer_event(
            tmp_path / "ours.json",
            tmp_path / "dynesty.json",
            tmp_path / "other.json",
            ours_summary_path=tmp_path / "summary.json",
        )


# --------------------------------------------------------------------------------------------
# Settings


@pytest.fixture
def gw_config():
    return validate_config(load_yaml(TEST_CONFIG))["gw"]


def test_settings_of_peer_and_pp_jobs(gw_config):
    inference = inference_settings_for(gw_config, "injection-1")
    peer = peer_settings_for(gw_config, "injection-1")
    for key in ("injection", "prior", "analysis", "approximant", "phase-marginalization"):
        assert peer[key] == inference[key]
    # how our sampler runs does not reach the dynesty job (editing it must not rerun dynesty)
    assert "n-samples" not in peer and "device" not in peer
    assert peer["peer"]["nlive"] == gw_config["peer"]["nlive"]
    assert peer["model-parameters"] == gw_config["train"]["parameters"]

    n = gw_config["pp"]["n-injections"]
    assert pp_event_names(gw_config) == [f"injection-{i}" for i in range(n)]
    pp = pp_settings_for(gw_config, "injection-2")
    expected = inference_settings_for(gw_config, "injection-2")
    assert pp["injection"] == {"index": 2, "seed": gw_config["pp"]["seed"]}
    assert {k: v for k, v in pp.items() if k != "injection"} == {
        k: v for k, v in expected.items() if k != "injection"
    }
    with pytest.raises(ConfigError, match=f"injection-{n}"):
        pp_settings_for(gw_config, f"injection-{n}")


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("peer", "events", ["injection-0", "GW999999"], "peer.events = 'GW999999'"),
        ("peer", "events", ["injection-99"], "peer.events = 'injection-99'"),
        ("peer", "events", ["../x"], "peer.events = '../x'"),
        ("peer", "nlive", 0, "peer.nlive = 0"),
        ("peer", "sample", "nuts", "peer.sample = 'nuts'"),
        ("peer", "dlogz", -1.0, "peer.dlogz = -1.0"),
        ("pp", "n-injections", 0, "pp.n-injections = 0"),
    ],
)
def test_bad_peer_and_pp_settings_stop_with_one_line(gw_config, section, key, value, message):
    # the cross-field checks (check_config, run when the Snakefile is parsed) ...
    bad = copy.deepcopy(gw_config)
    bad[section][key] = value
    with pytest.raises(ConfigError) as err:
        check_config(bad)
    assert message in str(err.value) and "\n" not in str(err.value)
    # ... and the schema, where it can say it, both name key and value in one line
    raw = load_yaml(TEST_CONFIG)
    raw["gw"][section][key] = value
    if key != "events":
        with pytest.raises(ConfigError) as err:
            validate_config(raw)
        assert f"gw.{section}.{key}" in str(err.value) and "\n" not in str(err.value)
