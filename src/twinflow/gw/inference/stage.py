"""The inference stages: one event, the analysis-settings sweep, the collected summary.

Each reads the trained model and the event's data, runs :func:`~twinflow.gw.inference.posterior.analyse_event` and writes the
outputs of :mod:`twinflow.gw.inference.outputs`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from twinflow.core.io import write_json
from twinflow.core.seeding import numpy_rng
from twinflow.core.settings import ConfigError, require
from twinflow.gw.inference.events import EventData
from twinflow.gw.inference.outputs import write_event_outputs
from twinflow.gw.inference.posterior import analyse_event
from twinflow.gw.inference.sampling import check_event_against_model, model_inputs
from twinflow.gw.validation import check_inference_settings


def load_event(
    settings: Mapping, psd_paths: Mapping[str, str] | None = None, log=print
) -> EventData:
    """Return the event a job analyses: an injection (``kind: injection``) or real strain."""
    from twinflow.gw.inference.injections import make_injection
    from twinflow.gw.inference.strain import load_strain_event
    from twinflow.gw.prior import build_prior, sample
    from twinflow.gw.psd import load_psd_bank
    from twinflow.gw.validation import resolve_analysis

    name = settings["event"]
    if settings["kind"] == "strain":
        return load_strain_event(
            name,
            {
                "event": settings["strain"],
                "analysis": settings["analysis"],
                "post-trigger-duration": settings["post-trigger-duration"],
                "tukey-roll-off": settings["tukey-roll-off"],
                "psd": settings["psd"],
            },
            log=log,
        )
    require(settings["kind"] == "injection", "kind", settings["kind"], "'injection' or 'strain'")
    analysis = resolve_analysis({}, settings["analysis"], "gw")
    prior = build_prior(settings["prior"], "dataset.prior")
    injection = settings["injection"]
    rng = numpy_rng(injection["seed"], "injection", injection["index"])
    parameters = {k: float(v[0]) for k, v in sample(prior, 1, rng).items()}
    psds, chosen = {}, {}
    n_f = int(round(analysis["duration"] * analysis["sampling-frequency"])) // 2 + 1
    for d in analysis["detectors"]:
        require(
            psd_paths is not None and d in psd_paths,
            "psd banks",
            sorted(psd_paths or {}),
            f"a PSD bank for each of {analysis['detectors']}",
        )
        bank = load_psd_bank(psd_paths[d])
        if len(bank.frequencies) != n_f or not math.isclose(
            bank.delta_f, 1 / analysis["duration"]
        ):
            raise ConfigError(
                f"psd bank {psd_paths[d]!r} has {len(bank.frequencies)} bins at delta_f = "
                f"{bank.delta_f:g} Hz; the analysis needs {n_f} at {1 / analysis['duration']:g} Hz: "
                "remake the PSD banks with the analysis duration and sampling-frequency"
            )
        chosen[d] = int(rng.integers(len(bank.psd)))
        psds[d] = bank.psd[chosen[d]]
    event = make_injection(
        name,
        parameters,
        psds,
        analysis,
        settings,
        injection.get("trigger-time") or settings["reference-time"],
        settings["post-trigger-duration"],
        rng,
    )
    event.metadata["psd-index"] = chosen
    log(
        f"{name}: injection with network optimal SNR {event.metadata['network-optimal-snr']:.1f}: "
        + ", ".join(f"{k} = {v:.4g}" for k, v in parameters.items())
    )
    return event


def refuse_events_outside_prior(settings: Mapping, model=None) -> None:
    """Raise :class:`ConfigError` (one line) if a real event's published chirp mass lies
    outside the analysis prior or, given the ``model``, the prior it was trained on."""
    from twinflow.gw.published import refuse_outside_prior

    if settings.get("kind") != "strain":
        return
    published = settings["strain"].get("published")
    refuse_outside_prior(settings["event"], published, settings["prior"])
    trained = getattr(model, "settings", {}).get("prior") if model is not None else None
    if trained:
        refuse_outside_prior(settings["event"], published, trained)


def run_event(
    settings: Mapping,
    model_path: str | Path,
    out_dir: str | Path,
    *,
    psd_paths: Mapping[str, str] | None = None,
    processes: int | None = None,
    log=print,
) -> dict:
    """The inference stage for one event: check, load, sample, reweight, write outputs; return the summary."""
    from twinflow.core.device import select_device
    from twinflow.gw.prior import build_prior
    from twinflow.gw.training.model import load_posterior_model

    check_inference_settings(settings)
    refuse_events_outside_prior(settings)
    prior = build_prior(settings["prior"], "dataset.prior")
    event = load_event(settings, psd_paths, log=log)
    device = select_device(settings["device"])
    model = load_posterior_model(model_path, device=device)
    refuse_events_outside_prior(settings, model)
    posterior = analyse_event(
        event, model, prior, settings, processes=processes, device=device, log=log
    )
    return write_event_outputs(posterior, out_dir, prior, settings)


def run_sweep(
    settings: Mapping,
    model_path: str | Path,
    out_dir: str | Path,
    *,
    psd_paths: Mapping[str, str] | None = None,
    processes: int | None = None,
    log=print,
) -> dict:
    """Analyse one event under several analysis settings with the same model (no retraining).

    ``settings["sweep"]`` lists entries ``{label, detectors?, minimum-frequency?,
    maximum-frequency?}``; each runs on the same data and writes ``out_dir/<label>/``. Returns
    (and writes ``out_dir/summary.json``) the summaries by label.
    """
    from twinflow.core.device import select_device
    from twinflow.gw.prior import build_prior
    from twinflow.gw.training.model import load_posterior_model

    check_inference_settings(settings)
    entries = settings["sweep"]
    labels = [e["label"] for e in entries]
    require(len(set(labels)) == len(labels), "sweep.settings", labels, "distinct labels")
    refuse_events_outside_prior(settings)
    prior = build_prior(settings["prior"], "dataset.prior")
    event = load_event(settings, psd_paths, log=log)
    variants = []
    for i, entry in enumerate(entries):  # every variant is checked before any sampling
        try:
            variants.append(
                event.with_analysis(
                    entry.get("detectors"),
                    entry.get("minimum-frequency"),
                    entry.get("maximum-frequency"),
                    name=f"{event.name}:{entry['label']}",
                )
            )
        except ConfigError as err:
            raise ConfigError(f"sweep.settings[{i}] ({entry['label']}): {err}") from err
    device = select_device(settings["device"])
    model = load_posterior_model(model_path, device=device)
    refuse_events_outside_prior(settings, model)
    inputs = model_inputs(model)
    from twinflow.gw.domain import domain_from_settings

    domain = domain_from_settings(inputs["domain"])
    for variant in variants:
        check_event_against_model(variant, inputs, domain)  # errors before any work
    summaries = {}
    for entry, variant in zip(entries, variants, strict=True):
        posterior = analyse_event(
            variant, model, prior, settings, processes=processes, device=device, log=log
        )
        summaries[entry["label"]] = write_event_outputs(
            posterior, Path(out_dir) / entry["label"], prior, settings
        )
    write_json(
        Path(out_dir) / "summary.json",
        {"event": event.name, "settings": entries, "results": summaries},
    )
    return summaries


def collect_summaries(
    paths: Sequence[str | Path], out: str | Path, refused: Mapping[str, str] | None = None
) -> dict:
    """Collect per-event summaries into one file, with the injections' aggregate statistics.

    For the injections: median, mean and quartiles of the sampling efficiency; per parameter
    the KS p-value of the truth's posterior quantiles against U(0, 1) and Fisher's combined
    p-value (the P-P test). ``refused``: the configured events not analysed, with the reason
    (:func:`twinflow.gw.settings.refused_events`), kept under ``refused``.
    """
    import json

    import scipy.stats

    events = [json.loads(Path(p).read_text()) for p in paths]
    for e in events:
        e.pop("settings", None)
    injections = [e for e in events if "injection" in e]
    out_data: dict = {"events": {e["event"]: e for e in events}, "refused": dict(refused or {})}
    if injections:
        eff = np.array([e["sampling_efficiency"] for e in injections])
        quantiles: dict[str, list[float]] = {}
        for e in injections:
            for name, q in e["truth_quantile"].items():
                quantiles.setdefault(name, []).append(q)
        pvalues = {
            name: float(scipy.stats.kstest(q, "uniform").pvalue) for name, q in quantiles.items()
        }
        combined = (
            float(scipy.stats.combine_pvalues(list(pvalues.values()), method="fisher").pvalue)
            if pvalues
            else None
        )
        out_data["injections"] = {
            "n": len(injections),
            "median_sampling_efficiency": float(np.median(eff)),
            "mean_sampling_efficiency": float(np.mean(eff)),
            "sampling_efficiency_quartiles": [float(x) for x in np.percentile(eff, [25, 75])],
            "fraction_with_efficiency_above_1%": float(np.mean(eff > 0.01)),
            "median_effective_sample_size": float(
                np.median([e["effective_sample_size"] for e in injections])
            ),
            "n_reliable": int(sum(e["reliable"] for e in injections)),
            "median_network_effective_sample_size": float(
                np.median([e.get("network", e)["effective_sample_size"] for e in injections])
            ),
            "median_network_sampling_efficiency": float(
                np.median([e.get("network", e)["sampling_efficiency"] for e in injections])
            ),
            "n_refined": int(sum(e.get("final_stage") == "refinement" for e in injections)),
            "median_likelihood_evaluations_of_refinement": float(
                np.median(
                    [
                        e.get("refinement", {}).get("n_likelihood_evaluations", 0)
                        for e in injections
                    ]
                )
            ),
            "pp_ks_pvalues": pvalues,
            "pp_combined_pvalue": combined,
            "median_runtime": {
                k: float(np.median([e["runtime"][k] for e in injections]))
                for k in injections[0]["runtime"]
            },
        }
    write_json(out, out_data)
    return out_data
