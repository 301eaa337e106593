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


def write_posterior(posterior: EventPosterior, path: str | Path, settings: Mapping) -> None:
    """Write samples, ln q, ln prior, ln L ratio, weights and the optimal SNR to HDF5, atomically."""
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
        for d in event.detectors:
            g = data.create_group(d)
            g.create_dataset("asd", data=np.sqrt(event.psd[d] * event.window_factor))
            g.create_dataset(
                "strain_asd", data=np.abs(event.strain[d]) * np.sqrt(2 / event.duration)
            )
            g.create_dataset("token_edges", data=posterior.token_edges.get(d, np.zeros((0, 2))))
            g.attrs["band"] = [event.minimum_frequency[d], event.maximum_frequency[d]]
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
    write_posterior(posterior, out_dir / "posterior.h5", settings)
    write_bilby_result(posterior, out_dir / "result.json", prior, settings["seed"])
    write_json(out_dir / "summary.json", {**summary, "settings": dict(settings)})
    return summary
