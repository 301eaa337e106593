"""The embedding comparison of Dingo-T1 (arXiv:2512.02968): the transformer against Dingo's
SVD + residual-MLP baseline on the same waveform shards, flow, optimizer steps and (separately)
wall-clock time, evaluated on the same injections with the same refinement settings; and the
analysis-settings sweep, where the transformer analyses every setting with one model and the
baseline needs a model per setting.

Runs (``snakemake gw_compare``, results under ``results/gw/compare``):

- ``transformer``: the model of ``gw_train`` and its ``gw_inference`` results (not retrained);
- ``svd-mlp-steps``: svd-mlp with ``gw.train``'s settings: the same steps and batch size;
- ``svd-mlp-time``: svd-mlp under the wall-clock budget (``gw.compare.time-budget``, by default
  the transformer's own training time), with up to ``step-cap-factor`` times the steps;
- ``transformer-time``: only with a numeric ``time-budget``: the transformer under it;
- ``svd-mlp-setting-<label>``: svd-mlp trained for one ``gw.inference.sweep`` setting.

This module's settings functions are torch-free: the rule file imports them at parse time.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from twinflow.core.io import atomic_path, write_json
from twinflow.core.settings import ConfigError, require

SETTING_PREFIX = "svd-mlp-setting-"
EQUAL_STEPS = ("transformer", "svd-mlp-steps")


def compare_runs(gw: Mapping) -> list[str]:
    """Return the models ``gw_compare`` trains (the transformer's comes from ``gw_train``)."""
    compare = gw["compare"]
    runs = ["svd-mlp-steps", "svd-mlp-time"]
    if compare["time-budget"] is not None:
        runs.append("transformer-time")
    if compare["retrain-per-setting"]:
        runs += [
            SETTING_PREFIX + e["label"]
            for e in gw["inference"]["sweep"]["settings"]
            if not _is_full_setting(e)
        ]
    return runs


def _is_full_setting(entry: Mapping) -> bool:
    """Return whether a sweep setting changes nothing (its model is ``svd-mlp-steps``)."""
    return not any(k in entry for k in ("detectors", "minimum-frequency", "maximum-frequency"))


def evaluated_runs(gw: Mapping) -> list[str]:
    """Return the runs evaluated on the injections: the transformer and the full-setting models."""
    return ["transformer", *(r for r in compare_runs(gw) if not r.startswith(SETTING_PREFIX))]


def sweep_entry(gw: Mapping, label: str) -> dict:
    """Return the ``gw.inference.sweep`` setting called ``label``."""
    for entry in gw["inference"]["sweep"]["settings"]:
        if entry["label"] == label:
            return dict(entry)
    labels = [e["label"] for e in gw["inference"]["sweep"]["settings"]]
    raise ConfigError(f"sweep setting {label!r} is not one of gw.inference.sweep's {labels}")


def _band(value, detectors: Sequence[str], default: float, widest) -> float:
    """Return one frequency for training from a number or a per-detector map (its widest)."""
    if value is None:
        return float(default)
    if isinstance(value, Mapping):
        return float(widest(value.get(d, default) for d in detectors))
    return float(value)


def compare_train_settings_for(gw: Mapping, run: str) -> dict:
    """Return the ``gw train`` settings of a comparison run (``train_settings_for`` + changes).

    A per-setting run trains on that setting's detectors and band; a per-detector band map
    is trained on its widest band (narrower detectors are then zero-filled at inference).
    """
    from twinflow.gw.settings import train_settings_for

    require(run in compare_runs(gw), "gw_compare run", run, f"one of {compare_runs(gw)}")
    settings = copy.deepcopy(train_settings_for(gw))
    train, batch = settings["train"], settings["batch"]
    train["model"]["embedding"] = "transformer" if run.startswith("transformer") else "svd-mlp"
    if run.endswith("-time"):
        train["time-budget"] = gw["compare"]["time-budget"]  # null: set from the transformer's
        train["steps-per-epoch"] *= gw["compare"]["step-cap-factor"]
    if run.startswith(SETTING_PREFIX):
        entry = sweep_entry(gw, run[len(SETTING_PREFIX) :])
        detectors = list(entry.get("detectors", gw["detectors"]))
        batch["detectors"] = detectors
        batch["minimum-frequency"] = _band(
            entry.get("minimum-frequency"), detectors, gw["minimum-frequency"], min
        )
        batch["maximum-frequency"] = _band(
            entry.get("maximum-frequency"), detectors, gw["maximum-frequency"], max
        )
    return settings


def budget_from_summary(train: dict, summary_path: str | Path | None) -> dict:
    """Return ``train`` with a null ``time-budget`` set to a training summary's total_seconds."""
    if train.get("time-budget") is not None or summary_path is None:
        return train
    seconds = json.loads(Path(summary_path).read_text())["total_seconds"]
    return {**train, "time-budget": float(seconds)}


def compare_manifest(gw: Mapping, results: str) -> dict:
    """Return the files the comparison table reads: training summaries, injections, sweeps."""
    from twinflow.gw.settings import INJECTION_PREFIX

    compare = f"{results}/gw/compare"
    injections = [f"{INJECTION_PREFIX}{i}" for i in range(gw["inference"]["injections"]["n"])]
    labels = [e["label"] for e in gw["inference"]["sweep"]["settings"]]
    training = {"transformer": f"{results}/gw/train/summary.json"}
    events = {
        "transformer": [f"{results}/gw/inference/events/{e}/summary.json" for e in injections]
    }
    for run in evaluated_runs(gw)[1:]:
        training[run] = f"{compare}/models/{run}/summary.json"
        events[run] = [f"{compare}/inference/{run}/events/{e}/summary.json" for e in injections]
    sweeps = {
        "transformer (one model)": {
            label: f"{results}/gw/inference/sweep/summary.json" for label in labels
        },
        "svd-mlp (trained on all, zero-filled)": {
            label: f"{compare}/sweep/svd-mlp-zero-filled/summary.json" for label in labels
        },
    }
    if gw["compare"]["retrain-per-setting"]:
        # A setting that changes nothing is the all-detector model's own result.
        sweeps["svd-mlp (retrained per setting)"] = {
            label: f"{compare}/sweep/svd-mlp-zero-filled/summary.json"
            if _is_full_setting(sweep_entry(gw, label))
            else f"{compare}/sweep/svd-mlp-retrained/{label}/summary.json"
            for label in labels
        }
        for run in compare_runs(gw):
            if run.startswith(SETTING_PREFIX):
                training[run] = f"{compare}/models/{run}/summary.json"
    return {"training": training, "injections": events, "sweeps": sweeps}


def manifest_files(manifest: Mapping) -> list[str]:
    """Return every file of a manifest once, in a stable order (the table rule's inputs)."""
    files = [*manifest["training"].values()]
    for paths in manifest["injections"].values():
        files += paths
    for by_label in manifest["sweeps"].values():
        files += by_label.values()
    return list(dict.fromkeys(files))


# --------------------------------------------------------------------------------------------
# The table


def injection_statistics(summaries: Sequence[Mapping]) -> dict:
    """Return network efficiency (median, 10th/90th percentiles), final ESS and P-P p of injections.

    The P-P combined p is Fisher's combination of per-parameter KS p-values of the truths'
    posterior quantiles (as ``gw_inference`` reports it); ``None`` with fewer than 2 injections.
    """
    import scipy.stats

    eff = np.array([s.get("network", s)["sampling_efficiency"] for s in summaries])
    quantiles: dict[str, list[float]] = {}
    for s in summaries:
        for name, q in s.get("truth_quantile", {}).items():
            quantiles.setdefault(name, []).append(q)
    pvalues = [
        float(scipy.stats.kstest(q, "uniform").pvalue) for q in quantiles.values() if len(q) > 1
    ]
    return {
        "n_injections": len(summaries),
        "network_efficiencies": [float(e) for e in eff],
        "network_efficiency_median": float(np.median(eff)),
        "network_efficiency_p10": float(np.percentile(eff, 10)),
        "network_efficiency_p90": float(np.percentile(eff, 90)),
        "final_ess_median": float(np.median([s["effective_sample_size"] for s in summaries])),
        "pp_combined_p": float(scipy.stats.combine_pvalues(pvalues, method="fisher").pvalue)
        if pvalues
        else None,
    }


def _training_row(summary: Mapping) -> dict:
    return {
        "embedding": summary.get("embedding", "transformer"),
        "weights": summary["weights"],
        "embedding_weights": summary.get("embedding_weights"),
        "steps": summary.get("steps"),
        "training_samples_per_s": summary.get("samples_per_s", summary["mean_samples_per_s"]),
        "training_seconds": summary["total_seconds"],
        "best_val_loss": summary["best_val_loss"],
    }


def _sweep_row(summary: Mapping) -> dict:
    network = summary.get("network", summary)
    return {
        "network_efficiency": network["sampling_efficiency"],
        "final_ess": summary["effective_sample_size"],
        "warnings": len(summary.get("warnings", [])),
    }


def compare_table(
    training: Mapping[str, str | Path],
    injections: Mapping[str, Sequence[str | Path]],
    sweeps: Mapping[str, Mapping[str, str | Path]],
    out_json: str | Path,
    out_markdown: str | Path,
    out_tsv: str | Path,
) -> dict:
    """Write the comparison tables (JSON, Markdown, TSV) and return them.

    ``training``: run -> training summary.json; ``injections``: run -> per-injection
    summary.json files; ``sweeps``: column -> {label: sweep summary.json holding that label}.
    """
    read = lambda p: json.loads(Path(p).read_text())  # noqa: E731
    runs = {}
    for run, path in training.items():
        row = _training_row(read(path))
        if run in injections:
            row.update(injection_statistics([read(p) for p in injections[run]]))
        runs[run] = row
    sweep: dict[str, dict] = {}
    for column, by_label in sweeps.items():
        for label, path in by_label.items():
            sweep.setdefault(label, {})[column] = _sweep_row(read(path)["results"][label])
    verdict = _verdict(runs)
    table = {"runs": runs, "sweep": sweep, "verdict": verdict}
    write_json(out_json, table)
    markdown = _markdown(runs, sweep, verdict)
    with atomic_path(out_markdown) as tmp:
        Path(tmp).write_text(markdown)
    with atomic_path(out_tsv) as tmp:
        Path(tmp).write_text(_tsv(runs))
    return table


def _verdict(runs: Mapping[str, Mapping]) -> str:
    """Say which embedding won the equal-steps comparison, with the numbers."""
    a, b = (runs.get(r) for r in EQUAL_STEPS)
    if (
        not a
        or not b
        or "network_efficiency_median" not in a
        or "network_efficiency_median" not in b
    ):
        return "no equal-steps comparison on injections"
    import scipy.stats

    ea, eb = a["network_efficiency_median"], b["network_efficiency_median"]
    winner = "transformer" if ea > eb else "svd-mlp" if eb > ea else "neither"
    # Paired over the same injections: how often each is ahead, and the sign test's p-value.
    pairs = list(zip(a["network_efficiencies"], b["network_efficiencies"]))
    wins_a = sum(x > y for x, y in pairs)
    wins_b = sum(y > x for x, y in pairs)
    p = scipy.stats.binomtest(wins_a, wins_a + wins_b).pvalue if wins_a + wins_b else 1.0
    return (
        f"equal steps: median network sampling efficiency {100 * ea:.3g} % (transformer) against "
        f"{100 * eb:.3g} % (svd-mlp) over {a['n_injections']} injections: {winner} is ahead"
        + (" (a tie)" if winner == "neither" else "")
        + f"; per injection the transformer is ahead on {wins_a}, svd-mlp on {wins_b} "
        f"(two-sided sign test p = {p:.2g}"
        + (": not a significant difference)" if p > 0.05 else ")")
    )


COLUMNS = (
    ("run", "{}"),
    ("embedding", "{}"),
    ("steps", "{}"),
    ("weights", "{:,}"),
    ("training_samples_per_s", "{:.0f}"),
    ("training_seconds", "{:.1f}"),
    ("best_val_loss", "{:.3f}"),
    ("network_efficiency_median", "{:.3%}"),
    ("network_efficiency_p10", "{:.3%}"),
    ("network_efficiency_p90", "{:.3%}"),
    ("final_ess_median", "{:.0f}"),
    ("pp_combined_p", "{:.3g}"),
)


def _cell(value, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def _markdown(runs: Mapping, sweep: Mapping, verdict: str) -> str:
    lines = [
        "| " + " | ".join(c for c, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for run, row in runs.items():
        cells = [_cell(run if c == "run" else row.get(c), f) for c, f in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", verdict, ""]
    if sweep:
        columns = sorted({c for row in sweep.values() for c in row})
        lines.append(
            "| setting | "
            + " | ".join(f"{c}: network efficiency / final ESS" for c in columns)
            + " |"
        )
        lines.append("|" + "---|" * (len(columns) + 1))
        for label, row in sweep.items():
            cells = [
                f"{row[c]['network_efficiency']:.3%} / {row[c]['final_ess']:.0f}"
                + (f" ({row[c]['warnings']} warnings)" if row[c]["warnings"] else "")
                if c in row
                else "–"
                for c in columns
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _tsv(runs: Mapping) -> str:
    lines = ["\t".join(c for c, _ in COLUMNS)]
    for run, row in runs.items():
        lines.append("\t".join(str(run if c == "run" else row.get(c, "")) for c, _ in COLUMNS))
    return "\n".join(lines) + "\n"
