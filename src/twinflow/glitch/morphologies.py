"""Glitch and signal shapes in the time domain, one function each, with the parameters the data
settings draw them from (see config/README.md): sine-Gaussians, blips, scattered-light arches,
koi fish, tomtes, whistles, wandering lines, repeated blips, and a Newtonian chirp.
"""

from __future__ import annotations

import numpy as np


def sine_gaussian(t: np.ndarray, frequency: float, q: float, phase: float) -> np.ndarray:
    """Return a unit-peak sine-Gaussian centred on t = 0 (tau = Q / (sqrt(2) pi f))."""
    tau = q / (np.sqrt(2) * np.pi * frequency)
    return np.exp(-((t / tau) ** 2)) * np.sin(2 * np.pi * frequency * t + phase)


def blip(t: np.ndarray, width: float) -> np.ndarray:
    """Return the (unit-peak) time derivative of a Gaussian pulse of ``width`` [s]: a broadband
    burst whose spectrum peaks at 1 / (2 pi width)."""
    x = t / width
    return -x * np.exp(0.5 - 0.5 * x**2)


def scattered_light_arch(
    t: np.ndarray, peak_frequency: float, arch_duration: float, low_frequency: float
) -> np.ndarray:
    """Return one scattered-light arch centred on t = 0.

    The scatterer moves as x(t) = x0 sin(2 pi f_m t) with f_m = 1 / (2 * arch_duration), so the
    fringe frequency is ``peak_frequency * |cos(2 pi f_m t)|``. A sin^2 envelope keeps only the
    part of the arch above ``low_frequency``.
    """
    f_mod = 1.0 / (2.0 * arch_duration)
    phase = peak_frequency / (2 * np.pi * f_mod) * np.sin(2 * np.pi * f_mod * t)  # [cycles]
    half = np.arccos(min(low_frequency / peak_frequency, 1.0)) / (
        2 * np.pi * f_mod
    )  # |t| where f = f_low
    inside = (np.abs(t) < half) & (np.abs(t) < arch_duration / 2)
    envelope = np.where(inside, np.cos(0.5 * np.pi * t / max(half, 1e-9)) ** 2, 0.0)
    return envelope * np.sin(2 * np.pi * phase)


def koi_fish(
    t: np.ndarray, width: float, tail_frequency: float, tail_amplitude: float, phase: float
) -> np.ndarray:
    """Return a koi fish centred on t = 0: a blip of ``width`` [s] (the broadband head) plus a
    sine-Gaussian tail at ``tail_frequency`` (Q 4) of relative amplitude ``tail_amplitude``,
    scaled to unit peak."""
    y = blip(t, width) + tail_amplitude * sine_gaussian(t, tail_frequency, 4.0, phase)
    return y / np.max(np.abs(y))


def tomte(t: np.ndarray, frequency: float, phase: float) -> np.ndarray:
    """Return a tomte centred on t = 0: a low-Q (Q 2) sine-Gaussian at ``frequency``, short and
    broadband at low frequency."""
    return sine_gaussian(t, frequency, 2.0, phase)


def whistle(
    t: np.ndarray, f_start: float, f_end: float, duration: float, phase: float
) -> np.ndarray:
    """Return a whistle centred on t = 0: a linear sweep from ``f_start`` to ``f_end`` [Hz] over
    ``duration`` [s] (scipy's ``chirp``) under a Tukey (alpha 0.5) window."""
    import scipy.signal  # here, not at the top: the Snakefile imports this module

    inside = np.abs(t) < duration / 2
    y = np.zeros_like(t)
    ts = t[inside] + duration / 2
    sweep = scipy.signal.chirp(
        ts, f_start, duration, f_end, method="linear", phi=np.degrees(phase)
    )
    y[inside] = sweep * scipy.signal.windows.tukey(int(inside.sum()), 0.5)
    return y


def wandering_line(
    t: np.ndarray, frequency: float, excursion: float, period: float, phase: float
) -> np.ndarray:
    """Return a wandering line: a unit sinusoid whose frequency is
    ``frequency + excursion sin(2 pi t / period)``, Tukey-tapered over the whole sample."""
    import scipy.signal  # here, not at the top: the Snakefile imports this module

    f_mod = 1.0 / period
    cycles = frequency * t - excursion / (2 * np.pi * f_mod) * np.cos(2 * np.pi * f_mod * t)
    return np.sin(2 * np.pi * cycles + phase) * scipy.signal.windows.tukey(len(t), 0.2)


def repeated_blips(t: np.ndarray, width: float, count: int, spacing: float) -> np.ndarray:
    """Return ``count`` blips of ``width`` [s], ``spacing`` [s] apart, centred on t = 0."""
    offsets = (np.arange(count) - (count - 1) / 2) * spacing
    return sum(blip(t - dt, width) for dt in offsets)


def newtonian_chirp(t: np.ndarray, chirp_mass: float, phase: float) -> np.ndarray:
    """Return the leading-order (Newtonian) inspiral h(t) of an equal-mass binary, coalescing at
    t = 0, in arbitrary units (the caller fixes the SNR); zero after the ISCO frequency.

    f(tau) = (1 / 8 pi) (5 / tau)^(3/8) (G Mc / c^3)^(-5/8) with tau = -t; amplitude ~ f^(2/3);
    phase(tau) = -2 (tau / (5 G Mc / c^3))^(5/8).
    """
    mc = chirp_mass * G_MSUN_OVER_C3
    total_mass = chirp_mass * 2 ** (6 / 5) * G_MSUN_OVER_C3
    f_isco = 1.0 / (6**1.5 * np.pi * total_mass)
    tau = np.maximum(-t, 1e-12)
    freq = (5.0 / tau) ** (3 / 8) / (8 * np.pi) * mc ** (-5 / 8)
    orbital_phase = -2.0 * (tau / (5 * mc)) ** (5 / 8)
    h = freq ** (2 / 3) * np.cos(orbital_phase + phase)
    keep = (t < 0) & (freq <= f_isco)
    # Taper the last cycles before the ISCO cut so the end is not a step.
    taper = np.clip((f_isco - freq) / (0.1 * f_isco), 0, 1)
    return np.where(keep, h * taper, 0.0)


G_MSUN_OVER_C3 = 4.925490947641267e-06  # G M_sun / c^3 [s]
