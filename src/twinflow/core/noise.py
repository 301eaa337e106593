"""Stationary coloured Gaussian noise with a given one-sided PSD, made in the frequency domain.

Used by the gw PSD simulator and the glitch branch's synthetic detector noise.
"""

from __future__ import annotations

import numpy as np


def coloured_noise(
    psd: np.ndarray, n_samples: int, sampling_frequency: float, rng: np.random.Generator
) -> np.ndarray:
    """Return ``n_samples`` of real Gaussian noise whose one-sided PSD is ``psd``.

    ``psd`` is given on the rfft grid of the output, ``f_k = k * fs / n`` for
    ``k = 0 .. n // 2`` (shape ``[..., n // 2 + 1]``; leading axes give independent series).

    Normalisation: for the unnormalised DFT ``X_k = sum_j x_j exp(-2 pi i jk/n)`` of stationary
    noise, ``E|X_k|^2 = n fs S(f_k) / 2``. Each positive-frequency bin gets a complex Gaussian
    with that variance (Hermitian symmetry is implicit in ``irfft``); the DC bin is zero and a
    Nyquist bin is real. A Welch estimate (scipy/gwpy ``density`` scaling) of the result returns
    ``psd``.
    """
    psd = np.asarray(psd, dtype=float)
    n_freq = n_samples // 2 + 1
    if psd.shape[-1] != n_freq:
        raise ValueError(
            f"psd has {psd.shape[-1]} frequency bins, expected {n_freq} for {n_samples} samples"
        )
    scale = np.sqrt(n_samples * sampling_frequency * psd / 2)
    shape = psd.shape
    spectrum = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2) * scale
    spectrum[..., 0] = 0.0
    if n_samples % 2 == 0:
        spectrum[..., -1] = rng.standard_normal(shape[:-1]) * scale[..., -1]
    return np.fft.irfft(spectrum, n=n_samples, axis=-1)
