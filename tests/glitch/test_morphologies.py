"""The Gravity-Spy-like glitch classes against their documented parametrisation, checked with
independent tools (scipy's Hilbert transform, peak finding, FFT), and a shard with every class."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.signal

from twinflow.glitch.data import (
    GLITCH_TYPES,
    blip,
    koi_fish,
    repeated_blips,
    tomte,
    wandering_line,
    whistle,
)

FS = 4096
T = np.arange(-1, 1, 1 / FS)


def instantaneous_frequency(y: np.ndarray) -> np.ndarray:
    phase = np.unwrap(np.angle(scipy.signal.hilbert(y)))
    return np.gradient(phase) * FS / (2 * np.pi)


def peak_frequency(y: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(y))
    return float(np.fft.rfftfreq(len(y), 1 / FS)[np.argmax(spectrum)])


@pytest.mark.parametrize("f_start, f_end", [(60, 240), (240, 60)])
def test_whistle_sweeps_linearly_between_its_frequencies(f_start, f_end):
    y = whistle(T, f_start, f_end, 0.3, 0.0)
    assert np.all(y[np.abs(T) > 0.15] == 0)
    inside = np.abs(T) < 0.1  # away from the Tukey tapers
    expected = f_start + (f_end - f_start) * (T[inside] + 0.15) / 0.3
    np.testing.assert_allclose(instantaneous_frequency(y)[inside], expected, atol=3.0)


def test_wandering_line_stays_within_its_excursion():
    y = wandering_line(T, 100.0, 8.0, 2.0, 0.3)
    f = instantaneous_frequency(y)[np.abs(T) < 0.7]
    assert 100 - 8 - 1 < f.min() < 100 - 6 and 100 + 6 < f.max() < 100 + 8 + 1


def test_tomte_is_a_low_frequency_burst():
    y = tomte(T, 40.0, 0.0)
    assert abs(peak_frequency(y) - 40.0) < 3.0
    # Q 2: tau = Q / (sqrt(2) pi f), the envelope falls to 1/e at |t| = tau.
    tau = 2 / (np.sqrt(2) * np.pi * 40)
    assert np.all(np.abs(y[np.abs(T) > 3 * tau]) < np.exp(-9) + 1e-12)


def test_koi_fish_adds_a_low_frequency_tail_to_a_blip():
    width = 0.0008
    head = blip(T, width)
    fish = koi_fish(T, width, 30.0, 0.6, 0.0)
    f = np.fft.rfftfreq(len(T), 1 / FS)
    low = f < 50

    def low_share(y):
        power = np.abs(np.fft.rfft(y)) ** 2
        return power[low].sum() / power.sum()

    assert np.max(np.abs(fish)) == pytest.approx(1.0)
    assert low_share(fish) > 0.3 > 0.05 > low_share(head)


@pytest.mark.parametrize("count", [2, 3, 4])
def test_repeated_blips_have_count_peaks_spacing_apart(count):
    y = repeated_blips(T, 0.002, count, 0.1)
    # A blip is the derivative of a Gaussian: one positive lobe each, at t = -width.
    peaks, _ = scipy.signal.find_peaks(y, height=0.5)
    assert len(peaks) == count
    np.testing.assert_allclose(np.diff(T[peaks]), 0.1, atol=2 / FS)


def test_a_shard_with_every_class(glitch_config):
    from twinflow.glitch.data import check_data_settings, optimal_snr, simulate_shard, strain_psd

    data = copy.deepcopy(glitch_config["data"])
    data["glitch"]["types"] = {name: 1.0 for name in GLITCH_TYPES}
    data.update({"clean-fraction": 0.0, "samples-per-shard": 80})
    data["chirps"]["fraction"] = 0.0
    band = tuple(glitch_config["qtransform"]["frange"])
    check_data_settings(data, band)
    arrays = simulate_shard(data, 0, band)
    assert set(arrays["glitch_type"]) == set(range(len(GLITCH_TYPES)))
    _, psd = strain_psd(data)
    snr = optimal_snr(arrays["glitch_strain"].astype(float), psd, data["sampling-frequency"], band)
    low, high = data["glitch"]["snr"]
    assert np.all((snr > 0.99 * low) & (snr < 1.01 * high))
