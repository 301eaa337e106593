"""Events to analyse: injections drawn from the prior, or real strain around a trigger time.

An event is the data one inference job needs (:class:`EventData`): frequency-domain strain and
PSD per detector on the uniform grid ``f = 0, 1/T, ..., f_s/2`` and the analysis band of each
detector. Settings use bilby_pipe's names (``config/README.md``, ``gw.inference.events``):

- ``trigger-time`` [GPS s]; the segment of ``duration`` T starts at
  ``trigger-time - (T - post-trigger-duration)``, as in bilby_pipe;
- ``detectors``, ``duration``, ``sampling-frequency``, ``minimum-frequency``,
  ``maximum-frequency`` (a number or a per-detector map): default to the gw section's;
- ``data-dict``: per detector, a strain file (GWOSC HDF5, GWF or ASCII); ``channel-dict``: the
  channel to read from GWF files;
- ``psd-dict``: per detector, a two-column text file (frequency [Hz], PSD [1/Hz]); a detector
  without one gets a Welch estimate (median average, fftlength T, as the PSD banks) from the
  off-source data of its own file: everything outside the analysis segment, before and after.

Real strain is resampled to ``sampling-frequency`` (integer factors, gwpy's anti-aliasing
filter, over the whole file), Tukey-windowed with ``tukey-roll-off`` and Fourier transformed
exactly as bilby's ``InterferometerStrainData`` does (rfft / f_s; the likelihood then uses
``PSD x window_factor``, the window's mean square).

Injections: parameters drawn from the prior, the PSD of each detector drawn from its PSD bank,
Gaussian noise from that PSD made in the frequency domain (bilby's convention,
``E|n(f)|^2 = T S(f) / 2``), plus the signal projected with the likelihood's own code.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from twinflow.core.settings import (
    require,
)
from twinflow.gw.validation import (
    check_band,
    frequency_map,
)


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

    def with_analysis(
        self, detectors=None, minimum_frequency=None, maximum_frequency=None, name=None
    ) -> EventData:
        """Return the same data analysed with other detectors or bands (for settings sweeps)."""
        detectors = tuple(detectors or self.detectors)
        missing = [d for d in detectors if d not in self.strain]
        require(
            not missing,
            "detectors",
            list(detectors),
            f"a subset of the event's detectors {list(self.detectors)}",
        )
        f_min = (
            frequency_map(minimum_frequency, detectors, "minimum-frequency")
            if minimum_frequency is not None
            else {d: self.minimum_frequency[d] for d in detectors}
        )
        f_max = (
            frequency_map(maximum_frequency, detectors, "maximum-frequency")
            if maximum_frequency is not None
            else {d: self.maximum_frequency[d] for d in detectors}
        )
        check_band(f_min, f_max, self.sampling_frequency, self.duration)
        return dataclasses.replace(
            self,
            name=name or self.name,
            detectors=detectors,
            minimum_frequency=f_min,
            maximum_frequency=f_max,
        )


# --------------------------------------------------------------------------------------------
# Settings
