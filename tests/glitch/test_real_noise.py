"""The simulator's real-noise background (``noise-source: real-recoloured``) from the GWOSC
strain in ../shared/data/gw/strain: recoloured to the configured PSD (checked with scipy's
Welch), the vetoed stretches left out, and a shard simulated on it."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import scipy.signal

from twinflow.core.settings import ConfigError
from twinflow.glitch.data import RealNoise, strain_psd


@pytest.fixture
def real_data_settings(glitch_config, shared_data) -> dict:
    folder = shared_data / "gw" / "strain"
    events = json.loads((folder / "events.json").read_text())
    data = copy.deepcopy(glitch_config["data"])
    data["noise-source"] = "real-recoloured"
    data["real-noise"] = {
        "paths": [str(folder / e[key]) for e in events.values() for key in ("fn_H1", "fn_L1")],
        "veto-gps": [e["tevent"] for e in events.values()],
        "veto-window": 2.0,
    }
    return data


def test_real_noise_is_recoloured_to_the_configured_psd(real_data_settings):
    data = real_data_settings
    noise = RealNoise(data)
    frequencies, psd = strain_psd(data)
    x = noise.draw(psd, 300, np.random.default_rng(0))
    fs = data["sampling-frequency"]
    _, welch = scipy.signal.welch(x, fs, nperseg=x.shape[-1] // 4, axis=-1)
    f_welch = np.fft.rfftfreq(x.shape[-1] // 4, 1 / fs)
    band = (f_welch >= 30) & (f_welch <= 0.8 * fs / 2)
    ratio = welch.mean(axis=0)[band] / np.interp(f_welch[band], frequencies, psd)
    assert 0.9 < np.median(ratio) < 1.1, np.median(ratio)
    assert np.all((ratio > 0.6) & (ratio < 1.6)), (ratio.min(), ratio.max())


def test_vetoed_stretches_are_never_drawn(real_data_settings):
    data = real_data_settings
    data["real-noise"]["veto-window"] = 5.0
    noise = RealNoise(data)
    fs, n = data["sampling-frequency"], noise.n
    events = data["real-noise"]["veto-gps"]
    assert len(noise.starts) == 6
    for starts, t0 in zip(noise.starts, noise.gps_start):
        begin, end = t0 + starts / fs, t0 + (starts + n - 1) / fs
        for t in events:
            assert np.all((end < t - 5.0) | (begin > t + 5.0))
        # gwpy's whitening filter corrupts 1 s at each end of a file: never used.
        assert begin.min() >= t0 + 1.0 and end.max() <= t0 + 31.0


def test_a_shard_simulates_on_real_noise(real_data_settings, glitch_config, tmp_path):
    from twinflow.glitch.data import read_shard, simulate_dataset_shard

    data = real_data_settings
    band = glitch_config["qtransform"]["frange"]
    out = tmp_path / "shard.h5"
    simulate_dataset_shard(data, 0, out, image_band=band)
    arrays, settings = read_shard(out)
    assert settings["noise-source"] == "real-recoloured"
    noise = arrays["strain"] - arrays["glitch_strain"] - arrays["chirp_strain"]
    assert np.all(np.isfinite(noise)) and noise.std() > 0


def test_missing_real_noise_files_are_refused(glitch_config):
    from twinflow.glitch.data import check_data_settings

    data = copy.deepcopy(glitch_config["data"])
    data["noise-source"] = "real-recoloured"
    with pytest.raises(ConfigError, match="real-noise.paths"):
        check_data_settings(data)
    data["real-noise"]["paths"] = ["/no/such/H-H1_LOSC_4_V2-0-32.hdf5"]
    with pytest.raises(ConfigError, match="no such file"):
        check_data_settings(data)
