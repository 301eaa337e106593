"""Background drawn from real LIGO strain (GWOSC files): whitened, recoloured to the configured
PSD, known events vetoed; the simulator's option noise-source: real-recoloured.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from twinflow.core.settings import (
    ConfigError,
)
from twinflow.glitch.validation import WHITEN_FDURATION, n_samples


class RealNoise:
    """Whitened stretches of real strain, drawn as recoloured windows (see module docstring)."""

    def __init__(self, settings: Mapping):
        from gwpy.timeseries import TimeSeries

        fs, n = settings["sampling-frequency"], n_samples(settings)
        real = settings["real-noise"]
        self.n, self.fs = n, fs
        self.stretches: list[np.ndarray] = []  # whitened, unit variance
        self.starts: list[np.ndarray] = []  # allowed window starts (sample indices) per stretch
        self.gps_start: list[float] = []  # GPS time of each stretch's first sample
        for path in real["paths"]:
            series = TimeSeries.read(str(path), format="hdf5.gwosc")
            rate = float(series.sample_rate.value)
            if rate < fs:
                raise ConfigError(
                    f"real-noise.paths: {str(path)!r} is sampled at {rate:g} Hz, below "
                    f"sampling-frequency {fs:g} Hz"
                )
            if not np.all(np.isfinite(series.value)):
                raise ConfigError(f"real-noise.paths: {str(path)!r} has NaN or inf samples")
            if rate != fs:
                series = series.resample(fs)
            white = series.whiten(
                fftlength=settings["duration"], method="median", fduration=WHITEN_FDURATION
            )
            values = np.asarray(white.value, dtype=float)
            times = float(series.t0.value) + np.arange(len(values)) / fs
            edge = int(WHITEN_FDURATION / 2 * fs)
            ok = np.zeros(len(values), dtype=bool)
            ok[edge : len(values) - edge] = True
            for t in real["veto-gps"]:
                ok &= np.abs(times - t) > real["veto-window"]
            # Unit variance over the usable samples, so the recoloured noise has the configured
            # PSD; its shape (tails, glitches, lines the whitening left) is the detector's.
            values = values / np.std(values[ok]) if ok.any() else values
            # A window may start at i when all its n samples are usable.
            usable = np.convolve(ok, np.ones(n), mode="valid") >= n
            starts = np.flatnonzero(usable)
            if len(starts):
                self.stretches.append(values)
                self.starts.append(starts)
                self.gps_start.append(float(times[0]))
        if not self.stretches:
            raise ConfigError(
                f"real-noise.paths: no {settings['duration']:g} s window of usable strain "
                "(files too short, or all vetoed)"
            )
        self.seconds = sum(len(s) for s in self.starts) / fs

    def draw(self, psd: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        """Return ``count`` windows [count, n] of real noise recoloured to the one-sided ``psd``
        (on the rfft grid of n samples): white noise of unit variance has PSD 2 / fs, so each
        frequency bin is scaled by sqrt(psd * fs / 2)."""
        sizes = np.array([len(s) for s in self.starts], dtype=float)
        which = rng.choice(len(self.stretches), size=count, p=sizes / sizes.sum())
        out = np.empty((count, self.n))
        for i, k in enumerate(which):
            start = int(self.starts[k][rng.integers(len(self.starts[k]))])
            out[i] = self.stretches[k][start : start + self.n]
        spectrum = np.fft.rfft(out, axis=-1) * np.sqrt(psd * self.fs / 2)
        spectrum[..., 0] = 0.0
        return np.fft.irfft(spectrum, n=self.n, axis=-1)
