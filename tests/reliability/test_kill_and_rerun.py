"""SIGKILL in the middle of a stage leaves nothing that looks finished, and the rerun is exact.

Two moments per stage here; benchmarks/fault_injection.py kills each stage at ten.
"""

from __future__ import annotations

import pytest

from tests.reliability.kill_and_rerun import check_stage, run

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
