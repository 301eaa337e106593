"""The anomaly branch end to end on config/test.yaml: every (SR, method) job, summary and plots;
edits rerun only what they touch; bad settings stop before any output."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.workflow


def test_anomaly_workflow(tmp_path, run_snakemake, repo):
    run_snakemake(tmp_path, "--cores", "2", "anomaly")
    root = tmp_path / "results" / "anomaly"
    summary = json.loads((root / "summary.json").read_text())
    methods = ["supervised", "iad", "cwola", "anode", "cathode", "ranode", "sigma"]
    assert sorted(summary["regions"]) == ["sr0", "sr1"]
    for region in summary["regions"].values():
        assert sorted(region["methods"]) == sorted(methods)
        for result in region["methods"].values():
            assert (
                result["max_sic"] > 0 and 0 <= result["auc"] <= 1 and result["train_seconds"] > 0
            )
    assert "learned_w" in summary["regions"]["sr0"]["methods"]["ranode"]
    assert {"supervised_max_sic", "cathode_over_iad_max_sic", "ranode_w_relative_error"} <= set(
        summary["goals"]
    )
    for plot in ("sic", "roc", "w", "timing", "significance"):
        assert (root / f"{plot}.png").stat().st_size > 1000
    # nothing left to do; a classifier edit reruns classifier methods but no flow and not SIGMA
    assert "Nothing to be done" in run_snakemake(tmp_path, "-n", "anomaly").stdout
    override = tmp_path / "override.yaml"
    override.write_text("anomaly:\n  classifier:\n    max-leaf-nodes: 7\n")
    dry = run_snakemake(
        tmp_path, "-n", "anomaly", configfiles=[repo / "config" / "test.yaml", override]
    ).stdout
    assert "anomaly_method" in dry and "anomaly_gather" in dry
    assert "anomaly_sideband_flow" not in dry and "anomaly_train_sigma" not in dry


def test_bad_settings_stop_before_output(tmp_path, repo):
    events = tmp_path / "events.h5"
    settings = {
        "seed": 1,
        "data": {
            "source": "simulated",
            "n-background": 20000,
            "n-signal": 0,
            "n-extra-background": 100,
            "n-train-signal": 10,
            "n-test-background": 100,
            "n-test-signal": 10,
            "test-fraction": 0.2,
            "files": {},
        },
    }
    twinflow = [sys.executable, "-m", "twinflow", "anomaly"]
    subprocess.run(
        [*twinflow, "events", "--settings", json.dumps(settings), "--out", str(events)],
        check=True,
        capture_output=True,
    )
    bad_region = {
        "seed": 1,
        "device": "cpu",
        "method": "cwola",
        "region": {
            "index": 0,
            "low": 9.5,
            "high": 9.9,
            "sideband-width": 0.2,
            "min-sideband-events": 10,
        },
        "classifier": {},
    }
    out = tmp_path / "cwola.h5"
    result = subprocess.run(
        [
            *twinflow,
            "method",
            "--settings",
            json.dumps(bad_region),
            "--events",
            str(events),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert (
        result.returncode == 2
        and "outside the data's m_JJ range" in result.stderr
        and not out.exists()
    )
    result = subprocess.run(
        [
            *twinflow,
            "method",
            "--settings",
            json.dumps({**bad_region, "method": "salad"}),
            "--events",
            str(events),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert (
        result.returncode == 2
        and "anomaly.methods = 'salad'" in result.stderr
        and not out.exists()
    )
    thin = {
        **bad_region,
        "region": {
            **bad_region["region"],
            "low": 3.3,
            "high": 3.7,
            "sideband-width": 0.01,
            "min-sideband-events": 1000,
        },
    }
    result = subprocess.run(
        [
            *twinflow,
            "method",
            "--settings",
            json.dumps(thin),
            "--events",
            str(events),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "min-sideband-events" in result.stderr and not out.exists()
