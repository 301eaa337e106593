"""Waveforms equal bilby's lal_binary_black_hole, on the uniform grid and decimated."""

import numpy as np
import pytest

from twinflow.core.settings import ConfigError
from twinflow.gw.domain import MultibandedFrequencyDomain
from twinflow.gw.prior import build_prior, sample, split_prior
from twinflow.gw.waveforms import WaveformGenerator

ALIGNED = {
    "chirp_mass": {"distribution": "UniformInComponentsChirpMass", "minimum": 20, "maximum": 40},
    "mass_ratio": {"distribution": "UniformInComponentsMassRatio", "minimum": 0.5, "maximum": 1},
    "chi_1": {"distribution": "Uniform", "minimum": -0.8, "maximum": 0.8},
    "chi_2": {"distribution": "Uniform", "minimum": -0.8, "maximum": 0.8},
    "theta_jn": {"distribution": "Sine"},
    "phase": {"distribution": "Uniform", "minimum": 0, "maximum": 6.283185307179586},
    "luminosity_distance": 500.0,
    "ra": 0.0,
    "dec": 0.0,
    "psi": 0.0,
    "geocent_time": 0.0,
}
PRECESSING = {
    **{k: v for k, v in ALIGNED.items() if k not in ("chi_1", "chi_2")},
    "a_1": {"distribution": "Uniform", "minimum": 0, "maximum": 0.9},
    "a_2": {"distribution": "Uniform", "minimum": 0, "maximum": 0.9},
    "tilt_1": {"distribution": "Sine"},
    "tilt_2": {"distribution": "Sine"},
    "phi_12": {"distribution": "Uniform", "minimum": 0, "maximum": 6.283185307179586},
    "phi_jl": {"distribution": "Uniform", "minimum": 0, "maximum": 6.283185307179586},
}
# T = 4 s, 20-256 Hz: bands of 0.25, 0.5, 1 Hz.
NODES = [20, 64, 96, 256]


def bilby_polarizations(params, domain, approximant, f_ref, distance):
    from bilby.gw.conversion import convert_to_lal_binary_black_hole_parameters
    from bilby.gw.source import lal_binary_black_hole

    converted, _ = convert_to_lal_binary_black_hole_parameters(dict(params))
    keys = (
        "mass_1",
        "mass_2",
        "a_1",
        "tilt_1",
        "phi_12",
        "a_2",
        "tilt_2",
        "phi_jl",
        "theta_jn",
        "phase",
    )
    out = lal_binary_black_hole(
        domain.base.frequencies,
        **{k: converted.get(k, 0.0) for k in keys},
        luminosity_distance=distance,
        waveform_approximant=approximant,
        reference_frequency=f_ref,
        minimum_frequency=domain.f_min,
        maximum_frequency=domain.f_max,
    )
    return out["plus"], out["cross"]


@pytest.mark.parametrize(
    "spec, approximant, n",
    [
        (ALIGNED, "IMRPhenomXAS", 6),
        (ALIGNED, "IMRPhenomD", 3),
        (PRECESSING, "IMRPhenomXPHM", 2),
        (PRECESSING, "IMRPhenomPv2", 3),
    ],
)
def test_polarizations_equal_bilby(spec, approximant, n):
    domain = MultibandedFrequencyDomain(NODES, 4, 1024)
    intrinsic, _ = split_prior(build_prior(spec))
    params = sample(intrinsic, n, np.random.default_rng(11))
    generator = WaveformGenerator(
        domain, approximant, reference_frequency=20.0, reference_distance=100.0
    )
    h_plus_u, h_cross_u = generator.uniform(params)
    h_plus, h_cross = generator(params)
    assert h_plus.shape == (n, domain.n_bins)
    for i in range(n):
        ref_plus, ref_cross = bilby_polarizations(
            {k: v[i] for k, v in params.items()}, domain, approximant, 20.0, 100.0
        )
        scale = np.max(np.abs(ref_plus))
        assert scale > 0
        np.testing.assert_allclose(
            h_plus_u[i], ref_plus[domain.uniform_slice], rtol=0, atol=1e-10 * scale
        )
        np.testing.assert_allclose(
            h_cross_u[i], ref_cross[domain.uniform_slice], rtol=0, atol=1e-10 * scale
        )
        np.testing.assert_allclose(
            h_plus[i], domain.decimate(ref_plus), rtol=0, atol=1e-10 * scale
        )
        np.testing.assert_allclose(
            h_cross[i], domain.decimate(ref_cross), rtol=0, atol=1e-10 * scale
        )


def test_reference_distance_scales_as_one_over_distance():
    domain = MultibandedFrequencyDomain(NODES, 4, 1024)
    params = sample(split_prior(build_prior(ALIGNED))[0], 2, np.random.default_rng(1))
    near = WaveformGenerator(domain, "IMRPhenomXAS", 20.0, 100.0)(params)[0]
    far = WaveformGenerator(domain, "IMRPhenomXAS", 20.0, 400.0)(params)[0]
    np.testing.assert_allclose(far * 4, near, rtol=1e-10)


@pytest.mark.parametrize(
    "approximant, match",
    [
        ("IMRPhenomXYZ", "LALSimulation knows no such approximant"),
        ("TaylorT4", "it is not a frequency-domain approximant"),
    ],
)
def test_bad_approximant_names_the_key(approximant, match):
    domain = MultibandedFrequencyDomain(NODES, 4, 1024)
    with pytest.raises(
        ConfigError, match=rf"dataset\.approximant = '{approximant}' is invalid: {match}"
    ):
        WaveformGenerator(domain, approximant, 20.0)
