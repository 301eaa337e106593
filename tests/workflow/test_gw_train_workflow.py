"""`snakemake gw_train` on config/test.yaml: model, metrics, loss curve; a SIGKILLed training
job resumes from its per-epoch state and ends with the weights of an uninterrupted run; edits
of the training section rerun training only."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from tests.conftest import planned_rules

from twinflow.gw.settings import train_settings_for
from twinflow.gw.training.model import load_posterior_model

pytestmark = pytest.mark.workflow


def train_cli(workdir: Path, settings: dict, out: Path) -> list[str]:
    twinflow = str(Path(sys.executable).parent / "twinflow")
    res = workdir / "results" / "gw"
    return [
        twinflow,
        "gw",
        "train",
        "--settings",
        json.dumps(settings),
        "--index",
        str(res / "dataset" / "index.json"),
        "--psd",
        str(res / "psd" / "H1.h5"),
        str(res / "psd" / "L1.h5"),
        "--model",
        str(out / "model.pt"),
        "--metrics",
        str(out / "metrics.csv"),
        "--plot",
        str(out / "loss.png"),
        "--state",
        str(out / "state.pt"),
    ]


def test_gw_train_workflow(tmp_path, run_snakemake, repo):
    run_snakemake(tmp_path, "--cores", "2", "gw_train")
    gw = yaml.safe_load((repo / "config" / "test.yaml").read_text())["gw"]
    out = tmp_path / "results" / "gw" / "train"
    model = load_posterior_model(out / "model.pt")
    assert model.parameter_names == gw["train"]["parameters"]
    assert model.settings["marginalised"] == ["phase"]
    assert model.settings["analysis"]["detectors"] == gw["detectors"]
    assert model.settings["analysis"]["maximum-frequency"] == gw["maximum-frequency"]
    assert model.settings["inputs"]["masks"] == gw["dataset"]["masks"]
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == gw["train"]["epochs"]
    assert all(float(r["val_loss"]) == float(r["val_loss"]) for r in rows)  # finite, not NaN
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_val_loss"] == min(float(r["val_loss"]) for r in rows)
    assert (out / "loss.png").stat().st_size > 0
    assert not (out / "training-state.pt").exists()  # removed once the outputs are written
    assert "posterior model:" in (tmp_path / "results" / "logs" / "gw" / "train.log").read_text()

    # Editing the training section reruns training only; editing the masks too, not the dataset.
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"gw": {"train": {**gw["train"], "learning-rate": 0.002}}}))
    edited = run_snakemake(
        tmp_path,
        "--cores",
        "2",
        "-n",
        "gw_train",
        configfiles=[repo / "config" / "test.yaml", override],
    )
    assert planned_rules(edited) == {"gw_train"}

    # A rerun that fails (an edit the job itself refuses: a fixed parameter to infer) keeps
    # the previous model: Snakemake backs up the update() output and restores it.
    before = (out / "model.pt").read_bytes()
    failing = tmp_path / "failing.yaml"
    failing.write_text(
        yaml.safe_dump(
            {
                "gw": {
                    "dataset": {"prior": {"ra": 1.375}},
                    "train": {**gw["train"], "parameters": ["chirp_mass", "ra"]},
                }
            }
        )
    )
    result = run_snakemake(
        tmp_path,
        "--cores",
        "2",
        "gw_train",
        configfiles=[repo / "config" / "test.yaml", failing],
        check=False,
    )
    assert result.returncode != 0
    assert (out / "model.pt").read_bytes() == before

    # Bad settings stop the stage with one line naming the key, before any output.
    settings = train_settings_for(gw)
    settings["batch"]["prior"]["ra"] = 1.375
    for key, value in (("parameters", ["chirp_mass", "ra"]), ("batch-size", 1)):
        bad = {**settings, "train": {**settings["train"], key: value}}
        result = subprocess.run(
            train_cli(tmp_path, bad, tmp_path / "bad"), capture_output=True, text=True
        )
        assert result.returncode == 2 and f"{key} = " in result.stderr, result.stderr
        assert not (tmp_path / "bad").exists()

    # kill -9 during training, then rerun: it resumes after the last finished epoch and ends
    # with exactly the weights of an uninterrupted run (CPU, same seed).
    settings = train_settings_for(gw)
    settings["train"] = {**settings["train"], "epochs": 4, "steps-per-epoch": 8}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    subprocess.run(
        train_cli(tmp_path, settings, reference), check=True, env=env, capture_output=True
    )
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        train_cli(tmp_path, settings, killed),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (killed / "state.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "training ended before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "model.pt").exists()
    resumed = subprocess.run(
        train_cli(tmp_path, settings, killed), check=True, env=env, capture_output=True, text=True
    )
    assert "resuming after epoch" in resumed.stdout + resumed.stderr
    a = torch.load(reference / "model.pt", weights_only=True)["model"]
    b = torch.load(killed / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
