"""The anomaly branch end to end on config/test.yaml: every (SR, method) job, summary and plots;
edits rerun only what they touch; bad settings stop before any output."""

import json
import subprocess
import sys

import pytest
from tests.conftest import planned_rules

pytestmark = pytest.mark.workflow


def test_anomaly_workflow(tmp_path, run_snakemake, repo):
    run_snakemake(tmp_path, "--cores", "2", "anomaly")
    root = tmp_path / "results" / "anomaly"
    summary = json.loads((root / "summary.json").read_text())
    methods = [
        *("supervised", "iad", "cwola", "anode", "cathode", "ranode", "ranode-ideal"),
        *("sigma", "sigma-context", "sigma-data", "sigma-cr"),
    ]
    assert sorted(summary["regions"]) == ["sr0", "sr1"]
    for region in summary["regions"].values():
        assert sorted(region["methods"]) == sorted(methods)
        for result in region["methods"].values():
            assert (
                result["max_sic"] > 0 and 0 <= result["auc"] <= 1 and result["train_seconds"] > 0
            )
    ranode = summary["regions"]["sr0"]["methods"]["ranode"]
    assert ranode["learned_w_error"] > 0 and len(ranode["max_sic_w_grid"]) == 2
    assert summary["regions"]["sr0"]["methods"]["ranode-ideal"]["learned_w"] == pytest.approx(
        summary["regions"]["sr0"]["methods"]["ranode-ideal"]["true_w"], rel=1e-5
    )
    assert {"supervised_max_sic", "cathode_over_iad_max_sic", "ranode_w_relative_error"} <= set(
        summary["goals"]
    )
    for plot in (
        *("sic", "roc", "w", "timing", "significance"),
        *("ranode_w_grid", "ranode_signal_samples"),
    ):
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


def test_signal_injection_scan_is_one_job_per_point(tmp_path, run_snakemake, repo):
    """The scan target plans one method job per (N_sig, seed, SR, method), and bad settings stop
    the workflow with one line before any job."""
    override = tmp_path / "scan.yaml"
    override.write_text(
        "anomaly:\n  scan-nsig: {n-signal: [0, 300, 500], seeds: [1, 2], regions: [0, 1],"
        " methods: [iad, sigma-cr]}\n"
    )
    dry = run_snakemake(
        tmp_path, "-n", "anomaly_scan_nsig", configfiles=[repo / "config" / "test.yaml", override]
    )
    assert "anomaly_scan_nsig" in planned_rules(dry)
    counts = {
        parts[0]: int(parts[1])
        for parts in (line.split() for line in dry.stdout.splitlines())
        if len(parts) == 2 and parts[1].isdigit()
    }
    assert counts["anomaly_nsig_method"] == 3 * 2 * 2 * 2
    assert counts["anomaly_nsig_events"] == 3 * 2
    assert counts["anomaly_nsig_train_sigma_cr"] == 3 * 2 * 2
    assert "anomaly_nsig_train_sigma" not in counts  # no method of the scan needs it
    # the checks themselves are unit-tested (tests/anomaly/test_scan_settings.py); here, that
    # the workflow runs them when it reads the config
    override.write_text("anomaly:\n  scan-nsig: {n-signal: [0, -300]}\n")
    result = run_snakemake(
        tmp_path,
        "-n",
        "anomaly_scan_nsig",
        configfiles=[repo / "config" / "test.yaml", override],
        check=False,
    )
    assert result.returncode != 0
    assert "anomaly.scan-nsig.n-signal = -300" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


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
