"""Waveform polarisations for batches of samples on the uniform grid: LALSimulation with bilby's
parameter conversion, and the detector signals of one parameter set.

The exact likelihood (:mod:`twinflow.gw.inference.likelihood`) and the injections
(:mod:`twinflow.gw.inference.injections`) share these, so both see the same waveform as bilby.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from twinflow.gw.detectors import (
    antenna_patterns,
    detector_geometry,
    greenwich_mean_sidereal_time,
    time_delay_from_geocenter,
)
from twinflow.gw.inference.events import EventData
from twinflow.gw.waveforms import LAL_ARGUMENTS, check_approximant, lal_parameters


@dataclasses.dataclass(frozen=True)
class WaveformSettings:
    """What the frequency-domain waveform call needs (bilby's ``waveform_arguments``)."""

    approximant: str
    reference_frequency: float  # Hz
    minimum_frequency: float  # Hz (bilby zeroes the waveform outside [minimum, maximum])
    maximum_frequency: float  # Hz
    delta_f: float  # Hz
    n_frequencies: int  # of the full uniform grid


def bilby_arguments(
    parameters: Mapping[str, float], reference_frequency: float
) -> tuple[float, ...]:
    """Return the LALSimulation arguments (``LAL_ARGUMENTS``) of one sample, computed as bilby does.

    bilby's ``WaveformGenerator`` applies ``convert_to_lal_binary_black_hole_parameters`` to
    the sample's scalars, then ``_base_lal_cbc_fd_waveform`` converts to SI units and calls
    ``bilby_to_lalsimulation_spins``; the same calls in the same order give the same floats.
    """
    from bilby.core.utils import parsec, solar_mass
    from bilby.gw.conversion import (
        bilby_to_lalsimulation_spins,
        convert_to_lal_binary_black_hole_parameters,
    )

    c, _ = convert_to_lal_binary_black_hole_parameters(dict(parameters))
    defaults = {"a_1": 0.0, "a_2": 0.0, "tilt_1": 0.0, "tilt_2": 0.0, "phi_12": 0.0, "phi_jl": 0.0}
    c = {**defaults, **c}
    mass_1, mass_2 = c["mass_1"] * solar_mass, c["mass_2"] * solar_mass
    iota, *spins = bilby_to_lalsimulation_spins(
        theta_jn=c["theta_jn"],
        phi_jl=c["phi_jl"],
        tilt_1=c["tilt_1"],
        tilt_2=c["tilt_2"],
        phi_12=c["phi_12"],
        a_1=c["a_1"],
        a_2=c["a_2"],
        mass_1=mass_1,
        mass_2=mass_2,
        reference_frequency=reference_frequency,
        phase=c["phase"],
    )
    distance = c["luminosity_distance"] * 1e6 * parsec
    return (
        float(mass_1),
        float(mass_2),
        *map(float, spins),
        float(distance),
        float(iota),
        float(c["phase"]),
    )


class _WaveformMaker:
    """Generates h+, hx of many samples on a band of the uniform grid, one LALSimulation call each.

    :meth:`arguments` converts a chunk's parameters as bilby does; :meth:`fill` makes the
    waveforms of some of those samples and writes them into a caller's buffer, so that the
    likelihood can reuse one small buffer that stays in the CPU cache (:class:`_ChunkEvaluator`).
    """

    def __init__(self, settings: WaveformSettings, band: slice):
        import lal

        self.settings = settings
        self.approximant = check_approximant(settings.approximant, key="approximant")
        self.band = band
        self.lal_dict = lal.CreateDict()  # bilby's defaults: every PN order -1, amplitude order 0
        f = np.linspace(
            0, settings.delta_f * (settings.n_frequencies - 1), settings.n_frequencies
        )[band]
        # bilby zeroes the waveform outside [minimum, maximum] frequency: one interval of the band
        inside = np.flatnonzero(
            (f >= settings.minimum_frequency) & (f <= settings.maximum_frequency)
        )
        self.inside = slice(int(inside[0]), int(inside[-1]) + 1) if inside.size else slice(0, 0)

    @property
    def n_band(self) -> int:
        return self.band.stop - self.band.start

    def arguments(self, parameters: Mapping[str, np.ndarray]) -> list[tuple[float, ...]]:
        """Return each sample's LALSimulation arguments (``LAL_ARGUMENTS``), converted as bilby does."""
        from bilby.core.utils import parsec

        # bilby's conversions, vectorised (shared with the dataset's waveform generator)
        lal = lal_parameters(parameters, self.settings.reference_frequency, reference_distance=1.0)
        n = len(lal["mass_1"])
        lal["luminosity_distance"] = (
            np.broadcast_to(parameters["luminosity_distance"], (n,)) * 1e6 * parsec
        )
        # plain Python floats: numpy scalars cost more per LALSimulation call than the call's overhead
        columns = [np.asarray(lal[k], dtype=float).tolist() for k in LAL_ARGUMENTS]
        # Precessing models (IMRPhenomXPHM) turn a last-digit change of their inputs into ~1e-6
        # relative changes of h (vectorised and scalar numpy differ in the last digit of pow and
        # arccos): for precessing samples, whose waveform costs milliseconds anyway, repeat
        # bilby's scalar conversion exactly.
        in_plane = (
            (np.asarray(lal["spin_1x"]) != 0)
            | (np.asarray(lal["spin_1y"]) != 0)
            | (np.asarray(lal["spin_2x"]) != 0)
            | (np.asarray(lal["spin_2y"]) != 0)
        )
        for i in np.flatnonzero(in_plane):
            exact = bilby_arguments(
                {
                    k: np.asarray(v, dtype=float).ravel()[i] if np.ndim(v) else float(v)
                    for k, v in parameters.items()
                },
                self.settings.reference_frequency,
            )
            for column, value in zip(columns, exact):
                column[i] = value
        return list(zip(*columns))

    def fill(self, arguments: list[tuple[float, ...]], out: np.ndarray) -> np.ndarray:
        """Write h+ and hx of each sample into ``out[i, 0]``, ``out[i, 1]``; return failed [m] bool.

        ``out`` is [m, 2, n_band] complex128; a failed sample's rows are zero.
        """
        import lalsimulation as lalsim

        s = self.settings
        waveform = lalsim.SimInspiralChooseFDWaveform
        fixed = (
            0.0,
            0.0,
            0.0,
            s.delta_f,
            s.minimum_frequency,
            s.maximum_frequency,
            s.reference_frequency,
            self.lal_dict,
            self.approximant,
        )
        start, lo, hi = self.band.start, self.inside.start, self.inside.stop
        failed = np.zeros(len(arguments), dtype=bool)
        for i, args in enumerate(arguments):
            try:
                hp, hc = waveform(*args, *fixed)
            except RuntimeError:  # LALSimulation's input-domain errors: ln L = -inf, as bilby
                failed[i] = True
                out[i] = 0
                continue
            # copied straight from LALSimulation's arrays (views, no copy) into the buffer, which
            # is reused: every bin outside the copied range is zeroed explicitly. The series may
            # end before the band does.
            stop = max(lo, min(hi, hp.data.length - start))
            out[i, :, :lo] = 0
            out[i, :, stop:] = 0
            out[i, 0, lo:stop] = hp.data.data[start + lo : start + stop]
            out[i, 1, lo:stop] = hc.data.data[start + lo : start + stop]
        return failed

    def __call__(
        self, parameters: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (h+, hx [n, n_band] complex128, failed [n] bool) for a chunk of samples."""
        arguments = self.arguments(parameters)
        h = np.empty((len(arguments), 2, self.n_band), dtype=complex)
        failed = self.fill(arguments, h)
        return h[:, 0], h[:, 1], failed


def noise_weighted_inner_product(
    a: np.ndarray, b: np.ndarray, psd: np.ndarray, duration: float
) -> complex:
    """Return ``<a, b> = 4/T sum conj(a) b / S`` (complex; bilby's ``noise_weighted_inner_product``)."""
    return complex(4.0 / duration * np.sum(np.conj(a) * b / psd))


def detector_signals(
    data: EventData, parameters: Mapping[str, float], approximant: str, reference_frequency: float
) -> dict[str, np.ndarray]:
    """Return each detector's signal [n_f] on the full uniform grid for one set of parameters.

    ``geocent_time`` is absolute GPS time. The signal is zero outside the detector's band (as
    bilby's ``get_detector_response``); the waveform spans the lowest to the highest band edge.
    """
    f = data.frequencies
    waveform = WaveformSettings(
        approximant=str(approximant),
        reference_frequency=float(reference_frequency),
        minimum_frequency=float(min(data.minimum_frequency[d] for d in data.detectors)),
        maximum_frequency=float(max(data.maximum_frequency[d] for d in data.detectors)),
        delta_f=float(f[1] - f[0]),
        n_frequencies=len(f),
    )
    p = {k: np.array([float(v)]) for k, v in parameters.items()}
    h_plus, h_cross, failed = _WaveformMaker(waveform, slice(0, len(f)))(p)
    if failed[0]:
        raise ValueError(f"LALSimulation {approximant} failed for {dict(parameters)}")
    out = {}
    for name in data.detectors:
        geometry = detector_geometry(name)
        gmst = np.fmod(greenwich_mean_sidereal_time(p["geocent_time"]), 2 * np.pi)
        f_plus, f_cross = antenna_patterns(geometry.tensor, p["ra"], p["dec"], p["psi"], gmst)
        dt = (p["geocent_time"] - data.start_time) + time_delay_from_geocenter(
            geometry.vertex, p["ra"], p["dec"], gmst
        )
        mask = data.frequency_mask(name)
        signal = (f_plus[0] * h_plus[0] + f_cross[0] * h_cross[0]) * mask
        signal[mask] *= np.exp(-1j * 2 * np.pi * dt[0] * f[mask])
        out[name] = signal
    return out
