"""Per-event outputs: posterior.h5 (samples, densities, weights), a bilby Result and summary.json."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from twinflow.core.io import atomic_path, write_json, write_provenance
from twinflow.core.seeding import numpy_rng
from twinflow.gw.inference.importance import (
    resample,
)
from twinflow.gw.inference.posterior import EventPosterior


def maximum_likelihood_signals(
    posterior: EventPosterior, prior, settings: Mapping
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Return (parameters, detector signals [n_f] complex) of the maximum-likelihood sample.

    The signals come from :func:`~twinflow.gw.inference.polarisations.detector_signals`, the
    likelihood's own projection (``geocent_time`` in GPS s in the returned parameters). When
    the phase was marginalised, the signal's overall phase is the one that maximises the
    likelihood, ``arg sum_k <h_k(phase=0), d_k>`` (the phase enters every detector's signal as
    one common factor, which is what makes the marginalisation exact), not the reconstructed
    draw stored with the sample.
    """
    from twinflow.gw.inference.polarisations import detector_signals, noise_weighted_inner_product
    from twinflow.gw.prior import is_fixed

    event = posterior.event
    log_l = np.where(
        np.isfinite(posterior.log_likelihood_ratio), posterior.log_likelihood_ratio, -np.inf
    )
    best = int(np.argmax(log_l))
    parameters = {k: float(p.peak) for k, p in prior.items() if is_fixed(p)}
    parameters.update({k: float(v[best]) for k, v in posterior.samples.items()})
    parameters["geocent_time"] = event.trigger_time + parameters.get("geocent_time", 0.0)
    if posterior.phase_marginalized:
        parameters["phase"] = 0.0
    signals = detector_signals(
        event, parameters, settings["approximant"], settings["reference-frequency"]
    )
    if posterior.phase_marginalized:
        overlap = sum(
            noise_weighted_inner_product(
                signals[d][event.frequency_mask(d)],
                event.strain[d][event.frequency_mask(d)],
                event.psd[d][event.frequency_mask(d)] * event.window_factor,
                event.duration,
            )
            for d in event.detectors
        )
        rotation = overlap / abs(overlap) if abs(overlap) > 0 else 1.0
        signals = {d: h * rotation for d, h in signals.items()}
        parameters["phase"] = float("nan")  # maximised over, not a single value of the prior
    parameters["log_likelihood_ratio"] = float(log_l[best])
    return parameters, signals


def write_posterior(
    posterior: EventPosterior, path: str | Path, settings: Mapping, prior=None
) -> None:
    """Write samples, ln q, ln prior, ln L ratio, weights and the optimal SNR to HDF5, atomically.

    With the analysis ``prior``, also the maximum-likelihood sample and its detector signals
    (:func:`maximum_likelihood_signals`), for the report's whitened-strain figure; the event's
    ``published`` intervals (detector frame, :mod:`~twinflow.gw.published`) go under
    ``published/``.
    """
    from twinflow.gw.published import published_intervals

    finite = np.isfinite(posterior.log_likelihood_ratio).any()
    best = (
        maximum_likelihood_signals(posterior, prior, settings)
        if prior is not None and finite
        else None
    )
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        group = f.create_group("samples")
        for name in posterior.parameters:
            group.create_dataset(name, data=posterior.samples[name])
        for name, values in (
            ("log_q", posterior.log_q),
            ("log_prior", posterior.log_prior),
            ("log_likelihood_ratio", posterior.log_likelihood_ratio),
            ("log_weights", posterior.importance.log_weights),
            ("weights", posterior.importance.weights),
            ("optimal_snr", posterior.optimal_snr),
        ):
            f.create_dataset(name, data=values)
        if posterior.refinement is not None and posterior.network is not None:
            # the network-only stage, for the report's comparison with the refined posterior
            network = f.create_group("network")
            for name, values in posterior.network.samples.items():
                network.create_dataset(f"samples/{name}", data=values)
            network.create_dataset("weights", data=posterior.network.importance.weights)
            network.attrs.update(posterior.network.importance.summary())
        # the event's data for the report: ASD (of the windowed data), |d| scaled to an ASD, kept tokens
        event = posterior.event
        data = f.create_group("event")
        data.create_dataset("frequencies", data=event.frequencies)
        data.attrs.update(
            start_time=event.start_time,
            trigger_time=event.trigger_time,
            duration=event.duration,
            sampling_frequency=event.sampling_frequency,
            window_factor=event.window_factor,
        )
        for d in event.detectors:
            g = data.create_group(d)
            g.create_dataset("asd", data=np.sqrt(event.psd[d] * event.window_factor))
            g.create_dataset(
                "strain_asd", data=np.abs(event.strain[d]) * np.sqrt(2 / event.duration)
            )
            g.create_dataset("token_edges", data=posterior.token_edges.get(d, np.zeros((0, 2))))
            g.attrs["band"] = [event.minimum_frequency[d], event.maximum_frequency[d]]
            g.create_dataset("strain", data=event.strain[d])  # windowed rfft / f_s, as bilby
            g.create_dataset("psd", data=event.psd[d])  # without the window factor
            if best is not None:
                g.create_dataset("maximum_likelihood_signal", data=best[1][d])
        if best is not None:
            f.create_group("maximum_likelihood").attrs.update(best[0])
        strain_settings = settings.get("strain") or {}
        intervals = published_intervals(strain_settings.get("published"))
        if intervals:
            group = f.create_group("published")
            group.attrs["reference"] = str(strain_settings["published"].get("reference", ""))
            for name, values in intervals.items():
                group.attrs[name] = list(values)  # median, lower, upper (detector frame)
        if event.injection_parameters is not None:
            truth = f.create_group("injection")
            for k, v in event.injection_parameters.items():
                truth.attrs[k] = v
        write_provenance(
            f,
            settings,
            event=posterior.event.name,
            trigger_time=posterior.event.trigger_time,
            noise_log_likelihood=posterior.noise_log_likelihood,
            geocent_time="offset from trigger_time [s]",
            **posterior.importance.summary(),
        )


def write_bilby_result(posterior: EventPosterior, path: str | Path, prior, seed: int) -> None:
    """Write a bilby Result (JSON): the rejection-resampled posterior, all samples with weights."""
    import bilby
    import pandas as pd

    names = posterior.parameters
    event = posterior.event
    table = {n: posterior.samples[n] for n in names}
    if "geocent_time" in table:
        table["geocent_time"] = event.trigger_time + table["geocent_time"]  # bilby: GPS time
    frame = pd.DataFrame(table)
    frame["log_likelihood"] = posterior.log_likelihood_ratio + posterior.noise_log_likelihood
    frame["log_prior"] = posterior.log_prior
    keep = resample(posterior.importance.weights, numpy_rng(seed, "resample", event.name))
    weighted = frame.copy()
    weighted["weights"] = posterior.importance.weights
    injection = None
    if event.injection_parameters is not None:
        injection = dict(event.injection_parameters)
        injection["geocent_time"] = event.trigger_time + injection["geocent_time"]
    priors = bilby.core.prior.PriorDict({k: v for k, v in prior.items()})
    if (
        "geocent_time" in priors
    ):  # bilby's geocent_time is a GPS time, the config's an offset from the trigger
        g = priors["geocent_time"]
        if isinstance(g, bilby.core.prior.DeltaFunction):
            priors["geocent_time"] = bilby.core.prior.DeltaFunction(
                event.trigger_time + g.peak, name="geocent_time"
            )
        elif isinstance(g, bilby.core.prior.Uniform):
            priors["geocent_time"] = bilby.core.prior.Uniform(
                event.trigger_time + g.minimum, event.trigger_time + g.maximum, name="geocent_time"
            )
        else:
            priors["geocent_time_offset"] = priors.pop("geocent_time")
    result = bilby.core.result.Result(
        label=event.name,
        search_parameter_keys=names,
        priors=priors,
        posterior=frame.iloc[keep].reset_index(drop=True),
        nested_samples=weighted,
        log_evidence=posterior.importance.log_evidence + posterior.noise_log_likelihood,
        log_evidence_err=posterior.importance.log_evidence_error,
        log_noise_evidence=posterior.noise_log_likelihood,
        log_bayes_factor=posterior.importance.log_evidence,
        injection_parameters=injection,
        sampler="twinflow-importance-sampling",
        sampling_time=posterior.timings["total"],
        meta_data={
            "effective_sample_size": posterior.importance.effective_sample_size,
            "sampling_efficiency": posterior.importance.sampling_efficiency,
            "warnings": posterior.warnings,
            "detectors": list(event.detectors),
        },
    )
    with atomic_path(path) as tmp:
        result.save_to_file(filename=str(tmp), extension="json", overwrite=True)


def write_event_outputs(
    posterior: EventPosterior, out_dir: str | Path, prior, settings: Mapping
) -> dict:
    """Write posterior.h5, result.json and summary.json to ``out_dir``; return the summary."""
    out_dir = Path(out_dir)
    summary = posterior.summary()
    write_posterior(posterior, out_dir / "posterior.h5", settings, prior)
    write_bilby_result(posterior, out_dir / "result.json", prior, settings["seed"])
    write_json(out_dir / "summary.json", {**summary, "settings": dict(settings)})
    return summary
