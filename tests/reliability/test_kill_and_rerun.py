"""SIGKILL in the middle of a stage leaves nothing that looks finished, and the rerun is exact.

Two moments per stage here; benchmarks/fault_injection.py kills each stage at ten. The gw
dataset shard and PSD bank are killed through their CLI; the training and inference stages in
a forked child, inside their work (training: after the first epoch's state is written, so the
rerun resumes from it; gw inference: inside refinement).
"""

from __future__ import annotations

import pytest

from tests.reliability import stages
from tests.reliability.kill_and_rerun import check_kills, check_stage, run

CONFIG = "config/test.yaml"


@pytest.fixture(scope="module")
def domain(tmp_path_factory, repo):
    path = tmp_path_factory.mktemp("domain") / "domain.json"
    run(["gw", "dataset-domain", "--config", CONFIG, "--out", str(path)], repo)
    return path


def test_waveform_shard_killed_and_rerun(tmp_path, repo, domain):
    out = tmp_path / "shard-0.h5"
    argv = ["gw", "dataset-shard", "--config", CONFIG, "--domain", str(domain)]
    argv += ["--shard", "0", "--out", str(out)]
    assert check_stage(argv, out, repo, fractions=[0.55, 0.85]) == []


def test_psd_bank_killed_and_rerun(tmp_path, repo):
    out = tmp_path / "H1.h5"
    argv = ["gw", "psd", "--config", CONFIG, "--detector", "H1", "--out", str(out)]
    assert check_stage(argv, out, repo, fractions=[0.6, 0.9]) == []


# --------------------------------------------------------------------------------------------
# The long stages of every branch, killed inside their work (a forked child; see check_kills)


# The kill moments are fractions of the phase measured on an uninterrupted run; a loaded
# machine can let a child finish first (a kill that did not happen, not a problem), so one
# kill of the two is required.


@pytest.mark.parametrize("make", [stages.glitch_translation, stages.glitch_vae])
def test_glitch_training_killed_resumes_exactly(tmp_path, glitch_images, make):
    glitch, _, images = glitch_images
    report = check_kills(make(tmp_path, glitch, images), fractions=[0.1, 0.5])
    assert report.problems == []
    assert report.kills >= 1 and report.resumed == 2, report


@pytest.mark.parametrize("make", [stages.anomaly_sideband_flow, stages.anomaly_sigma])
def test_anomaly_flow_killed_and_rerun(tmp_path, anomaly_events, make):
    anomaly, events = anomaly_events
    report = check_kills(make(tmp_path, anomaly, events), fractions=[0.2, 0.6])
    assert report.problems == []
    assert report.kills >= 1, report


def test_gw_inference_killed_in_refinement_and_rerun(tmp_path):
    report = check_kills(stages.gw_inference(tmp_path), fractions=[0.2, 0.6])
    assert report.problems == []
    assert report.kills >= 1, report
