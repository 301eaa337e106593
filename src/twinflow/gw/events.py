"""Events to analyse: injections drawn from the prior, or real strain around a trigger time.

An event is the data one inference job needs: frequency-domain strain and PSD per detector on
the uniform grid ``f = 0, 1/T, ..., f_s/2`` and the analysis band of each detector.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class EventData:
    """Frequency-domain strain and PSDs of one event on the uniform grid (bilby's conventions).

    ``strain[d]`` is the windowed FFT of the segment divided by the sampling frequency (bilby's
    ``nfft``); ``psd[d]`` the one-sided noise PSD. As in bilby, the likelihood uses
    ``psd * window_factor`` (the mean square of the window), which is 1 for data made directly
    in the frequency domain (injections).
    """

    name: str
    detectors: tuple[str, ...]
    trigger_time: float  # GPS s
    start_time: float  # GPS s, = trigger_time - (duration - post_trigger_duration)
    duration: float  # s
    sampling_frequency: float  # Hz
    minimum_frequency: dict[str, float]  # Hz, per detector
    maximum_frequency: dict[str, float]  # Hz, per detector
    strain: dict[str, np.ndarray]  # [n_f] complex, 1/Hz
    psd: dict[str, np.ndarray]  # [n_f], 1/Hz
    window_factor: float = 1.0
    injection_parameters: dict[str, float] | None = None
    metadata: dict = dataclasses.field(default_factory=dict)

    @property
    def frequencies(self) -> np.ndarray:
        """The uniform grid 0 .. f_s/2 in steps of 1/T, as bilby builds it."""
        n = int(round(self.duration * self.sampling_frequency)) // 2 + 1
        return np.linspace(0, self.sampling_frequency / 2, n)

    def frequency_mask(self, detector: str) -> np.ndarray:
        """Return the bins analysed for ``detector`` (f_min <= f <= f_max, as bilby)."""
        f = self.frequencies
        return (f >= self.minimum_frequency[detector]) & (f <= self.maximum_frequency[detector])
