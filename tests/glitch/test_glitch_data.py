"""Synthetic Glitch Flow data: coloured noise, SNRs, the coupling transfer, seeding, chirps."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.signal

from twinflow.core.settings import ConfigError
from twinflow.glitch.data import (
    check_data_settings,
    coupling_transfer,
    delay_series,
    newtonian_chirp,
    optimal_snr,
    read_shard,
    sample_timeseries,
    simulate_dataset_shard,
    simulate_shard,
    sine_gaussian,
    strain_psd,
)


def test_optimal_snr_matches_parseval_for_white_noise():
    """For a flat PSD S0, rho^2 = 4 int |h~|^2 / S0 df = (2 / S0) int h^2 dt."""
    fs, n = 1024, 4096
    t = np.arange(n) / fs - 2
    h = 3.0 * sine_gaussian(t, 80.0, 9.0, 0.4)
    s0 = 0.5
    rho = optimal_snr(h, np.full(n // 2 + 1, s0), fs)
    assert rho == pytest.approx(np.sqrt(2 / s0 * np.sum(h**2) / fs), rel=1e-6)


def test_delay_is_exact_and_lowpass_is_butterworth(glitch_config):
    fs = 512
    t = np.arange(1024) / fs - 1
    y = sine_gaussian(t, 60.0, 6.0, 0.0)
    shifted = delay_series(y, 0.0125, fs)
    np.testing.assert_allclose(shifted, sine_gaussian(t - 0.0125, 60.0, 6.0, 0.0), atol=1e-9)
    d = copy.deepcopy(glitch_config["data"])
    d["sampling-frequency"] = fs
    d["coupling"] = {"gain": [2.0], "delay": [0.0], "lowpass": [80.0], "quadratic": [0.0]}
    sos = scipy.signal.butter(2, 80.0, fs=fs, output="sos")
    np.testing.assert_allclose(
        coupling_transfer(y, 0, d), 2.0 * scipy.signal.sosfilt(sos, y), atol=1e-12
    )


def test_quadratic_coupling_puts_power_at_twice_the_frequency(glitch_config):
    fs = 512
    t = np.arange(1024) / fs - 1
    y = sine_gaussian(t, 50.0, 20.0, 0.0)
    d = copy.deepcopy(glitch_config["data"])
    d["sampling-frequency"] = fs
    d["coupling"] = {"gain": [1.0], "delay": [0.0], "lowpass": [None], "quadratic": [0.5]}
    spectrum = np.abs(np.fft.rfft(coupling_transfer(y, 0, d)))
    f = np.fft.rfftfreq(len(t), 1 / fs)
    assert spectrum[np.argmin(abs(f - 100))] > 0.05 * spectrum[np.argmin(abs(f - 50))]
    assert (
        np.abs(np.fft.rfft(y))[np.argmin(abs(f - 100))] < 1e-6 * spectrum[np.argmin(abs(f - 50))]
    )


def test_newtonian_chirp_frequency_follows_the_leading_order_law():
    fs, mc = 4096, 10.0
    t = np.arange(-2 * fs, 0) / fs
    h = newtonian_chirp(t, mc, 0.0)
    # instantaneous frequency from the analytic signal, at 1 s and 0.5 s before coalescence
    phase = np.unwrap(np.angle(scipy.signal.hilbert(h)))
    f_inst = np.gradient(phase, 1 / fs) / (2 * np.pi)
    mc_s = mc * 4.925490947641267e-06
    for tau in (1.0, 0.5):
        i = np.argmin(abs(t + tau))
        expected = (5 / tau) ** (3 / 8) / (8 * np.pi) * mc_s ** (-5 / 8)  # GW frequency
        assert f_inst[i] == pytest.approx(expected, rel=0.02)


def test_shard_noise_psd_snrs_and_seeding(glitch_config, tmp_path):
    g = glitch_config
    d = g["data"]
    band = tuple(g["qtransform"]["frange"])
    arrays = simulate_shard(d, 0, band)
    n_per = d["samples-per-shard"]
    assert arrays["strain"].shape == (n_per, int(d["sampling-frequency"] * d["duration"]))
    assert arrays["aux"].shape == (n_per, d["n-auxiliary"], arrays["strain"].shape[1])
    # Noise: Welch (scipy) of the glitch- and chirp-free strain matches the source PSD in band.
    f, psd = strain_psd(d)
    noise = arrays["strain"] - arrays["glitch_strain"] - arrays["chirp_strain"]
    fw, welch = scipy.signal.welch(
        noise.astype(float), fs=d["sampling-frequency"], nperseg=len(f) * 2 - 2, axis=-1
    )
    band_mask = (fw > 30) & (fw < 200)
    ratio = welch.mean(axis=0)[band_mask] / psd[band_mask]
    assert np.median(ratio) == pytest.approx(1.0, rel=0.1)
    # SNR labels are the optimal SNR in the image band and lie in the configured range.
    glitchy = arrays["has_glitch"]
    assert glitchy.any() and (~glitchy).any()
    snr = optimal_snr(
        arrays["glitch_strain"][glitchy].astype(float), psd, d["sampling-frequency"], band
    )
    np.testing.assert_allclose(arrays["glitch_snr"][glitchy], snr, rtol=1e-3)
    assert (
        snr.min() >= d["glitch"]["snr"][0] * 0.999 and snr.max() <= d["glitch"]["snr"][1] * 1.001
    )
    assert not arrays["glitch_strain"][~glitchy].any()
    # Seeded: the same shard twice is identical, another shard differs.
    again = simulate_shard(d, 0, band)
    np.testing.assert_array_equal(arrays["aux"], again["aux"])
    assert not np.array_equal(arrays["strain"], simulate_shard(d, 1, band)["strain"])
    # Written with its settings, and readable as gwpy TimeSeries.
    path = tmp_path / "shard.h5"
    simulate_dataset_shard(d, 0, path, image_band=band)
    stored, settings = read_shard(path)
    np.testing.assert_array_equal(stored["strain"], arrays["strain"])
    assert settings == d
    series = sample_timeseries(path, 3)
    assert len(series) == 1 + d["n-auxiliary"]
    first = next(iter(series.values()))
    assert first.sample_rate.value == d["sampling-frequency"]
    np.testing.assert_allclose(first.value, arrays["strain"][3])


def test_witness_glitch_leads_strain_by_the_configured_delay(glitch_config):
    g = copy.deepcopy(glitch_config)
    d = g["data"]
    d["n-auxiliary"] = 1
    d["clean-fraction"] = 0.0
    d["glitch"]["types"] = {"sine-gaussian": 1.0}
    d["coupling"] = {"gain": [1.0], "delay": [0.03125], "lowpass": [None], "quadratic": [0.0]}
    d["samples-per-shard"] = 4
    arrays = simulate_shard(d, 0, tuple(g["qtransform"]["frange"]))
    fs = d["sampling-frequency"]
    for i in range(4):
        aux_glitch = arrays["aux"][i, 0]  # the witness: its noise plus the glitch
        lag = np.argmax(
            scipy.signal.correlate(arrays["glitch_strain"][i], aux_glitch, mode="full")
        ) - (len(aux_glitch) - 1)
        assert lag / fs == pytest.approx(0.03125, abs=1.5 / fs)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("n-auxiliary", 0, r"n-auxiliary = 0"),
        ("clean-fraction", 1.5, r"clean-fraction = 1.5"),
        ("noise-curve", "nope", r"noise-curve = 'nope'"),
    ],
)
def test_bad_data_settings_name_key_and_value(glitch_config, key, value, match):
    d = {**glitch_config["data"], key: value}
    with pytest.raises(ConfigError, match=match):
        check_data_settings(d, tuple(glitch_config["qtransform"]["frange"]))


def test_glitches_below_the_image_band_are_rejected(glitch_config, tmp_path):
    d = copy.deepcopy(glitch_config["data"])
    d["glitch"]["frequency"] = [10, 80]
    with pytest.raises(ConfigError, match=r"glitch.frequency = \[10, 80\].*lower frequency"):
        simulate_dataset_shard(d, 0, tmp_path / "x.h5", image_band=(20, 128))
    assert not list(tmp_path.iterdir())
