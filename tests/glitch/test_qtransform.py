"""Q-transform images: equal to gwpy's q_transform, exact noise normalisation, fixed shape,
training-split-only normalisation, seeded split, and the Nyquist check."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import scipy.stats
from gwpy.timeseries import TimeSeries

from twinflow.core.noise import coloured_noise, source_psd
from twinflow.core.settings import ConfigError
from twinflow.glitch.data import read_shard, sine_gaussian, strain_psd
from twinflow.glitch.qplane import QTransform
from twinflow.glitch.qtransform import (
    MinMax,
    check_qtransform_settings,
    load_images,
    split_indices,
    transform_for,
)

FS, DURATION, SIZE = 1024, 2.0, 64


def _white_with_glitches(n_series: int = 3) -> np.ndarray:
    rng = np.random.default_rng(1)
    n = int(FS * DURATION)
    t = np.arange(n) / FS - DURATION / 2
    x = rng.standard_normal((n_series, n))
    x[0] += 8 * sine_gaussian(t - 0.05, 100, 10, 0.3)
    x[1] += 6 * sine_gaussian(t + 0.1, 60, 5, 1.0)
    return x


@pytest.mark.parametrize("norm", ["median", "mean"])
def test_images_equal_gwpy_q_transform(norm):
    """Same tiling, normalisation, plane choice and interpolation as gwpy (one image at a time)."""
    x = _white_with_glitches()
    qt = QTransform(
        DURATION,
        FS,
        image_size=SIZE,
        qrange=(4, 32),
        frange=(20, 256),
        outseg=(0.5, 1.5),
        norm=norm,
    )
    ours = qt(x)
    assert ours.shape == (3, SIZE, SIZE) and ours.dtype == np.float32
    for i in range(len(x)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = TimeSeries(x[i], t0=0, sample_rate=FS).q_transform(
                qrange=(4, 32),
                frange=(20, 256),
                gps=1.0,
                search=1.0,
                tres=1 / SIZE,
                fres=SIZE,
                logf=True,
                outseg=(0.5, 1.5),
                whiten=False,
                norm=norm,
            )
        expected = ref.value.T[:, :SIZE]  # gwpy: [time, frequency]; ours: [frequency, time]
        np.testing.assert_allclose(ours[i], expected, rtol=1e-4, atol=1e-4 * expected.max())
        np.testing.assert_allclose(qt.frequencies, ref.frequencies.value, rtol=1e-10)


def test_psd_normalisation_gives_unit_exponential_noise():
    """With the exact PSD, whitened noise energies are exponential with mean 1 (chi^2_2 / 2)."""
    n = int(FS * DURATION)
    f = np.fft.rfftfreq(n, 1 / FS)
    psd = source_psd("aLIGO-O3-low", f, 10.0)
    noise = coloured_noise(np.broadcast_to(psd, (60, len(f))), n, FS, np.random.default_rng(4))
    qt = QTransform(
        DURATION,
        FS,
        image_size=SIZE,
        qrange=(8, 8.0001),
        frange=(30, 200),
        outseg=(0.5, 1.5),
        norm="psd",
    )
    # One Q plane: no selection of the loudest plane, so the pixels are plain tile energies.
    assert len(qt.planes) == 1
    fseries = qt.whitened_fft(noise, np.sqrt(psd))
    samples = []
    for row in qt.planes[0].rows[::4]:
        energy = np.abs(qt._row_series(fseries, row)) ** 2
        expected = (
            2 * FS / (n * row.ntiles**2) * np.sum(row.window**2)
        )  # E|tile|^2 of whitened noise
        samples.append((energy / expected).ravel())
    samples = np.concatenate(samples)
    assert samples.mean() == pytest.approx(1.0, abs=0.03)
    assert np.mean(samples > 3) == pytest.approx(np.exp(-3), rel=0.1)
    assert scipy.stats.kstest(samples[::7], "expon").statistic < 0.02


def test_image_window_and_frequencies(glitch_config):
    g = glitch_config
    qt = transform_for(g["qtransform"], g["data"]["sampling-frequency"], g["data"]["duration"])
    size = g["qtransform"]["image-size"]
    assert qt.times.shape == (size,) and qt.frequencies.shape == (size,)
    assert qt.frequencies[0] == pytest.approx(g["qtransform"]["frange"][0])
    assert np.allclose(
        np.diff(np.log(qt.frequencies)), np.log(qt.frequencies[1] / qt.frequencies[0])
    )
    half = g["qtransform"]["window"] / 2
    assert qt.times[0] == pytest.approx(g["data"]["duration"] / 2 - half)


def test_minmax_uses_training_statistics_only():
    rng = np.random.default_rng(0)
    train = rng.exponential(size=(20, 2, 8, 8))
    test = 3 * rng.exponential(size=(5, 2, 8, 8))
    scale = MinMax.fit(train, log=True)
    ref_min = np.log1p(train).min(axis=(0, 2, 3))
    ref_max = np.log1p(train).max(axis=(0, 2, 3))
    np.testing.assert_allclose(scale.minimum, ref_min)
    got = scale.transform(test)
    np.testing.assert_allclose(
        got,
        (np.log1p(test) - ref_min[None, :, None, None]) / (ref_max - ref_min)[None, :, None, None],
        rtol=1e-5,
    )
    assert got.max() > 1  # the test split was not rescaled to its own range
    np.testing.assert_allclose(scale.inverse(got), test, rtol=1e-4)


def test_images_file_normalised_with_training_split(easy_images):
    g, shards, images = easy_images
    full = load_images(images)
    split = h5py.File(images, "r")["split"][()]
    size = g["qtransform"]["image-size"]
    assert full.aux.shape == (len(split), g["data"]["n-auxiliary"], size, size)
    assert full.strain.shape == (len(split), size, size)
    train = split == 0
    # Training images span exactly [0, 1] per channel; the other splits are not rescaled.
    assert full.strain[train].min() == pytest.approx(0, abs=1e-6)
    assert full.strain[train].max() == pytest.approx(1, abs=1e-6)
    # Recompute the raw energies of the test split independently and apply the stored statistics.
    arrays = np.concatenate([read_shard(p)[0]["strain"] for p in shards])
    data_settings = g["data"]
    qt = transform_for(
        g["qtransform"], data_settings["sampling-frequency"], data_settings["duration"]
    )
    raw = qt(arrays[split == 2], np.sqrt(strain_psd(data_settings)[1]))
    raw = np.maximum(raw, 0)  # cubic-spline interpolation can dip just below zero
    lo, hi = full.strain_scale.minimum[0], full.strain_scale.maximum[0]
    np.testing.assert_allclose(
        full.strain[split == 2], (np.log1p(raw) - lo) / (hi - lo), atol=1e-5
    )
    own = (np.log1p(raw) - np.log1p(raw).min()) / np.ptp(np.log1p(raw))
    assert not np.allclose(full.strain[split == 2], own, atol=1e-3)


def test_split_is_seeded_and_sized():
    a, b = split_indices(200, [0.7, 0.15, 0.15], 5), split_indices(200, [0.7, 0.15, 0.15], 5)
    np.testing.assert_array_equal(a, b)
    assert np.bincount(a).tolist() == [140, 30, 30]
    assert not np.array_equal(a, split_indices(200, [0.7, 0.15, 0.15], 6))


def test_frequency_range_above_nyquist_is_rejected(glitch_config):
    q = glitch_config["qtransform"]
    fs = glitch_config["data"]["sampling-frequency"]
    with pytest.raises(ConfigError, match=r"frange.*Nyquist"):
        check_qtransform_settings({**q, "frange": [20, fs]}, fs, 2.0)
    # Below Nyquist but above what the lowest-Q tiles reach: also rejected, with the limit named.
    with pytest.raises(ConfigError, match=r"frange.*sqrt\(11\)"):
        check_qtransform_settings({**q, "frange": [20, 0.45 * fs]}, fs, 2.0)
