"""The anomaly settings layer, torch-free: the scan's signal regions, what each rule gets
(config slicing), every check of the ``anomaly`` section (:func:`check_config`, run when the
Snakefile is parsed) and the schema's defaults for runs by hand (:func:`with_defaults`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from twinflow.anomaly.data import check_data_settings
from twinflow.anomaly.regions import SignalRegion
from twinflow.core.config import SCHEMA_DIR
from twinflow.core.settings import (
    ConfigError,
    load_yaml,
    require,
    require_choice,
    require_positive,
)

SCHEMA = SCHEMA_DIR / "anomaly.schema.yaml"


def _fill(node: dict, schema: Mapping) -> dict:
    for key, sub in schema.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if isinstance(node.get(key), dict) and sub.get("type") == "object":
            _fill(node[key], sub)
    return node


def with_defaults(section: Mapping, schema_path: str | Path = SCHEMA) -> dict:
    """Return ``section`` with every missing key set to the schema's default."""
    return _fill(copy.deepcopy(dict(section)), load_yaml(schema_path))


METHODS = (
    "supervised",
    "iad",
    "cwola",
    "anode",
    "cathode",
    "ranode",
    "ranode-ideal",
    "sigma",
    "sigma-context",
    "sigma-data",
    "sigma-cr",
)

USES_SIDEBAND_FLOW = ("anode", "cathode", "ranode", "ranode-ideal")

USES_SIGMA = ("sigma", "sigma-context", "sigma-data")

USES_SIGMA_CR = ("sigma-cr",)


SOLVERS = ("euler", "midpoint", "rk4")


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
        if anomaly["ranode"].get("background-flows", 1) > 1:  # it trains the extra flows
            out["flow"] = dict(anomaly["flow"])
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


def check_config(anomaly: Mapping) -> None:
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
    # the signal-injection scan's settings too, though it runs only on request: a bad value
    # should not wait for the day someone asks for the scan
    check_nsig_scan(anomaly, available_signal(anomaly["data"]))


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
