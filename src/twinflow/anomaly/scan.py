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

import time
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from twinflow.anomaly.data import load_events
from twinflow.anomaly.flow_matching import FlowMatchingModel, sigma_from_settings
from twinflow.anomaly.flows import ConditionalFlow, flow_from_settings
from twinflow.anomaly.gather import (
    finite_scores,
)
from twinflow.anomaly.methods import (
    METHODS,
    USES_SIDEBAND_FLOW,
    USES_SIGMA,
    USES_SIGMA_CR,
    build_detector,
)
from twinflow.anomaly.regions import SignalRegion, check_region
from twinflow.anomaly.settings import SOLVERS
from twinflow.core.device import configure_cpu_threads
from twinflow.core.io import atomic_path, dumps_settings, write_checksum, write_provenance
from twinflow.core.seeding import seed_everything
from twinflow.core.settings import ConfigError, require_choice

# ---------------------------------------------------------------------------------------------
# settings of each stage
# ---------------------------------------------------------------------------------------------


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
    and timings (HDF5). Every method that trains on the SR data scores them out of fold: the
    classifier methods through their ensemble's folds (:mod:`twinflow.anomaly.classifiers`),
    ANODE and R-ANODE by refitting their SR density on the other folds
    (:class:`~twinflow.anomaly.detector.DensityDetector`)."""
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
    score = finite_scores(raw)
    data_sr = samples["data"].select(region.inside(samples["data"].m))
    data_score, data_group, test_by_group = detector.score_region_data(samples, test)
    data_score = finite_scores(data_score)
    test_by_group = np.stack([finite_scores(t) for t in test_by_group])
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
        write_checksum(f)
    return info


# ---------------------------------------------------------------------------------------------
# the signal-injection scan: one job per (N_sig, seed, SR, method), gathered into one table
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# workflow helpers
# ---------------------------------------------------------------------------------------------
