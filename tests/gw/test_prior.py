"""The prior from structured YAML: bilby classes, fixed values, clear errors."""

import copy

import numpy as np
import pytest
import scipy.stats

from twinflow.core.settings import ConfigError, load_yaml
from twinflow.gw.prior import EXTRINSIC, build_prior, sample, sampled_parameters, split_prior


@pytest.fixture(scope="module")
def spec(repo):
    """The default prior of the schema (the configs may narrow it, e.g. fix the sky)."""
    return load_yaml(repo / "src" / "twinflow" / "schemas" / "gw-dataset.schema.yaml")[
        "properties"
    ]["prior"]["default"]


def test_default_prior_is_bilbys(spec):
    import bilby

    prior = build_prior(spec)
    assert isinstance(prior["chirp_mass"], bilby.gw.prior.UniformInComponentsChirpMass)
    assert isinstance(prior["theta_jn"], bilby.core.prior.Sine)
    assert isinstance(prior["dec"], bilby.core.prior.Cosine)
    intrinsic, extrinsic = split_prior(prior)
    assert set(extrinsic) == set(EXTRINSIC)
    assert {"chirp_mass", "mass_ratio", "theta_jn", "phase"} <= set(intrinsic)


def test_samples_follow_bilbys_distribution_and_repeat_with_the_seed(spec):
    prior = build_prior(spec)
    a = sample(prior, 4000, np.random.default_rng(5))
    b = sample(prior, 4000, np.random.default_rng(5))
    for name in prior:
        np.testing.assert_array_equal(a[name], b[name])
        # Kolmogorov-Smirnov against bilby's own CDF of the prior.
        assert scipy.stats.kstest(a[name], prior[name].cdf).pvalue > 1e-3, name
        assert np.all(a[name] >= prior[name].minimum) and np.all(a[name] <= prior[name].maximum)


def test_a_number_fixes_a_parameter(spec):
    from bilby.core.prior import DeltaFunction

    fixed = {**spec, "ra": 1.375, "dec": -0.2}
    prior = build_prior(fixed)
    assert isinstance(prior["ra"], DeltaFunction)
    assert "ra" not in sampled_parameters(prior) and "psi" in sampled_parameters(prior)
    np.testing.assert_array_equal(sample(prior, 3, np.random.default_rng(0))["ra"], 1.375)


def test_precessing_prior_builds():
    spec = {
        "chirp_mass": {
            "distribution": "UniformInComponentsChirpMass",
            "minimum": 10,
            "maximum": 100,
        },
        "mass_ratio": {
            "distribution": "UniformInComponentsMassRatio",
            "minimum": 0.125,
            "maximum": 1,
        },
        **{f"a_{i}": {"distribution": "Uniform", "minimum": 0, "maximum": 0.99} for i in (1, 2)},
        **{f"tilt_{i}": {"distribution": "Sine"} for i in (1, 2)},
        "phi_12": {"distribution": "Uniform", "minimum": 0, "maximum": 6.283185307179586},
        "phi_jl": {"distribution": "Uniform", "minimum": 0, "maximum": 6.283185307179586},
        "theta_jn": {"distribution": "Sine"},
        "phase": 0.0,
        "luminosity_distance": {
            "distribution": "UniformSourceFrame",
            "minimum": 100,
            "maximum": 6000,
        },
        "ra": 0.0,
        "dec": 0.0,
        "psi": 0.0,
        "geocent_time": 0.0,
    }
    prior = build_prior(spec)
    assert "tilt_1" in sampled_parameters(prior) and "phase" not in sampled_parameters(prior)


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            (
                "chirp_mass",
                {"distribution": "UniformInComponentsChirpMass", "minimum": 40, "maximum": 20},
            ),
            r"dataset\.prior\.chirp_mass\.minimum = 40 .*inverted prior bounds",
        ),
        (
            ("mass_ratio", {"distribution": "eval('1')", "minimum": 0.5, "maximum": 1}),
            r"dataset\.prior\.mass_ratio\.distribution = \"eval\('1'\)\"",
        ),
        (("spin_everything", 0.1), r"dataset\.prior\.spin_everything"),
        (("psi", "pi"), r"dataset\.prior\.psi = 'pi'"),
        (
            ("phase", {"distribution": "Uniform", "minimum": 0, "maximum": 1, "colour": "red"}),
            r"dataset\.prior\.phase = .*colour",
        ),
        (
            ("a_1", {"distribution": "Uniform", "minimum": 0, "maximum": 0.9}),
            "either aligned spins",
        ),
    ],
)
def test_bad_priors_name_key_and_value(spec, edit, match):
    bad = copy.deepcopy(spec)
    bad[edit[0]] = edit[1]
    with pytest.raises(ConfigError, match=match):
        build_prior(bad)


def test_missing_extrinsic_parameter_is_an_error(spec):
    bad = {k: v for k, v in spec.items() if k != "psi"}
    with pytest.raises(ConfigError, match=r"dataset\.prior.*psi"):
        build_prior(bad)
