"""The peer check: the same event analysed by bilby's dynesty, compared with our posterior.

For an event of the inference stage (an injection or real strain), :func:`run_peer_event`
rebuilds the event's data exactly as our inference does (:func:`~twinflow.gw.inference.stage.load_event`:
the same strain, PSD, window and band), turns it into bilby interferometers
(:func:`interferometers`) and runs ``bilby.run_sampler`` with dynesty on bilby's
``GravitationalWaveTransient`` with the same waveform model, reference frequency, prior and
phase marginalisation (``phase_marginalization=True`` exactly when our inference marginalises).
Parameters the prior fixes stay fixed.

:func:`compare_event` then reads both bilby Results and gives, per parameter, the
Jensen-Shannon divergence (JSD, natural log, as the Dingo papers report it, e.g. Dax et al.
2021, arXiv:2106.12594: 1-D kernel density estimates on a common grid), the difference of the
log Bayes factors (ours minus dynesty's, with both errors) and both wall times.

The PSD the likelihood divides by is ``psd x window_factor`` (the window's mean square) in both,
as in our likelihood: bilby >= 2.5 no longer applies that factor by default, so the
interferometers are given the product (1 for injections, which are not windowed).

This module is longer than 400 lines because the peer check's three steps (the dynesty run,
the per-event comparison, the table) share their conventions and read best side by side.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from twinflow.core.io import atomic_path, write_json
from twinflow.core.settings import ConfigError
from twinflow.gw.inference.events import EventData
from twinflow.gw.validation import check_peer_sampler_settings

#: Grid points of the kernel density estimates a JSD is computed on.
JSD_GRID_POINTS = 1000


# --------------------------------------------------------------------------------------------
# Jensen-Shannon divergence


def jensen_shannon_divergence(
    a: np.ndarray,
    b: np.ndarray,
    weights_a: np.ndarray | None = None,
    weights_b: np.ndarray | None = None,
    n_grid: int = JSD_GRID_POINTS,
) -> float:
    """Return the JSD [nat] between the 1-D distributions of samples ``a`` and ``b``.

    Each set (optionally weighted) becomes a Gaussian kernel density estimate (scipy, Scott's
    bandwidth with the weights' effective size) on one grid spanning both sets; then
    ``JSD = (KL(p || m) + KL(q || m)) / 2`` with ``m = (p + q) / 2``, natural log, so it lies in
    [0, ln 2]. A parameter with (nearly) no spread in both sets has JSD 0. Samples of zero
    weight (an importance-sampled posterior's draws outside the prior) are left out, the grid's
    span included.
    """
    import scipy.stats

    sets = []
    for values, weights in ((a, weights_a), (b, weights_b)):
        values = np.asarray(values, dtype=float)
        if weights is None:
            sets.append((values, None))
        else:
            keep = np.asarray(weights) > 0
            sets.append((values[keep], np.asarray(weights, dtype=float)[keep]))
    lo = min(values.min() for values, _ in sets)
    hi = max(values.max() for values, _ in sets)
    if not hi > lo:
        return 0.0
    grid = np.linspace(lo, hi, n_grid)
    densities = []
    for values, w in sets:
        if np.ptp(values) == 0:  # a fixed value: all mass in the nearest grid point
            p = np.zeros(n_grid)
            p[np.argmin(np.abs(grid - values[0]))] = 1.0
        else:
            p = scipy.stats.gaussian_kde(values, weights=w)(grid)
        densities.append(p)
    return js_divergence_of_densities(*densities)


def js_divergence_of_densities(p: np.ndarray, q: np.ndarray) -> float:
    """Return the JSD [nat] of two densities on one grid (each normalised here).

    Values below the smallest normal float are set to 0 first: a KDE's far tail can hold the
    smallest subnormal number, whose half rounds to 0, and scipy's ``p log(p / m)`` with
    ``m = (p + q) / 2`` is then infinite where q is 0 (it was, on a posterior whose grid
    reached far into the tails).
    """
    import scipy.spatial.distance

    tiny = np.finfo(float).tiny
    p, q = (np.where(x >= tiny, x, 0.0) for x in (np.asarray(p, float), np.asarray(q, float)))
    # scipy returns the Jensen-Shannon distance, the square root of the divergence
    return float(scipy.spatial.distance.jensenshannon(p / p.sum(), q / q.sum()) ** 2)


# --------------------------------------------------------------------------------------------
# The event in bilby's terms


def interferometers(event: EventData):
    """Return a bilby ``InterferometerList`` holding the event's strain, PSD and bands."""
    import bilby

    ifos = bilby.gw.detector.InterferometerList(list(event.detectors))
    f = event.frequencies
    for ifo in ifos:
        d = ifo.name
        ifo.minimum_frequency = event.minimum_frequency[d]
        ifo.maximum_frequency = event.maximum_frequency[d]
        # the PSD of the windowed data, as our likelihood uses it (see the module docstring)
        ifo.power_spectral_density = bilby.gw.detector.PowerSpectralDensity(
            frequency_array=f, psd_array=event.psd[d] * event.window_factor
        )
        ifo.set_strain_data_from_frequency_domain_strain(
            event.strain[d],
            sampling_frequency=event.sampling_frequency,
            duration=event.duration,
            start_time=event.start_time,
        )
    return ifos


def bilby_priors(prior, trigger_time: float):
    """Return the prior with ``geocent_time`` as a GPS time (bilby's), the config's an offset."""
    import bilby

    priors = bilby.gw.prior.BBHPriorDict(dict(prior))
    if "geocent_time" in priors:
        g = priors["geocent_time"]
        if isinstance(g, bilby.core.prior.DeltaFunction):
            priors["geocent_time"] = bilby.core.prior.DeltaFunction(
                trigger_time + g.peak, name="geocent_time"
            )
        elif isinstance(g, bilby.core.prior.Uniform):
            priors["geocent_time"] = bilby.core.prior.Uniform(
                trigger_time + g.minimum, trigger_time + g.maximum, name="geocent_time"
            )
        else:
            raise ConfigError(
                f"prior.geocent_time = {g!r}: the peer check takes a fixed or Uniform geocent_time"
            )
    return priors


def peer_likelihood(event: EventData, priors, settings: Mapping, phase_marginalization: bool):
    """Return bilby's ``GravitationalWaveTransient`` for the event (the likelihood we compute)."""
    import bilby

    waveform_generator = bilby.gw.WaveformGenerator(
        duration=event.duration,
        sampling_frequency=event.sampling_frequency,
        start_time=event.start_time,
        frequency_domain_source_model=bilby.gw.source.lal_binary_black_hole,
        parameter_conversion=bilby.gw.conversion.convert_to_lal_binary_black_hole_parameters,
        waveform_arguments=dict(
            waveform_approximant=settings["approximant"],
            reference_frequency=float(settings["reference-frequency"]),
            # as our likelihood and bilby_pipe: the lowest f_min and highest f_max
            minimum_frequency=min(event.minimum_frequency.values()),
            maximum_frequency=max(event.maximum_frequency.values()),
        ),
    )
    return bilby.gw.GravitationalWaveTransient(
        interferometers=interferometers(event),
        waveform_generator=waveform_generator,
        priors=priors,
        phase_marginalization=phase_marginalization,
    )


def marginalizes_phase(prior, settings: Mapping) -> bool:
    """Return whether our inference marginalises the phase for this prior and model parameters.

    ``model-parameters`` is ``gw.train.parameters`` (``null``: every free prior parameter).
    """
    from twinflow.gw.inference.sampling import decide_phase_marginalization
    from twinflow.gw.prior import is_fixed

    names = settings.get("model-parameters")
    if names is None:
        names = [k for k, p in prior.items() if not is_fixed(p)]
    return decide_phase_marginalization(prior, names, settings["phase-marginalization"])


def run_dynesty(
    event: EventData,
    prior,
    settings: Mapping,
    *,
    npool: int | None = None,
    phase_marginalization: bool,
    log=print,
):
    """Return bilby's dynesty Result for the event (``settings["peer"]``: nlive, dlogz, ...)."""
    import bilby

    peer = settings["peer"]
    priors = bilby_priors(prior, event.trigger_time)
    likelihood = peer_likelihood(event, priors, settings, phase_marginalization)
    injection = None
    if event.injection_parameters is not None:
        injection = dict(event.injection_parameters)
        injection["geocent_time"] = event.trigger_time + injection["geocent_time"]
    free = [k for k, p in priors.items() if not isinstance(p, bilby.core.prior.Constraint)]
    log(
        f"{event.name}: dynesty ({peer['sample']}, nlive {peer['nlive']}, dlogz {peer['dlogz']}, "
        f"npool {npool or peer['npool']}), phase marginalisation {phase_marginalization}, "
        f"{len([k for k in free if not isinstance(priors[k], bilby.core.prior.DeltaFunction)])} "
        "free parameters"
    )
    with tempfile.TemporaryDirectory(prefix="twinflow-dynesty-") as outdir:
        t0 = time.perf_counter()
        result = bilby.run_sampler(
            likelihood=likelihood,
            priors=priors,
            sampler="dynesty",
            nlive=int(peer["nlive"]),
            dlogz=float(peer["dlogz"]),
            sample=peer["sample"],
            naccept=int(peer["naccept"]),
            npool=int(npool or peer["npool"]),
            seed=int(peer["seed"]),
            outdir=outdir,
            label=event.name.replace(":", "_"),
            injection_parameters=injection,
            resume=False,
            check_point=False,
            check_point_plot=False,
            plot=False,
            save=False,
            print_method="interval-30",
        )
        wall = time.perf_counter() - t0
    result.meta_data = {
        **(result.meta_data or {}),
        "twinflow": {
            "wall_time": wall,
            "npool": int(npool or peer["npool"]),
            "phase_marginalization": phase_marginalization,
            "likelihood_evaluations": int(result.num_likelihood_evaluations or 0),
            "detectors": list(event.detectors),
        },
    }
    return result


def run_peer_event(
    settings: Mapping,
    out: str | Path,
    *,
    psd_paths: Mapping[str, str] | None = None,
    npool: int | None = None,
    log=print,
):
    """The peer stage for one event: check, rebuild the event, run dynesty, write its bilby Result."""
    from twinflow.gw.inference.stage import load_event
    from twinflow.gw.prior import build_prior

    check_peer_sampler_settings(settings["peer"], "peer")
    if npool is not None:
        check_peer_sampler_settings({**settings["peer"], "npool": npool}, "peer")
    prior = build_prior(settings["prior"], "dataset.prior")
    marginalize = marginalizes_phase(prior, settings)
    event = load_event(settings, psd_paths, log=log)
    result = run_dynesty(
        event, prior, settings, npool=npool, phase_marginalization=marginalize, log=log
    )
    result.meta_data["twinflow"]["settings"] = json.loads(json.dumps(settings))
    with atomic_path(out) as tmp:
        result.save_to_file(filename=str(tmp), extension="json", overwrite=True)
    log(
        f"{event.name}: dynesty ln BF {result.log_bayes_factor:.2f} +- {result.log_evidence_err:.2f}, "
        f"{result.meta_data['twinflow']['likelihood_evaluations']} likelihood evaluations, "
        f"{result.meta_data['twinflow']['wall_time']:.1f} s"
    )
    return result


# --------------------------------------------------------------------------------------------
# Comparison


def _samples(result) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Return the samples and their weights: the weighted set where there is one, else the posterior."""
    nested = getattr(result, "nested_samples", None)
    if nested is not None and "weights" in nested and result.sampler != "dynesty":
        return {k: nested[k].to_numpy() for k in nested.columns}, nested["weights"].to_numpy()
    return {k: result.posterior[k].to_numpy() for k in result.posterior.columns}, None


def _seconds(value) -> float:
    """Return a duration in seconds (bilby reads ``sampling_time`` back as a timedelta)."""
    return float(value.total_seconds() if hasattr(value, "total_seconds") else value)


def compare_event(
    ours_path: str | Path, dynesty_path: str | Path, ours_summary: Mapping | None = None
) -> dict:
    """Return the comparison of our posterior with dynesty's for one event.

    Per parameter sampled by dynesty: the JSD [nat] (ours with its importance weights, where
    the result holds them, else its equal-weight posterior). The log Bayes factor of each with
    its error and their difference (ours minus dynesty's), both wall times and their ratio.
    """
    import bilby

    ours = bilby.core.result.read_in_result(str(ours_path))
    theirs = bilby.core.result.read_in_result(str(dynesty_path))
    meta = theirs.meta_data.get("twinflow", {})
    if ours_summary is not None and "phase_marginalized" in ours_summary:
        if bool(ours_summary["phase_marginalized"]) != bool(meta.get("phase_marginalization")):
            raise ConfigError(
                f"{ours_path}: phase marginalisation {ours_summary['phase_marginalized']} in our "
                f"inference but {meta.get('phase_marginalization')} in the dynesty run: rerun gw_peer"
            )
    our_samples, our_weights = _samples(ours)
    their_samples, _ = _samples(theirs)
    names = [k for k in theirs.search_parameter_keys if k in our_samples]
    jsd = {
        name: jensen_shannon_divergence(
            our_samples[name], their_samples[name], weights_a=our_weights
        )
        for name in names
    }
    ours_time = _seconds(ours.sampling_time)
    theirs_time = _seconds(meta.get("wall_time", theirs.sampling_time))
    our_ess = (ours.meta_data or {}).get("effective_sample_size")
    delta = float(ours.log_bayes_factor - theirs.log_bayes_factor)
    error = math.hypot(float(ours.log_evidence_err), float(theirs.log_evidence_err))
    return {
        "event": ours.label,
        "parameters": names,
        "not_compared": sorted(set(our_samples) & set(theirs.priors) - set(names)),
        "jsd": jsd,
        "max_jsd": max(jsd.values()) if jsd else None,
        "max_jsd_parameter": max(jsd, key=jsd.get) if jsd else None,
        "log_bayes_factor": {
            "ours": float(ours.log_bayes_factor),
            "ours_error": float(ours.log_evidence_err),
            "dynesty": float(theirs.log_bayes_factor),
            "dynesty_error": float(theirs.log_evidence_err),
        },
        "delta_log_evidence": delta,
        "delta_log_evidence_error": error,
        "wall_time": {"ours": ours_time, "dynesty": theirs_time},
        "speed_up": theirs_time / ours_time if ours_time > 0 else None,
        "our_effective_sample_size": our_ess,
        "dynesty_posterior_samples": len(theirs.posterior),
        "dynesty_likelihood_evaluations": meta.get("likelihood_evaluations"),
        "dynesty_settings": meta.get("settings", {}).get("peer"),
        "dynesty_npool": meta.get("npool"),
        "phase_marginalized": meta.get("phase_marginalization"),
    }


def plot_comparison(ours_path: str | Path, dynesty_path: str | Path, comparison: Mapping, path):
    """Overlaid corner plot of our posterior (reweighted) and dynesty's, with the JSDs in the title."""
    import bilby

    from twinflow.gw.inference.report import corner_overlay

    ours = bilby.core.result.read_in_result(str(ours_path))
    theirs = bilby.core.result.read_in_result(str(dynesty_path))
    our_samples, our_weights = _samples(ours)
    their_samples, _ = _samples(theirs)
    names = comparison["parameters"]
    truths = None
    if theirs.injection_parameters:
        truths = {k: v for k, v in theirs.injection_parameters.items() if k in names}
    worst = comparison["max_jsd_parameter"]
    title = (
        f"{comparison['event']}: max JSD {comparison['max_jsd']:.2g} nat ({worst}); "
        f"ours - dynesty ln Z = {comparison['delta_log_evidence']:.2f} "
        f"+- {comparison['delta_log_evidence_error']:.2f}"
        if worst is not None
        else comparison["event"]
    )
    corner_overlay(
        [
            ("twinflow", our_samples, our_weights, "C3"),
            ("dynesty", their_samples, None, "C0"),
        ],
        names,
        path,
        truths=truths,
        title=title,
    )


def compare_peer_event(
    ours_path: str | Path,
    dynesty_path: str | Path,
    out: str | Path,
    *,
    ours_summary_path: str | Path | None = None,
    corner_plot: str | Path | None = None,
) -> dict:
    """The comparison stage of one event: write its comparison JSON (and corner plot); return it."""
    summary = json.loads(Path(ours_summary_path).read_text()) if ours_summary_path else None
    comparison = compare_event(ours_path, dynesty_path, summary)
    write_json(out, comparison)
    if corner_plot:
        plot_comparison(ours_path, dynesty_path, comparison, corner_plot)
    return comparison


#: The goals of the peer check (config/README.md).
GOALS = {"max_jsd": 0.005, "abs_delta_log_evidence": 0.3, "speed_up": 10.0}

TABLE_COLUMNS = (
    "event",
    "max_jsd",
    "max_jsd_parameter",
    "delta_log_evidence",
    "delta_log_evidence_error",
    "ours_wall_time",
    "dynesty_wall_time",
    "speed_up",
    "our_effective_sample_size",
)


def collect_peer(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    csv: str | Path | None = None,
    markdown: str | Path | None = None,
) -> dict:
    """Gather the per-event comparisons into ``peer.json`` and a CSV / markdown table."""
    comparisons = [json.loads(Path(p).read_text()) for p in paths]
    rows = []
    for c in comparisons:
        rows.append(
            {
                "event": c["event"],
                "max_jsd": c["max_jsd"],
                "max_jsd_parameter": c["max_jsd_parameter"],
                "delta_log_evidence": c["delta_log_evidence"],
                "delta_log_evidence_error": c["delta_log_evidence_error"],
                "ours_wall_time": c["wall_time"]["ours"],
                "dynesty_wall_time": c["wall_time"]["dynesty"],
                "speed_up": c["speed_up"],
                "our_effective_sample_size": c["our_effective_sample_size"],
            }
        )
    met = {
        "max_jsd": all(
            r["max_jsd"] is not None and r["max_jsd"] <= GOALS["max_jsd"] for r in rows
        ),
        "abs_delta_log_evidence": all(
            abs(r["delta_log_evidence"]) <= GOALS["abs_delta_log_evidence"] for r in rows
        ),
        "speed_up": all(
            r["speed_up"] is not None and r["speed_up"] >= GOALS["speed_up"] for r in rows
        ),
    }
    collected = {
        "events": {c["event"]: c for c in comparisons},
        "table": rows,
        "goals": GOALS,
        "met": met,
    }
    write_json(out, collected)
    if csv:
        import pandas as pd

        with atomic_path(csv) as tmp:
            pd.DataFrame(rows, columns=TABLE_COLUMNS).to_csv(tmp, index=False)
    if markdown:
        lines = [
            "| event | max JSD [nat] (parameter) | ln Z ours - dynesty | wall time ours [s] | "
            "dynesty [s] | speed-up | our ESS |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            ess = r["our_effective_sample_size"]
            lines.append(
                f"| {r['event']} | {r['max_jsd']:.2g} ({r['max_jsd_parameter']}) | "
                f"{r['delta_log_evidence']:+.2f} +- {r['delta_log_evidence_error']:.2f} | "
                f"{r['ours_wall_time']:.1f} | {r['dynesty_wall_time']:.1f} | "
                f"{r['speed_up']:.1f}x | {'' if ess is None else f'{ess:.0f}'} |"
            )
        lines.append(
            f"\nGoals: max JSD <= {GOALS['max_jsd']} nat ({'met' if met['max_jsd'] else 'not met'}), "
            f"|delta ln Z| <= {GOALS['abs_delta_log_evidence']} "
            f"({'met' if met['abs_delta_log_evidence'] else 'not met'}), speed-up >= "
            f"{GOALS['speed_up']:g}x ({'met' if met['speed_up'] else 'not met'})."
        )
        with atomic_path(markdown) as tmp:
            Path(tmp).write_text("\n".join(lines) + "\n")
    return collected
