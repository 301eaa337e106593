"""Waveform polarisations from LALSimulation, the way bilby's ``lal_binary_black_hole`` makes them.

bilby's source model converts the parameters (chirp mass and mass ratio to component masses,
``chi_i`` to spin magnitudes and tilts, then :func:`bilby_to_lalsimulation_spins`) and calls
``SimInspiralChooseFDWaveform``; per waveform it also rebuilds the LAL dictionary and repeats
the conversions in Python, which costs about 40 % on top of LALSimulation for a 4 s, 256 Hz
waveform. :class:`WaveformGenerator` does the same conversions with bilby's own functions, but
once per batch (vectorised), and then calls LALSimulation with exactly bilby's arguments, so
its output equals bilby's to round-off (tested) at nearly LALSimulation's own speed
(``benchmarks/gw_dataset.py``).

Polarisations are made on the uniform grid at a reference distance (h ∝ 1/d_L, so any other
distance is a rescaling at training time), zero outside [f_min, f_max], and decimated onto the
multibanded domain.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from twinflow.core.settings import ConfigError, require_positive
from twinflow.gw.domain import MultibandedFrequencyDomain

#: LALSimulation's leading SimInspiralChooseFDWaveform arguments, in order.
LAL_ARGUMENTS = (
    "mass_1",
    "mass_2",
    "spin_1x",
    "spin_1y",
    "spin_1z",
    "spin_2x",
    "spin_2y",
    "spin_2z",
    "luminosity_distance",
    "iota",
    "phase",
)


def check_approximant(approximant: str, key: str = "dataset.approximant") -> int:
    """Return LALSimulation's number for ``approximant``, a frequency-domain approximant."""
    import lal
    import lalsimulation as lalsim

    level = lal.GetDebugLevel()
    lal.ClobberDebugLevel(0)  # our error says it; keep XLAL's own message off stderr
    try:
        number = lalsim.GetApproximantFromString(str(approximant))
    except (RuntimeError, TypeError) as err:
        raise ConfigError(
            f"{key} = {approximant!r} is invalid: LALSimulation knows no such approximant "
            "(e.g. IMRPhenomXAS, IMRPhenomD, IMRPhenomXPHM, SEOBNRv4_ROM)"
        ) from err
    finally:
        lal.ClobberDebugLevel(level)
    if not lalsim.SimInspiralImplementedFDApproximants(number):
        raise ConfigError(
            f"{key} = {approximant!r} is invalid: it is not a frequency-domain approximant "
            "of LALSimulation (choose e.g. IMRPhenomXAS, IMRPhenomD or IMRPhenomXPHM)"
        )
    return number


def lal_parameters(
    parameters: Mapping[str, np.ndarray], reference_frequency: float, reference_distance: float
) -> dict[str, np.ndarray]:
    """Return SI masses, Cartesian spins, iota and phase for LALSimulation, per waveform.

    Uses bilby's conversion ``convert_to_lal_binary_black_hole_parameters`` on whole arrays;
    then, as ``bilby_to_lalsimulation_spins`` does, aligned spins take the shortcut
    spin_z = a cos(tilt), iota = theta_jn, and precessing ones LALSimulation's
    ``SimInspiralTransformPrecessingNewInitialConditions``.
    """
    from bilby.core.utils import parsec, solar_mass
    from bilby.gw.conversion import convert_to_lal_binary_black_hole_parameters
    from bilby.gw.utils import (
        lalsim_SimInspiralTransformPrecessingNewInitialConditions as transform,
    )

    n = len(next(iter(parameters.values())))
    converted, _ = convert_to_lal_binary_black_hole_parameters(
        {k: np.asarray(v, dtype=float) for k, v in parameters.items()}
    )
    get = lambda name: np.broadcast_to(np.asarray(converted.get(name, 0.0), dtype=float), (n,))  # noqa: E731
    m1, m2 = get("mass_1") * solar_mass, get("mass_2") * solar_mass
    a1, a2, tilt1, tilt2 = get("a_1"), get("a_2"), get("tilt_1"), get("tilt_2")
    theta_jn, phase = get("theta_jn"), get("phase")
    out = {
        "mass_1": m1,
        "mass_2": m2,
        "iota": theta_jn.copy(),
        "phase": phase,
        "spin_1x": np.zeros(n),
        "spin_1y": np.zeros(n),
        "spin_1z": a1 * np.cos(tilt1),
        "spin_2x": np.zeros(n),
        "spin_2y": np.zeros(n),
        "spin_2z": a2 * np.cos(tilt2),
        "luminosity_distance": np.full(n, reference_distance * 1e6 * parsec),
    }
    aligned = ((a1 == 0) | (tilt1 == 0) | (tilt1 == np.pi)) & (
        (a2 == 0) | (tilt2 == 0) | (tilt2 == np.pi)
    )
    names = ("iota", "spin_1x", "spin_1y", "spin_1z", "spin_2x", "spin_2y", "spin_2z")
    angles = [get(k) for k in ("theta_jn", "phi_jl", "tilt_1", "tilt_2", "phi_12", "a_1", "a_2")]
    for i in np.flatnonzero(~aligned):  # bilby's float path: LALSimulation's transformation
        result = transform(
            *(float(a[i]) for a in angles),
            float(m1[i]),
            float(m2[i]),
            float(reference_frequency),
            float(phase[i]),
        )
        for name, value in zip(names, result):
            out[name][i] = value
    return out


class WaveformGenerator:
    """Polarisations h+, h× at ``reference_distance`` on a multibanded domain.

    Arguments:
        domain: the multibanded domain; waveforms start at its f_min and are generated up to
            its f_max on its uniform base grid (Δf = 1/T), then decimated.
        approximant: a LALSimulation frequency-domain approximant (IMRPhenomXAS, IMRPhenomD,
            IMRPhenomXPHM, ...).
        reference_frequency: the frequency [Hz] at which spins and phase are defined.
        reference_distance: luminosity distance [Mpc] of the stored waveforms.
    """

    def __init__(
        self,
        domain: MultibandedFrequencyDomain,
        approximant: str,
        reference_frequency: float,
        reference_distance: float = 100.0,
    ):
        self.domain = domain
        self.approximant = approximant
        self.approximant_number = check_approximant(approximant)
        require_positive("dataset.reference-frequency", reference_frequency)
        require_positive("dataset.reference-distance", reference_distance)
        self.reference_frequency = float(reference_frequency)
        self.reference_distance = float(reference_distance)
        self.minimum_frequency = domain.f_min
        self.maximum_frequency = domain.f_max

    @property
    def settings(self) -> dict:
        return {
            "approximant": self.approximant,
            "reference-frequency": self.reference_frequency,
            "reference-distance": self.reference_distance,
        }

    def _waveform_dictionary(self):
        from bilby.gw.source import set_waveform_dictionary

        # bilby's defaults for lal_binary_black_hole (no tidal terms, default PN orders).
        return set_waveform_dictionary(
            dict(pn_spin_order=-1, pn_tidal_order=-1, pn_phase_order=-1, pn_amplitude_order=0)
        )

    def uniform(
        self,
        parameters: Mapping[str, np.ndarray],
        dtype=np.complex128,
        out: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return h+, h× [n, n_uniform_range] on the uniform bins [f_min, f_max) of the domain.

        ``out``: two arrays of that shape to fill (reused buffers avoid fresh page faults,
        which otherwise cost about as much as the copies themselves).
        """
        import lalsimulation as lalsim

        lal = lal_parameters(parameters, self.reference_frequency, self.reference_distance)
        n = len(lal["mass_1"])
        lo, hi = self.domain.uniform_slice.start, self.domain.uniform_slice.stop
        if out is None:
            out = (np.empty((n, hi - lo), dtype=dtype), np.empty((n, hi - lo), dtype=dtype))
        h_plus, h_cross = out
        columns = [lal[k].tolist() for k in LAL_ARGUMENTS]
        delta_f, f_min, f_max, f_ref = (
            self.domain.base.delta_f,
            self.minimum_frequency,
            self.maximum_frequency,
            self.reference_frequency,
        )
        waveform_dictionary = self._waveform_dictionary()
        choose = lalsim.SimInspiralChooseFDWaveform
        approximant = self.approximant_number
        for i, args in enumerate(zip(*columns)):
            try:
                hp, hc = choose(
                    *args,
                    0.0,
                    0.0,
                    0.0,
                    delta_f,
                    f_min,
                    f_max,
                    f_ref,
                    waveform_dictionary,
                    approximant,
                )
            except RuntimeError as err:
                raise RuntimeError(
                    f"LALSimulation {self.approximant} failed ({err}) at "
                    f"{dict(zip(LAL_ARGUMENTS, args))} (SI units)"
                ) from err
            data_p, data_c = hp.data.data, hc.data.data
            stop = min(hi, len(data_p))
            h_plus[i, : stop - lo] = data_p[lo:stop]
            h_cross[i, : stop - lo] = data_c[lo:stop]
            if stop < hi:  # LALSimulation stopped short of f_max: nothing there
                h_plus[i, stop - lo :] = 0
                h_cross[i, stop - lo :] = 0
        return h_plus, h_cross

    def __call__(
        self, parameters: Mapping[str, np.ndarray], dtype=np.complex128
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return h+, h× [n, n_bins] on the multibanded domain (``dtype``: complex128, or
        complex64 as stored in the shards, which also halves the decimation's memory traffic)."""
        n = len(next(iter(parameters.values())))
        width = self.domain.uniform_slice.stop - self.domain.uniform_slice.start
        key = (n, np.dtype(dtype))
        if getattr(self, "_buffer_key", None) != key:  # one pair of uniform-grid buffers, reused
            self._buffers = (np.empty((n, width), dtype=dtype), np.empty((n, width), dtype=dtype))
            self._buffer_key = key
        h_plus, h_cross = self.uniform(parameters, dtype, out=self._buffers)
        return self.domain.decimate(h_plus), self.domain.decimate(h_cross)
