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
from twinflow.anomaly.data import SignalRegion, check_region, load_events
from twinflow.anomaly.flow_matching import SOLVERS, FlowMatchingModel, sigma_from_settings
from twinflow.anomaly.flows import ConditionalFlow, flow_from_settings
from twinflow.anomaly.methods import METHODS, USES_SIDEBAND_FLOW, USES_SIGMA, build_detector
from twinflow.core.device import configure_cpu_threads
from twinflow.core.io import atomic_path, dumps_settings, write_json, write_provenance
from twinflow.core.seeding import seed_everything
from twinflow.core.settings import ConfigError, require, require_choice, require_positive

CLASSIFIER_METHODS = ("supervised", "iad", "cwola", "cathode", "sigma")
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


def sigma_settings(anomaly: Mapping) -> dict:
    train = {k: v for k, v in anomaly["sigma"].items() if k not in SIGMA_PER_REGION_KEYS}
    return {"seed": anomaly["seed"], "device": anomaly["device"], "sigma": train}


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
    if method == "ranode":
        out["ranode"] = dict(anomaly["ranode"])
    if method == "sigma":
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


def check_scan(anomaly: Mapping) -> None:
    """Raise :class:`ConfigError` for an invalid ``anomaly`` section (before any work)."""
    check_methods(anomaly["methods"])
    require(
        len(anomaly["scan"]["centres"]) > 0,
        "anomaly.scan.centres",
        anomaly["scan"]["centres"],
        "give at least one signal-region centre [TeV]",
    )
    for i in range(len(anomaly["scan"]["centres"])):
        region_settings(anomaly, i)
    require_choice("anomaly.classifier.kind", anomaly["classifier"]["kind"], ("hgb", "mlp"))
    require_choice("anomaly.sigma.solver", anomaly["sigma"]["solver"], SOLVERS)
    w = anomaly["ranode"]["w-init"]
    require(0 < w < 1, "anomaly.ranode.w-init", w, "expected a fraction in (0, 1)")


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
    """Train SIGMA's flow-matching model once, on all data, and save it to ``out``."""
    require_choice("anomaly.sigma.solver", settings["sigma"]["solver"], SOLVERS)
    samples, _ = load_events(events)
    data = samples["data"]
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
) -> dict:
    """Fit one method in one SR, score the test events in that SR, write scores and timings (HDF5)."""
    method = settings["method"]
    require_choice("anomaly.methods", method, METHODS)
    region = SignalRegion.from_settings(settings["region"])
    if method in USES_SIDEBAND_FLOW and sideband_flow is None:
        raise ConfigError(f"method {method!r} needs the sideband flow of {region.name}")
    if method in USES_SIGMA and sigma_model is None:
        raise ConfigError("method 'sigma' needs the trained SIGMA model")
    samples, _ = load_events(events)
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
    detector = build_detector(settings, region, sideband_flow=flow, sigma_model=sigma)
    detector.fit(samples)
    test = samples["test"].select(region.inside(samples["test"].m))
    start = time.perf_counter()
    score = detector.score(test.x, test.m)
    detector.info["evaluate_seconds"] = time.perf_counter() - start
    data_sr = samples["data"].select(region.inside(samples["data"].m))
    info = {
        **detector.info,
        "n_data_region": len(data_sr),
        "n_signal_region": int(data_sr.label.sum()),
        "n_test_signal": int(test.label.sum()),
        "n_test_background": int((test.label == 0).sum()),
    }
    finite = np.isfinite(score)
    if (
        not finite.all()
    ):  # e.g. an event outside a flow's support: rank it as most anomalous, and say so
        info["n_nonfinite_scores"] = int((~finite).sum())
        score = np.where(finite, score, np.nanmax(np.where(finite, score, -np.inf)) + 1)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        write_provenance(f, settings, method=method, region=region.name, info=dumps_settings(info))
        f.create_dataset("score", data=score.astype(np.float64))
        f.create_dataset("label", data=test.label)
        f.create_dataset("m", data=test.m.astype(np.float32))
    return info


def read_method_result(path: str | Path) -> dict:
    with h5py.File(path, "r") as f:
        return {
            "method": str(f.attrs["method"]),
            "region": str(f.attrs["region"]),
            "info": json.loads(f.attrs["info"]),
            "score": f["score"][:],
            "label": f["label"][:],
        }


def _evaluate(result: Mapping, metric_settings: Mapping) -> dict:
    label, score = result["label"], result["score"]
    info = result["info"]
    floor = metric_settings["sic-min-background-efficiency"]
    eps_b_target = metric_settings["significance-background-efficiency"]
    eps_s, eps_b = metrics.efficiency_at(label, score, eps_b_target)
    s, b = info["n_signal_region"], info["n_data_region"] - info["n_signal_region"]
    out = {
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
        "true_w",
        "n_nonfinite_scores",
    ):
        if key in info:
            out[key] = info[key]
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
        for method in ("cathode", "sigma"):
            if method in res:
                ratio = res[method]["max_sic"] / res["iad"]["max_sic"]
                goals[f"{method}_over_iad_max_sic"] = {
                    "value": ratio,
                    "goal": ">= 0.7",
                    "met": ratio >= 0.7,
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
    if "cathode_generative_seconds" in cost and "sigma_generative_seconds" in cost:
        ratio = cost["cathode_generative_seconds"] / cost["sigma_generative_seconds"]
        goals["cathode_over_sigma_cost_per_region"] = {
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
    summary["per_region_cost"] = cost
    summary["goals"] = _goals(summary, central)
    plotting.plot_sic(
        plots["sic"], loaded, regions_, settings["metrics"]["sic-min-background-efficiency"]
    )
    plotting.plot_roc(plots["roc"], loaded, regions_)
    plotting.plot_w(plots["w"], summary, regions_)
    plotting.plot_timing(plots["timing"], summary, regions_, settings["methods"])
    plotting.plot_significance(plots["significance"], summary, regions_, settings["methods"])
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
    return inputs


def model_arguments(inputs: Mapping) -> str:
    """Return the CLI options (--sideband-flow, --sigma-model) for the models among ``inputs``."""
    import shlex

    options = {"sideband_flow": "--sideband-flow", "sigma_model": "--sigma-model"}
    args = []
    for key, flag in options.items():
        value = inputs[key] if key in inputs.keys() else None
        if isinstance(value, (list, tuple)):  # an optional input: [] or [path]
            value = value[0] if len(value) else None
        if value:
            args.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(args)
