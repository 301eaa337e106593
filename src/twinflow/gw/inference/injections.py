"""Simulated events: a signal from the prior (or given parameters) in coloured Gaussian noise.

An injection is an :class:`~twinflow.gw.inference.events.EventData` like real strain, so every
later stage treats both alike.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from twinflow.gw.inference.events import EventData


def frequency_domain_noise(
    psd: np.ndarray, duration: float, rng: np.random.Generator
) -> np.ndarray:
    """Return Gaussian noise with one-sided PSD ``psd`` on the uniform grid, bilby's normalisation.

    ``E|n(f)|^2 = T S(f) / 2`` (real and imaginary parts each of variance ``T S / 4``); bins
    with an infinite or zero PSD (outside any band) get zero.
    """
    psd = np.where(np.isfinite(psd), psd, 0.0)
    sigma = np.sqrt(duration * psd / 4)
    return sigma * (rng.standard_normal(psd.shape) + 1j * rng.standard_normal(psd.shape))


def make_injection(
    name: str,
    parameters: Mapping[str, float],
    psds: Mapping[str, np.ndarray],
    analysis: Mapping,
    waveform: Mapping,
    trigger_time: float,
    post_trigger_duration: float,
    rng: np.random.Generator,
) -> EventData:
    """Return an injection: the signal of ``parameters`` plus noise from ``psds``, per detector.

    ``parameters`` use bilby's names with ``geocent_time`` as an offset from ``trigger_time``.
    The event records the injected values, the PSD used and each detector's optimal and
    matched-filter SNR.
    """
    from twinflow.gw.inference.polarisations import detector_signals, noise_weighted_inner_product

    detectors = tuple(analysis["detectors"])
    fs, duration = analysis["sampling-frequency"], analysis["duration"]
    start = trigger_time - (duration - post_trigger_duration)
    absolute = {
        **{k: float(v) for k, v in parameters.items()},
        "geocent_time": trigger_time + float(parameters["geocent_time"]),
    }
    empty = EventData(
        name=name,
        detectors=detectors,
        trigger_time=trigger_time,
        start_time=start,
        duration=float(duration),
        sampling_frequency=float(fs),
        minimum_frequency=dict(analysis["minimum-frequency"]),
        maximum_frequency=dict(analysis["maximum-frequency"]),
        strain={},
        psd={d: np.asarray(psds[d], dtype=float) for d in detectors},
    )
    signals = detector_signals(
        empty, absolute, waveform["approximant"], waveform["reference-frequency"]
    )
    snr = {}
    for d in detectors:
        noise = frequency_domain_noise(empty.psd[d], duration, rng)
        empty.strain[d] = signals[d] + noise
        mask = empty.frequency_mask(d)
        hh = noise_weighted_inner_product(
            signals[d][mask], signals[d][mask], empty.psd[d][mask], duration
        ).real
        dh = noise_weighted_inner_product(
            signals[d][mask], empty.strain[d][mask], empty.psd[d][mask], duration
        )
        snr[d] = {
            "optimal": float(np.sqrt(hh)),
            "matched-filter": float(dh.real / np.sqrt(hh)) if hh > 0 else 0.0,
        }
    network = float(np.sqrt(sum(s["optimal"] ** 2 for s in snr.values())))
    empty.injection_parameters = {k: float(v) for k, v in parameters.items()}
    empty.metadata = {"snr": snr, "network-optimal-snr": network}
    return empty
