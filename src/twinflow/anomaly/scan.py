"""The scan over signal regions: per-stage settings and the stages the workflow runs.

Stages (each reads files and writes files; rules only wire them):

- :func:`twinflow.anomaly.data.prepare_events` -- the event samples;
- :func:`train_sideband_flow` -- per SR, the conditional background flow on the sidebands
  (shared by ANODE, CATHODE and R-ANODE);
- :func:`train_sigma` -- once, SIGMA's flow-matching model on all data;
- :func:`run_method` -- per (SR, method), fit the detector and score the labelled test events;
- :func:`gather` -- ``summary.json`` (per SR and method: max SIC, AUC, significance, learned w,
  timings, goal checks) and the report plots.

The ``*_settings`` helpers pick out of the ``anomaly`` config section exactly the keys a stage
uses, so the workflow reruns only what an edit touches.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from twinflow.anomaly import metrics
from twinflow.anomaly.data import SignalRegion, check_data_settings, check_region, load_events
from twinflow.anomaly.flow_matching import SOLVERS, FlowMatchingModel, sigma_from_settings
from twinflow.anomaly.flows import ConditionalFlow, flow_from_settings
from twinflow.anomaly.methods import (
    METHODS,
    USES_SIDEBAND_FLOW,
    USES_SIGMA,
    USES_SIGMA_CR,
    build_detector,
)
from twinflow.core.device import configure_cpu_threads
from twinflow.core.io import atomic_path, dumps_settings, write_json, write_provenance
from twinflow.core.seeding import seed_everything
from twinflow.core.settings import ConfigError, require, require_choice, require_positive

CLASSIFIER_METHODS = (
    "supervised",
    "iad",
    "cwola",
    "cathode",
    "sigma",
    "sigma-context",
    "sigma-data",
    "sigma-cr",
)
RANODE_METHODS = ("ranode", "ranode-ideal")
SIGMA_PER_REGION_KEYS = ("oversampling", "anchor-margin")


# ---------------------------------------------------------------------------------------------
# settings of each stage
# ---------------------------------------------------------------------------------------------


def regions(anomaly: Mapping) -> list[SignalRegion]:
    """Return the configured signal regions, in the order of ``scan.centres``."""
    return [
        SignalRegion.from_settings(region_settings(anomaly, i))
        for i in range(len(anomaly["scan"]["centres"]))
    ]


def region_settings(anomaly: Mapping, index: int) -> dict:
    scan = anomaly["scan"]
    centres = scan["centres"]
    require(0 <= index < len(centres), "signal region", index, f"choose 0 .. {len(centres) - 1}")
    require_positive("anomaly.scan.width", scan["width"])
    require_positive("anomaly.scan.sideband-width", scan["sideband-width"])
    c, w = float(centres[index]), float(scan["width"])
    return {
        "index": index,
        "low": round(c - w / 2, 10),
        "high": round(c + w / 2, 10),
        "sideband-width": float(scan["sideband-width"]),
        "min-sideband-events": int(scan["min-sideband-events"]),
    }


def region_index(name: str) -> int:
    """``'sr3'`` -> 3."""
    if not (name.startswith("sr") and name[2:].isdigit()):
        raise ConfigError(f"signal region {name!r} is invalid: expected sr0, sr1, ...")
    return int(name[2:])


def sideband_flow_settings(anomaly: Mapping, index: int) -> dict:
    return {
        "seed": anomaly["seed"],
        "device": anomaly["device"],
        "region": region_settings(anomaly, index),
        "flow": dict(anomaly["flow"]),
    }


def sigma_settings(anomaly: Mapping, index: int | None = None) -> dict:
    """SIGMA's training settings: on all data, or (``index``) on the sidebands of one SR (v_CR)."""
    train = {k: v for k, v in anomaly["sigma"].items() if k not in SIGMA_PER_REGION_KEYS}
    out = {"seed": anomaly["seed"], "device": anomaly["device"], "sigma": train}
    if index is not None:
        out["region"] = region_settings(anomaly, index)
    return out


def method_settings(anomaly: Mapping, index: int, method: str) -> dict:
    require_choice("anomaly.methods", method, METHODS)
    out = {
        "seed": anomaly["seed"],
        "device": anomaly["device"],
        "method": method,
        "region": region_settings(anomaly, index),
    }
    if method in CLASSIFIER_METHODS:
        out["classifier"] = dict(anomaly["classifier"])
    if method == "anode":
        out["flow"] = dict(anomaly["flow"])
    if method == "cathode":
        out["cathode"] = dict(anomaly["cathode"])
    if method in RANODE_METHODS:
        out["ranode"] = dict(anomaly["ranode"])
    if method in USES_SIGMA or method in USES_SIGMA_CR:
        out["sigma"] = {k: anomaly["sigma"][k] for k in SIGMA_PER_REGION_KEYS}
    return out


def gather_settings(anomaly: Mapping) -> dict:
    return {
        "methods": list(anomaly["methods"]),
        "regions": [region_settings(anomaly, i) for i in range(len(anomaly["scan"]["centres"]))],
        "metrics": dict(anomaly["metrics"]),
    }


def check_methods(methods: Sequence[str]) -> None:
    require(
        len(methods) > 0,
        "anomaly.methods",
        list(methods),
        f"choose one or more of {list(METHODS)}",
    )
    for method in methods:
        require_choice("anomaly.methods", method, METHODS)


def check_centres(centres: Sequence[float], width: float) -> None:
    """Raise :class:`ConfigError` for duplicate SR centres or SRs that overlap."""
    require(
        len(centres) > 0,
        "anomaly.scan.centres",
        list(centres),
        "give at least one signal-region centre [TeV]",
    )
    ordered = sorted(float(c) for c in centres)
    for a, b in zip(ordered, ordered[1:], strict=False):
        require(a != b, "anomaly.scan.centres", list(centres), f"centre {a} TeV appears twice")
        require(
            b - a >= width - 1e-9,
            "anomaly.scan.centres",
            list(centres),
            f"SRs at {a} and {b} TeV overlap: centres must be at least the width {width} TeV apart",
        )


def check_w_grid(grid: Sequence[float]) -> None:
    for w in grid:
        require(
            isinstance(w, (int, float)) and 0 < w < 1,
            "anomaly.ranode.w-grid",
            list(grid),
            "expected signal fractions in (0, 1)",
        )


def check_scan(anomaly: Mapping) -> None:
    """Raise :class:`ConfigError` for an invalid ``anomaly`` section (before any work)."""
    check_methods(anomaly["methods"])
    require_positive("anomaly.scan.width", anomaly["scan"]["width"])
    check_centres(anomaly["scan"]["centres"], anomaly["scan"]["width"])
    for i in range(len(anomaly["scan"]["centres"])):
        region_settings(anomaly, i)
    require_choice("anomaly.classifier.kind", anomaly["classifier"]["kind"], ("hgb", "mlp"))
    require_choice("anomaly.sigma.solver", anomaly["sigma"]["solver"], SOLVERS)
    w = anomaly["ranode"]["w-init"]
    require(0 < w < 1, "anomaly.ranode.w-init", w, "expected a fraction in (0, 1)")
    check_w_grid(anomaly["ranode"]["w-grid"])
    check_data_settings(anomaly["data"])


def _threads() -> None:
    configure_cpu_threads()


# ---------------------------------------------------------------------------------------------
# stages
# ---------------------------------------------------------------------------------------------


def train_sideband_flow(settings: Mapping, events: str | Path, out: str | Path) -> ConditionalFlow:
    """Train p(x | m) on the data outside one SR and save it to ``out`` (checkpoint)."""
    region = SignalRegion.from_settings(settings["region"])
    samples, _ = load_events(events)
    data = samples["data"]
    check_region(region, data, settings["region"]["min-sideband-events"])
    _threads()
    seed_everything(settings["seed"])
    sideband = data.select(region.sidebands(data.m))
    flow = flow_from_settings(
        settings["flow"],
        seed=settings["seed"] + region.index,
        name=f"sideband flow {region.name}",
        device=settings["device"],
        features=sideband.x.shape[1],
    )
    flow.fit(sideband.x, sideband.m)
    flow.save(
        out,
        region=dict(settings["region"]),
        stage_settings=dumps_settings(settings),
        n_sideband=len(sideband),
    )
    return flow


def train_sigma(settings: Mapping, events: str | Path, out: str | Path) -> FlowMatchingModel:
    """Train SIGMA's flow-matching model once on all data (or, with ``settings['region']``, on
    that SR's sidebands only: the v_CR reference) and save it to ``out``."""
    require_choice("anomaly.sigma.solver", settings["sigma"]["solver"], SOLVERS)
    samples, _ = load_events(events)
    data = samples["data"]
    if "region" in settings:
        region = SignalRegion.from_settings(settings["region"])
        check_region(region, data, settings["region"]["min-sideband-events"])
        data = data.select(region.sidebands(data.m))
    _threads()
    seed_everything(settings["seed"])
    model = sigma_from_settings(
        settings["sigma"], seed=settings["seed"], device=settings["device"]
    )
    model.fit(data.x, data.m)
    model.save(out, stage_settings=dumps_settings(settings), n_events=len(data))
    return model


def run_method(
    settings: Mapping,
    events: str | Path,
    out: str | Path,
    *,
    sideband_flow: str | Path | None = None,
    sigma_model: str | Path | None = None,
    sigma_cr_model: str | Path | None = None,
) -> dict:
    """Fit one method in one SR, score the test events and the data in that SR, write the scores
    and timings (HDF5). Classifier methods score the data out of fold (see
    :mod:`twinflow.anomaly.classifiers`); the density methods (ANODE, R-ANODE) score them with
    the densities fitted to them, as those methods do."""
    method = settings["method"]
    require_choice("anomaly.methods", method, METHODS)
    region = SignalRegion.from_settings(settings["region"])
    if method in USES_SIDEBAND_FLOW and sideband_flow is None:
        raise ConfigError(f"method {method!r} needs the sideband flow of {region.name}")
    if method in USES_SIGMA and sigma_model is None:
        raise ConfigError(f"method {method!r} needs the trained SIGMA model")
    if method in USES_SIGMA_CR and sigma_cr_model is None:
        raise ConfigError(f"method {method!r} needs the sideband SIGMA model of {region.name}")
    samples, event_settings = load_events(events)
    check_region(region, samples["data"], settings["region"]["min-sideband-events"])
    _threads()
    seed_everything(settings["seed"])
    flow = (
        ConditionalFlow.load(sideband_flow, device=settings["device"])[0]
        if sideband_flow
        else None
    )
    sigma = (
        FlowMatchingModel.load(sigma_model, device=settings["device"])[0] if sigma_model else None
    )
    sigma_cr = (
        FlowMatchingModel.load(sigma_cr_model, device=settings["device"])[0]
        if sigma_cr_model
        else None
    )
    detector = build_detector(
        settings, region, sideband_flow=flow, sigma_model=sigma, sigma_cr_model=sigma_cr
    )
    detector.fit(samples)
    test = samples["test"].select(region.inside(samples["test"].m))
    start = time.perf_counter()
    raw = detector.score(test.x, test.m)
    detector.info["evaluate_seconds"] = time.perf_counter() - start
    score = _finite(raw)
    data_sr = samples["data"].select(region.inside(samples["data"].m))
    data_score, data_group, test_by_group = detector.score_region_data(samples, test)
    data_score = _finite(data_score)
    test_by_group = np.stack([_finite(t) for t in test_by_group])
    extra = detector.extra_outputs(test)
    info = {
        **detector.info,
        "n_signal_injected": int(event_settings["data"]["n-signal"]),
        "events_seed": int(event_settings["seed"]),
        "n_data_region": len(data_sr),
        "n_signal_region": int(data_sr.label.sum()),
        "n_test_signal": int(test.label.sum()),
        "n_test_background": int((test.label == 0).sum()),
    }
    n_nonfinite = int((~np.isfinite(raw)).sum())
    if n_nonfinite:
        info["n_nonfinite_scores"] = n_nonfinite
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        write_provenance(f, settings, method=method, region=region.name, info=dumps_settings(info))
        f.create_dataset("score", data=score.astype(np.float64))
        f.create_dataset("label", data=test.label)
        f.create_dataset("m", data=test.m.astype(np.float32))
        f.create_dataset("data_score", data=data_score.astype(np.float64))
        f.create_dataset("data_label", data=data_sr.label)
        f.create_dataset("data_group", data=data_group)
        f.create_dataset("test_score_by_group", data=test_by_group.astype(np.float64))
        for key, value in extra.items():
            f.create_dataset(key, data=np.asarray(value))
    return info


def _finite(score: np.ndarray) -> np.ndarray:
    """Scores with non-finite entries (an event outside a flow's support) ranked most anomalous."""
    finite = np.isfinite(score)
    if finite.all():
        return score
    top = np.max(score[finite]) + 1 if finite.any() else 0.0
    return np.where(finite, score, top)


def read_method_result(path: str | Path) -> dict:
    """Return the method's output file as a dict: method, region, info and every array."""
    with h5py.File(path, "r") as f:
        return {
            "method": str(f.attrs["method"]),
            "region": str(f.attrs["region"]),
            "info": json.loads(f.attrs["info"]),
            **{key: f[key][:] for key in f},
        }


def _evaluate(result: Mapping, metric_settings: Mapping) -> dict:
    label, score = result["label"], result["score"]
    info = result["info"]
    floor = metric_settings["sic-min-background-efficiency"]
    eps_b_target = metric_settings["significance-background-efficiency"]
    eps_s, eps_b = metrics.efficiency_at(label, score, eps_b_target)
    s, b = info["n_signal_region"], info["n_data_region"] - info["n_signal_region"]
    excess = metrics.selected_excess_by_group(
        result["test_score_by_group"][:, label == 0],
        result["data_score"],
        result["data_group"],
        result["data_label"],
        eps_b_target,
    )
    out = {
        "selected_events": excess["selected"],
        "expected_background_events": excess["expected"],
        "excess_significance": excess["excess_significance"],
        "max_sic": metrics.max_sic(label, score, floor),
        "auc": metrics.auc(label, score),
        "signal_efficiency": eps_s,
        "background_efficiency": eps_b,
        "significance_before": metrics.expected_significance(s, b),
        "significance_after": metrics.expected_significance(s, b, eps_s, eps_b),
        "train_seconds": info.get("train_seconds", float("nan")),
        "evaluate_seconds": info.get("evaluate_seconds", float("nan")),
    }
    for key in (
        "generate_seconds",
        "classifier_seconds",
        "sideband_flow_seconds",
        "sigma_training_seconds",
        "learned_w",
        "learned_w_error",
        "true_w",
        "n_nonfinite_scores",
    ):
        if key in info:
            out[key] = info[key]
    if "score_w_grid" in result:
        out["w_grid"] = info["w_grid"]
        out["max_sic_w_grid"] = [
            metrics.max_sic(label, _finite(s_w), floor) for s_w in result["score_w_grid"]
        ]
    out["significance_improvement"] = (
        out["significance_after"] / out["significance_before"]
        if out["significance_before"] > 0
        else float("nan")
    )
    return out


def _goals(summary: dict, central: str) -> dict:
    res = summary["regions"][central]["methods"]
    goals: dict = {"central_region": central}
    if "supervised" in res:
        goals["supervised_max_sic"] = {
            "value": res["supervised"]["max_sic"],
            "goal": ">= 10",
            "met": res["supervised"]["max_sic"] >= 10,
        }
    if "iad" in res:
        for method in ("cathode", "sigma", "sigma-context"):
            if method in res:
                ratio = res[method]["max_sic"] / res["iad"]["max_sic"]
                goals[f"{method.replace('-', '_')}_over_iad_max_sic"] = {
                    "value": ratio,
                    "goal": ">= 0.7",
                    "met": ratio >= 0.7,
                }
    if "sigma-cr" in res and "sigma-context" in res:
        ratio = res["sigma-context"]["max_sic"] / res["sigma-cr"]["max_sic"]
        goals["sigma_context_over_sigma_cr_max_sic"] = {
            "value": ratio,
            "goal": ">= 0.9",
            "met": ratio >= 0.9,
        }
    if "ranode" in res and "learned_w" in res["ranode"]:
        r = res["ranode"]
        rel = abs(r["learned_w"] - r["true_w"]) / r["true_w"] if r["true_w"] > 0 else float("nan")
        goals["ranode_w_relative_error"] = {
            "value": rel,
            "learned": r["learned_w"],
            "true": r["true_w"],
            "goal": "<= 0.3",
            "met": rel <= 0.3,
        }
    cost = summary.get("per_region_cost", {})
    for variant in ("sigma", "sigma_context"):
        key = f"{variant}_generative_seconds"
        if "cathode_generative_seconds" in cost and key in cost:
            ratio = cost["cathode_generative_seconds"] / cost[key]
            goals[f"cathode_over_{variant}_cost_per_region"] = {
                "value": ratio,
                "goal": ">= 20",
                "met": ratio >= 20,
            }
    return goals


def gather(
    settings: Mapping,
    results: Sequence[str | Path],
    out: str | Path,
    *,
    plots: Mapping[str, str | Path],
    sigma_model: str | Path | None = None,
) -> dict:
    """Write ``summary.json`` and the report plots (``plots``: sic, roc, w, timing, significance)."""
    from twinflow.anomaly import plots as plotting

    check_methods(settings["methods"])
    regions_ = [SignalRegion.from_settings(r) for r in settings["regions"]]
    loaded = [read_method_result(p) for p in results]
    expected = {(r.name, m) for r in regions_ for m in settings["methods"]}
    got = {(r["region"], r["method"]) for r in loaded}
    if got != expected:
        raise ConfigError(
            f"anomaly gather: results for {sorted(got)} do not match the configured "
            f"regions x methods {sorted(expected)}"
        )
    summary: dict = {"settings": dict(settings), "regions": {}}
    for region in regions_:
        summary["regions"][region.name] = {"low": region.low, "high": region.high, "methods": {}}
    for r in loaded:
        summary["regions"][r["region"]]["methods"][r["method"]] = _evaluate(r, settings["metrics"])
    for region in regions_:
        info = next(r["info"] for r in loaded if r["region"] == region.name)
        n_data, n_signal = info["n_data_region"], info["n_signal_region"]
        summary["regions"][region.name].update(
            n_data=n_data,
            n_signal=n_signal,
            signal_over_background=n_signal / max(n_data - n_signal, 1),
        )
    central = max(summary["regions"], key=lambda k: summary["regions"][k]["n_signal"])
    if sigma_model is not None:
        from twinflow.core.checkpoint import load_checkpoint

        summary["sigma_training_seconds"] = float(
            load_checkpoint(sigma_model, kind="anomaly-sigma")["fit_seconds"]
        )
    cost = {}
    per = [summary["regions"][r.name]["methods"] for r in regions_]
    if "cathode" in settings["methods"]:
        cost["cathode_generative_seconds"] = float(
            np.mean(
                [
                    p["cathode"]["sideband_flow_seconds"] + p["cathode"]["generate_seconds"]
                    for p in per
                ]
            )
        )
        cost["cathode_total_seconds"] = float(
            np.mean(
                [
                    p["cathode"]["sideband_flow_seconds"] + p["cathode"]["train_seconds"]
                    for p in per
                ]
            )
        )
    if "sigma" in settings["methods"]:
        cost["sigma_generative_seconds"] = float(
            np.mean([p["sigma"]["generate_seconds"] for p in per])
        )
        cost["sigma_total_seconds"] = float(np.mean([p["sigma"]["train_seconds"] for p in per]))
    if "sigma-context" in settings["methods"]:
        cost["sigma_context_generative_seconds"] = float(
            np.mean([p["sigma-context"]["generate_seconds"] for p in per])
        )
    summary["per_region_cost"] = cost
    summary["goals"] = _goals(summary, central)
    plotting.plot_sic(
        plots["sic"], loaded, regions_, settings["metrics"]["sic-min-background-efficiency"]
    )
    plotting.plot_roc(plots["roc"], loaded, regions_)
    plotting.plot_w(plots["w"], summary, regions_)
    plotting.plot_timing(plots["timing"], summary, regions_, settings["methods"])
    plotting.plot_significance(plots["significance"], summary, regions_, settings["methods"])
    if plots.get("w_grid"):
        plotting.plot_w_grid(plots["w_grid"], summary, regions_)
    if plots.get("signal_samples"):
        central_region = next(r for r in regions_ if r.name == central)
        plotting.plot_signal_samples(plots["signal_samples"], loaded, central_region)
    write_json(out, summary)
    return summary


# ---------------------------------------------------------------------------------------------
# the signal-injection scan: one job per (N_sig, seed, SR, method), gathered into one table
# ---------------------------------------------------------------------------------------------


def nsig_regions(anomaly: Mapping) -> list[int]:
    """Return the SR indices of the signal-injection scan (all of ``scan.centres`` when empty)."""
    chosen = anomaly["scan-nsig"]["regions"]
    return list(chosen) if chosen else list(range(len(anomaly["scan"]["centres"])))


def nsig_results(root: str, anomaly: Mapping) -> list[str]:
    """Return the output path of every (N_sig, seed, SR, method) job of the scan."""
    scan = anomaly["scan-nsig"]
    return [
        f"{root}/nsig/n{n}/seed{seed}/sr{index}/{method}.h5"
        for n in scan["n-signal"]
        for seed in scan["seeds"]
        for index in nsig_regions(anomaly)
        for method in scan["methods"]
    ]


def nsig_section(anomaly: Mapping, n_signal: int, seed: int) -> dict:
    """Return the anomaly section of one scan point: ``data.n-signal`` and ``seed`` replaced."""
    section = json.loads(json.dumps(anomaly))
    section["seed"] = int(seed)
    section["data"]["n-signal"] = int(n_signal)
    return section


def check_nsig_scan(anomaly: Mapping, available_signal: int | None = None) -> None:
    """Raise :class:`ConfigError` for an invalid ``scan-nsig`` section (before any work).

    ``available_signal``: signal events the source holds (files: half the file's signal may be
    injected); None for the simulated source, which makes as many as asked.
    """
    scan = anomaly["scan-nsig"]
    counts = scan["n-signal"]
    require(len(counts) > 0, "anomaly.scan-nsig.n-signal", counts, "give at least one N_sig")
    for n in counts:
        require(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0,
            "anomaly.scan-nsig.n-signal",
            n,
            "expected integers >= 0",
        )
        if available_signal is not None:
            require(
                n <= available_signal,
                "anomaly.scan-nsig.n-signal",
                n,
                f"at most {available_signal} (the signal available to inject)",
            )
    require(
        len(set(counts)) == len(counts), "anomaly.scan-nsig.n-signal", counts, "remove duplicates"
    )
    seeds = scan["seeds"]
    require(len(seeds) > 0, "anomaly.scan-nsig.seeds", seeds, "give at least one seed")
    require(len(set(seeds)) == len(seeds), "anomaly.scan-nsig.seeds", seeds, "remove duplicates")
    n_regions = len(anomaly["scan"]["centres"])
    for index in scan["regions"]:
        require(
            0 <= index < n_regions,
            "anomaly.scan-nsig.regions",
            index,
            f"choose SR indices 0 .. {n_regions - 1}",
        )
    check_methods(scan["methods"])


def available_signal(data: Mapping) -> int | None:
    """Return how many signal events may be injected: None (simulated) or half the file's."""
    if data["source"] != "files":
        return None
    from twinflow.anomaly.data import read_lhco

    return int(read_lhco(data["files"]["data"]).label.sum()) // 2


def nsig_gather_settings(anomaly: Mapping) -> dict:
    return {
        "scan-nsig": dict(anomaly["scan-nsig"]),
        "regions": [region_settings(anomaly, i) for i in nsig_regions(anomaly)],
        "metrics": dict(anomaly["metrics"]),
    }


TABLE_KEYS = (
    "n_signal",
    "seed",
    "region",
    "method",
    "n_signal_region",
    "n_data_region",
    "max_sic",
    "auc",
    "significance_before",
    "significance_after",
    "significance_improvement",
    "selected_events",
    "expected_background_events",
    "excess_significance",
    "true_w",
    "learned_w",
    "learned_w_error",
    "train_seconds",
)


def _quantiles(values: Sequence[float]) -> dict:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if not len(v):
        return {"median": float("nan"), "q16": float("nan"), "q84": float("nan"), "n": 0}
    q16, med, q84 = np.quantile(v, [0.16, 0.5, 0.84])
    return {"median": float(med), "q16": float(q16), "q84": float(q84), "n": int(len(v))}


def nsig_goals(table: Sequence[Mapping], threshold: float) -> dict:
    """The signal-injection goals from the gathered table (see config/README.md)."""
    goals: dict = {}
    w_rows = [
        r
        for r in table
        if r["method"] == "ranode" and r["n_signal"] >= 750 and r.get("true_w", 0) > 0
    ]
    if w_rows:
        rel = [abs(r["learned_w"] - r["true_w"]) / r["true_w"] for r in w_rows]
        covered = [abs(r["learned_w"] - r["true_w"]) <= r["learned_w_error"] for r in w_rows]
        goals["ranode_w_within_30_percent"] = {
            "value": float(np.mean(np.asarray(rel) <= 0.3)),
            "median_relative_error": float(np.median(rel)),
            "goal": "all points with N_sig >= 750 within 30 %",
            "met": bool(np.all(np.asarray(rel) <= 0.3)),
        }
        goals["ranode_w_truth_inside_error"] = {
            "value": float(np.mean(covered)),
            "goal": ">= 2/3 of seeds",
            "met": bool(np.mean(covered) >= 2 / 3),
        }
    zero = [r for r in table if r["n_signal"] == 0]
    if zero:
        per_method: dict = {}
        for r in zero:
            key = f"{r['region']}/{r['method']}"
            per_method.setdefault(key, []).append(
                {"seed": r["seed"], "z": r["excess_significance"]}
            )
        above = {
            key: [p["seed"] for p in points if p["z"] > threshold]
            for key, points in per_method.items()
        }
        goals["no_false_discoveries"] = {
            "seeds_above_threshold": above,
            "goal": f"no method above {threshold} sigma in more than 1 seed of 5",
            "met": all(len(v) <= 1 for v in above.values()),
        }
    at_1000 = [r for r in table if r["n_signal"] == 1000]
    by = {}
    for r in at_1000:
        by.setdefault((r["region"], r["seed"]), {})[r["method"]] = r["max_sic"]
    for ref, floor in (("sigma-cr", 0.9), ("iad", 0.7)):
        ratios = [
            d["sigma-context"] / d[ref] for d in by.values() if "sigma-context" in d and ref in d
        ]
        if ratios:
            value = float(np.median(ratios))
            goals[f"sigma_context_over_{ref.replace('-', '_')}_at_1000"] = {
                "value": value,
                "per_seed": ratios,
                "goal": f">= {floor} (median over seeds and SRs)",
                "met": value >= floor,
            }
    return goals


def gather_nsig(
    settings: Mapping,
    results: Sequence[str | Path],
    out: str | Path,
    *,
    table: str | Path,
    plots: Mapping[str, str | Path],
) -> dict:
    """Gather every (N_sig, seed, SR, method) result into a CSV table, a summary and the plots."""
    import csv

    from twinflow.anomaly import plots as plotting

    scan = settings["scan-nsig"]
    names = {SignalRegion.from_settings(r).name for r in settings["regions"]}
    rows = []
    for path in results:
        r = read_method_result(path)
        ev = _evaluate(r, settings["metrics"])
        row = {
            "n_signal": r["info"]["n_signal_injected"],
            "seed": r["info"]["events_seed"],
            "region": r["region"],
            "method": r["method"],
            "n_signal_region": r["info"]["n_signal_region"],
            "n_data_region": r["info"]["n_data_region"],
            **ev,
        }
        rows.append({k: row[k] for k in TABLE_KEYS if k in row})
    expected = {
        (n, s, reg, m)
        for n in scan["n-signal"]
        for s in scan["seeds"]
        for reg in names
        for m in scan["methods"]
    }
    got = {(r["n_signal"], r["seed"], r["region"], r["method"]) for r in rows}
    if got != expected:
        raise ConfigError(
            f"anomaly scan-nsig gather: missing {sorted(expected - got)[:5]}, "
            f"unexpected {sorted(got - expected)[:5]}"
        )
    rows.sort(key=lambda r: (r["region"], r["method"], r["n_signal"], r["seed"]))
    with atomic_path(table) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(TABLE_KEYS), restval="")
        writer.writeheader()
        writer.writerows(rows)
    bands = {}
    for reg in sorted(names):
        for m in scan["methods"]:
            for n in scan["n-signal"]:
                sel = [r for r in rows if (r["region"], r["method"], r["n_signal"]) == (reg, m, n)]
                bands[f"{reg}/{m}/{n}"] = {
                    key: _quantiles([r[key] for r in sel if key in r])
                    for key in ("max_sic", "significance_improvement", "excess_significance")
                }
    summary = {
        "settings": dict(settings),
        "bands": bands,
        "goals": nsig_goals(rows, scan["significance-threshold"]),
    }
    plotting.plot_scan_metric(plots["max_sic"], rows, "max_sic", "max SIC")
    plotting.plot_scan_metric(
        plots["significance"],
        rows,
        "significance_improvement",
        r"significance improvement $\epsilon_S/\sqrt{\epsilon_B}$ at the cut",
    )
    plotting.plot_scan_w(plots["w"], rows)
    plotting.plot_false_positives(plots["false_positives"], rows, scan["significance-threshold"])
    write_json(out, summary)
    return summary


# ---------------------------------------------------------------------------------------------
# workflow helpers
# ---------------------------------------------------------------------------------------------


def method_inputs(root: str, region: str, method: str) -> dict:
    """Return the input files of one (region, method) job: events, and the models it needs."""
    require_choice("anomaly.methods", method, METHODS)
    inputs = {"events": f"{root}/events.h5"}
    if method in USES_SIDEBAND_FLOW:
        inputs["sideband_flow"] = f"{root}/{region}/sideband_flow.pt"
    if method in USES_SIGMA:
        inputs["sigma_model"] = f"{root}/sigma/model.pt"
    if method in USES_SIGMA_CR:
        inputs["sigma_cr_model"] = f"{root}/{region}/sigma_cr.pt"
    return inputs


def model_arguments(inputs: Mapping) -> str:
    """Return the CLI options (--sideband-flow, --sigma-model, --sigma-cr-model) for the models
    among ``inputs``."""
    import shlex

    options = {
        "sideband_flow": "--sideband-flow",
        "sigma_model": "--sigma-model",
        "sigma_cr_model": "--sigma-cr-model",
    }
    args = []
    for key, flag in options.items():
        value = inputs[key] if key in inputs.keys() else None
        if isinstance(value, (list, tuple)):  # an optional input: [] or [path]
            value = value[0] if len(value) else None
        if value:
            args.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(args)
