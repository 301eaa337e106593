"""Gathering the scan's results: SIC curves and significance improvements per (signal region,
method) into summary tables and goal checks, and the signal-injection scan's table over N_sig
and seeds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from twinflow.anomaly import metrics
from twinflow.anomaly.regions import SignalRegion
from twinflow.anomaly.settings import check_methods
from twinflow.core.io import (
    atomic_path,
    quarantine_if_damaged,
    read_hdf5,
    verify_intermediate,
    write_json,
)
from twinflow.core.settings import ConfigError


def finite_scores(score: np.ndarray) -> np.ndarray:
    """Scores with non-finite entries (an event outside a flow's support) ranked most anomalous."""
    finite = np.isfinite(score)
    if finite.all():
        return score
    top = np.max(score[finite]) + 1 if finite.any() else 0.0
    return np.where(finite, score, top)


def read_method_result(path: str | Path) -> dict:
    """Return the method's output file as a dict: method, region, info and every array."""
    verify_intermediate(path, "anomaly method result", ("score", "label"))
    with read_hdf5(path, "anomaly method result") as f:
        return {
            "method": str(f.attrs["method"]),
            "region": str(f.attrs["region"]),
            "info": json.loads(f.attrs["info"]),
            **{key: f[key][:] for key in f},
        }


def evaluate_method_result(result: Mapping, metric_settings: Mapping) -> dict:
    """Return the metrics of one method result (:func:`read_method_result`): SIC, excess, w, times."""
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
        "learned_w_error_statistical",
        "learned_w_error_signal_model",
        "learned_w_plain",
        "true_w",
        "n_nonfinite_scores",
    ):
        if key in info:
            out[key] = info[key]
    if "score_w_grid" in result:
        out["w_grid"] = info["w_grid"]
        out["max_sic_w_grid"] = [
            metrics.max_sic(label, finite_scores(s_w), floor) for s_w in result["score_w_grid"]
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
        summary["regions"][r["region"]]["methods"][r["method"]] = evaluate_method_result(
            r, settings["metrics"]
        )
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

        with quarantine_if_damaged(sigma_model):  # a damaged model is remade by its rule
            sigma = load_checkpoint(sigma_model, kind="anomaly-sigma")
        summary["sigma_training_seconds"] = float(sigma["fit_seconds"])
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
        ev = evaluate_method_result(r, settings["metrics"])
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
