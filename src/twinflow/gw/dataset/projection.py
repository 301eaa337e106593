"""The detector response of waveform polarisations, batched in torch on the training device."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from twinflow.gw.detectors import (
    GMST_RATE,
    antenna_patterns,
    detector_geometry,
    greenwich_mean_sidereal_time,
    time_delay_from_geocenter,
)
from twinflow.gw.domain import MultibandedFrequencyDomain


class DetectorProjection:
    """Antenna patterns, delays and the detector response of bilby, batched in torch.

    ``reference_time`` is the trigger GPS time; the ``geocent_time`` parameter is the offset
    Δt_c from it. GMST at t_c is GMST(reference_time) + Ω Δt_c, with bilby's GMST and rate Ω
    (:mod:`twinflow.gw.detectors`).
    """

    def __init__(
        self, detectors: Sequence[str], reference_time: float, device: torch.device | str = "cpu"
    ):
        self.detectors = list(detectors)
        self.device = torch.device(device)
        geometries = [detector_geometry(d) for d in self.detectors]
        self.detector_tensor = torch.tensor(
            np.stack([g.tensor for g in geometries]), dtype=torch.float64, device=self.device
        )  # [D, 3, 3]
        self.vertex = torch.tensor(
            np.stack([g.vertex for g in geometries]), dtype=torch.float64, device=self.device
        )  # [D, 3]
        self.reference_time = float(reference_time)
        self.gmst_reference = float(
            np.fmod(greenwich_mean_sidereal_time(self.reference_time), 2 * np.pi)
        )
        self.gmst_rate = GMST_RATE

    def antenna_and_delay(
        self, ra: torch.Tensor, dec: torch.Tensor, psi: torch.Tensor, time_offset: torch.Tensor
    ):
        """Return F+, F× and the delay from the geocentre [s], each [B, D] (float64)."""
        ra, dec, psi, dt = (
            torch.as_tensor(x, dtype=torch.float64, device=self.device)
            for x in (ra, dec, psi, time_offset)
        )
        gmst = self.gmst_reference + self.gmst_rate * dt
        f_plus, f_cross = antenna_patterns(self.detector_tensor, ra, dec, psi, gmst)
        delay = time_delay_from_geocenter(self.vertex, ra, dec, gmst)
        return f_plus, f_cross, delay

    def project(
        self,
        h_plus: torch.Tensor,
        h_cross: torch.Tensor,
        frequencies: torch.Tensor,
        parameters: Mapping[str, torch.Tensor],
        time_origin_offset: float = 0.0,
    ) -> torch.Tensor:
        """Return the detector strain [B, D, n_f] (complex) of polarisations [B, n_f].

        The phase is ``exp(-2πi f (Δt_c + Δt_d + time_origin_offset))``: 0 gives strain
        referenced to the trigger time (the tokens' convention); T - post_trigger_duration
        gives bilby's, referenced to the segment start. Phases are formed in float64 and
        reduced mod 2π before the trig functions, so float32 data keep full precision.
        """
        f_plus, f_cross, delay = self.antenna_and_delay(
            parameters["ra"], parameters["dec"], parameters["psi"], parameters["geocent_time"]
        )
        dt = (
            torch.as_tensor(parameters["geocent_time"], dtype=torch.float64, device=self.device)[
                :, None
            ]
            + delay
        )
        f = torch.as_tensor(frequencies, dtype=torch.float64, device=self.device)
        cycles = torch.frac(f * (dt[..., None] + time_origin_offset))  # [B, D, n_f], in cycles
        real_dtype = h_plus.real.dtype
        angle = (-2 * math.pi * cycles).to(real_dtype)
        shift = torch.polar(torch.ones_like(angle), angle)
        strain = (
            f_plus.to(real_dtype)[..., None] * h_plus[:, None, :]
            + f_cross.to(real_dtype)[..., None] * h_cross[:, None, :]
        )
        return strain * shift


def multibanded_strain(
    strain: np.ndarray, domain: MultibandedFrequencyDomain, post_trigger_duration: float
) -> np.ndarray:
    """Return detector data (bilby's convention, uniform grid) on the multibanded grid,
    referenced to the trigger time: decimate(d(f) exp(2πi f (T - post_trigger_duration)))."""
    f = domain.base.frequencies
    offset = domain.base.duration - post_trigger_duration
    shift = np.exp(2j * np.pi * np.mod(f * offset, 1.0))
    return domain.decimate(np.asarray(strain) * shift)
