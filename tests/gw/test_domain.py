"""Frequency domains: Dingo-T1's multibanded grid, decimation, node proposal, bad nodes."""

import numpy as np
import pytest

from twinflow.core.settings import ConfigError
from twinflow.gw.domain import (
    MultibandedFrequencyDomain,
    UniformFrequencyDomain,
    decimation_loss,
    domain_from_settings,
    propose_nodes,
)

DINGO_T1_NODES = [20, 38, 50, 66, 82, 1810]


@pytest.fixture(scope="module")
def dingo_t1():
    return MultibandedFrequencyDomain(DINGO_T1_NODES, duration=8, sampling_frequency=4096)


def test_dingo_t1_domain_sizes(dingo_t1):
    # Band widths / bin widths: 18/0.125, 12/0.25, 16/0.5, 16/1, 1728/2.
    assert list(dingo_t1.bins_per_band) == [144, 48, 32, 16, 864]
    assert dingo_t1.n_bins == 1104
    assert dingo_t1.n_tokens == 69
    assert 3 * dingo_t1.n_tokens == 207
    assert list(np.unique(dingo_t1.delta_f)) == [0.125, 0.25, 0.5, 1.0, 2.0]


def test_dingo_t1_sample_frequencies_follow_dingo(dingo_t1):
    # Dingo: a bin's frequency is the mean of the base-grid frequencies it averages, and the
    # first bin of each band starts at the node.
    f = dingo_t1.sample_frequencies
    assert f[0] == 20.0 and f[143] == 20.0 + 143 * 0.125
    assert f[144] == pytest.approx((38.0 + 38.125) / 2)
    assert f[144 + 48] == pytest.approx(np.mean(50 + 0.125 * np.arange(4)))
    assert f[-1] == pytest.approx(np.mean(1808 + 0.125 * np.arange(16)))
    edges = dingo_t1.token_edges
    assert edges[0, 0] == 20 and edges[-1, 1] == 1810
    assert np.all(edges[1:, 0] == edges[:-1, 1])  # tokens tile the band
    assert set(np.round(edges[:, 0], 6)) >= {
        20.0,
        38.0,
        50.0,
        66.0,
        82.0,
    }  # band edges are token edges


def test_decimation_is_the_mean_over_each_bins_base_frequencies(dingo_t1):
    rng = np.random.default_rng(0)
    base = dingo_t1.base
    data = rng.standard_normal((2, len(base))) + 1j * rng.standard_normal((2, len(base)))
    decimated = dingo_t1.decimate(data)
    # Independent reference: select the base bins of each multibanded bin by frequency.
    f = base.frequencies
    expected = np.empty((2, dingo_t1.n_bins), dtype=complex)
    nodes = DINGO_T1_NODES
    i = 0
    for j in range(len(nodes) - 1):
        width = 2**j / 8
        for lower in np.arange(nodes[j], nodes[j + 1], width):
            sel = (f >= lower - 1e-9) & (f < lower + width - 1e-9)
            expected[:, i] = data[:, sel].mean(axis=1)
            i += 1
    assert i == dingo_t1.n_bins
    np.testing.assert_allclose(decimated, expected, rtol=1e-12)
    # A linear function decimates to the bin frequencies; the decimated range alone works too.
    np.testing.assert_allclose(dingo_t1.decimate(f), dingo_t1.sample_frequencies, rtol=1e-12)
    np.testing.assert_allclose(dingo_t1.decimate(data[:, dingo_t1.uniform_slice]), decimated)
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(dingo_t1.decimate(torch.as_tensor(data)).numpy(), decimated)


def test_settings_round_trip(dingo_t1):
    again = domain_from_settings(dingo_t1.settings)
    np.testing.assert_array_equal(again.sample_frequencies, dingo_t1.sample_frequencies)


@pytest.mark.parametrize(
    "nodes, match",
    [
        ([20, 37, 50], "not a whole number of 16-bin tokens"),  # band 0 of 17 Hz
        ([20, 38, 51, 1810], "not a whole number"),
        ([20, 38.01, 50], "not on the uniform grid"),
        ([20, 38, 50, 66, 82, 2100], "exceeds the Nyquist frequency 2048 Hz"),
        ([20], "at least two"),
    ],
)
def test_bad_nodes_name_the_key_and_value(nodes, match):
    with pytest.raises(ConfigError, match=match) as err:
        MultibandedFrequencyDomain(nodes, 8, 4096)
    assert "nodes" in str(err.value)


def test_decimation_loss_is_cauchy_schwarz():
    h = np.array([[1, 1, 1, 1, 1j, -1j, 1, -1]])
    np.testing.assert_allclose(decimation_loss(h, 4), [[0.0, 1.0]], atol=1e-15)


def chirp(f, chirp_mass_seconds, tc=0.0):
    """Leading-order (Newtonian) stationary-phase chirp h(f) ∝ f^(-7/6) e^{-iΨ(f)}."""
    psi = 2 * np.pi * f * tc + 3 / 4 * (8 * np.pi * chirp_mass_seconds * f) ** (-5 / 3)
    return f ** (-7 / 6) * np.exp(-1j * psi)


def test_proposed_nodes_keep_the_power_loss_below_tolerance():
    base = UniformFrequencyDomain(4, 1024)
    f = np.maximum(base.frequencies, 1e-3)
    msun = 4.925490947e-6  # G M_sun / c^3 [s]
    waveforms = np.stack(
        [chirp(f, mc * msun, tc) for mc in (15, 20, 30) for tc in (-0.05, 0.0, 0.05)]
    )
    waveforms[:, f < 20] = 0
    tol = 1e-3
    nodes = propose_nodes(waveforms, 4, 1024, 20, 256, tol)
    domain = MultibandedFrequencyDomain(nodes, 4, 1024)  # valid: token edges, whole tokens
    assert nodes[0] == 20 and nodes[-1] == 256 and len(nodes) > 2
    assert domain.n_bins < (256 - 20) * 4
    # Power kept on the multibanded grid vs the uniform grid (white noise): within tolerance.
    uniform_power = np.sum(np.abs(waveforms[:, domain.uniform_slice]) ** 2, axis=1) * base.delta_f
    mfd_power = np.sum(domain.delta_f * np.abs(domain.decimate(waveforms)) ** 2, axis=1)
    loss = 1 - mfd_power / uniform_power
    assert np.all(loss >= -1e-12) and np.all(loss <= tol)
    # A looser tolerance gives a coarser grid.
    coarse = MultibandedFrequencyDomain(propose_nodes(waveforms, 4, 1024, 20, 256, 1e-2), 4, 1024)
    assert coarse.n_bins <= domain.n_bins


def test_propose_nodes_rejects_a_band_of_partial_tokens():
    with pytest.raises(ConfigError, match="whole number of 16-bin tokens"):
        propose_nodes(np.zeros((1, 2049)), 4, 1024, 20, 255, 1e-3)
