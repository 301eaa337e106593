"""Tests of the embedding comparison's settings and tables (twinflow.gw.training.compare)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from twinflow.core.config import load_config
from twinflow.core.settings import ConfigError
from twinflow.gw.settings import train_settings_for
from twinflow.gw.training.compare import (
    budget_from_summary,
    compare_manifest,
    compare_runs,
    compare_table,
    compare_train_settings_for,
    injection_statistics,
    manifest_files,
)


@pytest.fixture(scope="module")
def gw(repo):
    gw = load_config(repo / "config" / "test.yaml")["gw"]
    gw["inference"]["sweep"]["settings"] = [
        {"label": "all"},
        {"label": "H1-only", "detectors": ["H1"]},
        {"label": "band", "minimum-frequency": {"H1": 30, "L1": 40}, "maximum-frequency": 150},
    ]
    return gw


def test_runs_and_the_settings_each_trains_with(gw):
    assert compare_runs(gw) == [
        "svd-mlp-steps",
        "svd-mlp-time",
        "svd-mlp-setting-H1-only",
        "svd-mlp-setting-band",
    ]
    base = train_settings_for(gw)
    steps = compare_train_settings_for(gw, "svd-mlp-steps")
    assert steps["train"]["model"]["embedding"] == "svd-mlp"
    # Everything else is gw.train's, so the comparison has the same steps, flow and data.
    assert {k: v for k, v in steps["train"].items() if k != "model"} == {
        k: v for k, v in base["train"].items() if k != "model"
    }
    assert steps["train"]["model"]["flow"] == base["train"]["model"]["flow"]
    assert steps["batch"] == base["batch"]
    timed = compare_train_settings_for(gw, "svd-mlp-time")
    assert timed["train"]["time-budget"] is None  # filled from the transformer's summary
    assert timed["train"]["steps-per-epoch"] == 4 * base["train"]["steps-per-epoch"]
    h1 = compare_train_settings_for(gw, "svd-mlp-setting-H1-only")
    assert h1["batch"]["detectors"] == ["H1"]
    band = compare_train_settings_for(gw, "svd-mlp-setting-band")
    # A per-detector map is trained on its widest band.
    assert band["batch"]["minimum-frequency"] == 30
    assert band["batch"]["maximum-frequency"] == 150
    assert band["batch"]["detectors"] == gw["detectors"]
    # The full setting is the equal-steps model's own zero-filled result: no retraining.
    retrained = compare_manifest(gw, "r")["sweeps"]["svd-mlp (retrained per setting)"]
    assert retrained["all"] == "r/gw/compare/sweep/svd-mlp-zero-filled/summary.json"
    assert retrained["band"] == "r/gw/compare/sweep/svd-mlp-retrained/band/summary.json"
    with pytest.raises(ConfigError, match="gw_compare run"):
        compare_train_settings_for(gw, "svd-mlp-other")


def test_a_numeric_budget_retrains_the_transformer_too(gw):
    numeric = {**gw, "compare": {**gw["compare"], "time-budget": 60.0}}
    assert "transformer-time" in compare_runs(numeric)
    settings = compare_train_settings_for(numeric, "transformer-time")
    assert settings["train"]["model"]["embedding"] == "transformer"
    assert settings["train"]["time-budget"] == 60.0


def test_budget_from_summary_fills_only_a_null_budget(tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"total_seconds": 123.5}))
    assert budget_from_summary({"time-budget": None}, summary)["time-budget"] == 123.5
    assert budget_from_summary({"time-budget": 7.0}, summary)["time-budget"] == 7.0
    assert budget_from_summary({"time-budget": None}, None)["time-budget"] is None


def _injection(eff, quantiles, ess=100.0):
    return {
        "network": {"sampling_efficiency": eff},
        "effective_sample_size": ess,
        "truth_quantile": quantiles,
    }


def test_injection_statistics_percentiles_and_pp():
    rng = np.random.default_rng(0)
    eff = rng.uniform(0, 0.1, 50)
    uniform = [_injection(e, {"a": q, "b": r}) for e, q, r in zip(eff, *rng.uniform(size=(2, 50)))]
    stats = injection_statistics(uniform)
    assert stats["network_efficiency_median"] == pytest.approx(np.median(eff))
    assert stats["network_efficiency_p10"] == pytest.approx(np.quantile(eff, 0.1))
    assert stats["network_efficiency_p90"] == pytest.approx(np.quantile(eff, 0.9))
    assert stats["pp_combined_p"] > 0.01
    # Truths always in the posterior's lowest tenth: a failed P-P test.
    biased = [
        _injection(e, {"a": 0.1 * q, "b": 0.1 * r})
        for e, q, r in zip(eff, *rng.uniform(size=(2, 50)))
    ]
    assert injection_statistics(biased)["pp_combined_p"] < 1e-6


def test_table_and_verdict(tmp_path, gw):
    manifest = compare_manifest(gw, str(tmp_path))
    assert len(manifest_files(manifest)) == len(set(manifest_files(manifest)))
    training = {}
    for run, effs in (("transformer", [0.02, 0.03, 0.04, 0.05]), ("svd-mlp-steps", [0.01] * 4)):
        path = tmp_path / f"{run}.json"
        path.write_text(
            json.dumps(
                {
                    "weights": 10,
                    "total_seconds": 5.0,
                    "samples_per_s": 100.0,
                    "mean_samples_per_s": 100.0,
                    "best_val_loss": 1.0,
                    "steps": 12,
                    "embedding": run.split("-steps")[0],
                }
            )
        )
        training[run] = path
        events = []
        for i, e in enumerate(effs):
            event = tmp_path / f"{run}-{i}.json"
            event.write_text(json.dumps(_injection(e, {"a": 0.5})))
            events.append(event)
        manifest["injections"][run] = events
    sweep = tmp_path / "sweep.json"
    sweep.write_text(
        json.dumps({"results": {"all": {"sampling_efficiency": 0.1, "effective_sample_size": 9}}})
    )
    table = compare_table(
        training,
        {k: manifest["injections"][k] for k in training},
        {"transformer (one model)": {"all": sweep}},
        tmp_path / "t.json",
        tmp_path / "t.md",
        tmp_path / "t.tsv",
    )
    assert "transformer is ahead" in table["verdict"]
    assert "ahead on 4, svd-mlp on 0" in table["verdict"]
    assert "p = 0.12" in table["verdict"]  # 4 of 4: two-sided sign test p = 2 / 16
    assert table["runs"]["svd-mlp-steps"]["network_efficiency_median"] == 0.01
    markdown = (tmp_path / "t.md").read_text()
    assert table["verdict"] in markdown and "| all | 10.000% / 9 |" in markdown
