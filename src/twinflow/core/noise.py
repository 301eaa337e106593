"""Published detector noise curves and stationary coloured Gaussian noise drawn from them.

Used by the gw PSD simulator and the glitch branch's synthetic detector noise.
"""

from __future__ import annotations

import numpy as np

from twinflow.core.settings import ConfigError, require

#: Sensitivity curves shipped with LALSimulation (LIGO-T1800545, O3 "low" noise).
LALSIM_CURVES = {
    "aLIGO-O3-low": "SimNoisePSDaLIGOO3LowT1800545",
    "AdV-O3-low": "SimNoisePSDAdVO3LowT1800545",
}


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


def _fill_edges(frequencies: np.ndarray, psd: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Extend a PSD known on ``valid`` bins to all bins, holding its edge values constant."""
    if not valid.any():
        raise ConfigError("the source curve has no positive PSD values in the requested band")
    f_valid, p_valid = frequencies[valid], psd[valid]
    return np.exp(np.interp(frequencies, f_valid, np.log(p_valid)))


def source_psd(curve: str, frequencies: np.ndarray, low_frequency_cutoff: float) -> np.ndarray:
    """Return a one-sided PSD on ``frequencies`` from a LALSimulation curve or an ASD file.

    Below ``low_frequency_cutoff`` (and beyond the curve's tabulated range) the PSD is held at
    its edge value: the seismic wall below ~10 Hz would otherwise dominate the variance of the
    simulated strain without adding anything above the analysis band.
    """
    frequencies = np.asarray(frequencies, dtype=float)
    if curve in LALSIM_CURVES:
        import lal
        import lalsimulation

        delta_f = frequencies[1] - frequencies[0]
        series = lal.CreateREAL8FrequencySeries(
            "psd", 0, 0.0, delta_f, lal.DimensionlessUnit, len(frequencies)
        )
        getattr(lalsimulation, LALSIM_CURVES[curve])(series, low_frequency_cutoff)
        psd = np.array(series.data.data)
    else:
        table = np.loadtxt(curve)
        require(
            table.ndim == 2 and table.shape[1] >= 2,
            "ASD file",
            curve,
            "two columns: frequency [Hz], ASD [1/sqrt(Hz)]",
        )
        log_psd = np.interp(frequencies, table[:, 0], np.log(table[:, 1] ** 2))
        psd = np.where(
            (frequencies >= table[0, 0]) & (frequencies <= table[-1, 0]), np.exp(log_psd), 0.0
        )
    valid = (psd > 0) & (frequencies >= low_frequency_cutoff)
    return _fill_edges(frequencies, psd, valid)
