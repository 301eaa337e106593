"""Coloured noise: variance from Parseval, Welch returns the input PSD, reproducibility."""

import numpy as np
import pytest
import scipy.signal

from twinflow.core.noise import coloured_noise
from twinflow.core.seeding import numpy_rng


def test_white_noise_variance_is_psd_times_nyquist():
    fs, n, s0 = 256.0, 2**16, 3.0e-3
    x = coloured_noise(np.full(n // 2 + 1, s0), n, fs, np.random.default_rng(1))
    assert x.shape == (n,) and np.isrealobj(x)
    # one-sided PSD S0 up to fs/2 integrates to variance S0 * fs / 2 (the DC bin is dropped)
    assert np.var(x) == pytest.approx(s0 * fs / 2, rel=0.02)


def test_welch_of_coloured_noise_returns_the_psd():
    fs, n = 512.0, 2**18
    f = np.fft.rfftfreq(n, 1 / fs)
    psd = 1e-3 * (1 + (f / 40.0) ** 2) ** -1 + 1e-6
    x = coloured_noise(np.stack([psd, 4 * psd]), n, fs, np.random.default_rng(2))
    fw, pw = scipy.signal.welch(x, fs=fs, nperseg=1024, axis=-1)
    band = (fw > 5) & (fw < 200)
    for row, scale in zip(pw, (1, 4)):
        ratio = row[band] / (scale * np.interp(fw[band], f, psd))
        assert np.median(ratio) == pytest.approx(1, abs=0.03)


def test_streams_are_reproducible_and_independent():
    a = numpy_rng(5, "H1", 3).standard_normal(4)
    np.testing.assert_array_equal(a, numpy_rng(5, "H1", 3).standard_normal(4))
    assert not np.allclose(a, numpy_rng(5, "L1", 3).standard_normal(4))
    assert not np.allclose(a, numpy_rng(6, "H1", 3).standard_normal(4))
