"""`snakemake glitch` on config/test.yaml: shards -> images -> translation -> subtraction and
metrics; VAE -> ROC. Edits rerun only what they touch; a bad setting stops before any job."""

import json

import h5py
import pytest
import yaml
from tests.conftest import planned_rules

pytestmark = pytest.mark.workflow


def test_glitch_workflow(tmp_path, run_snakemake, repo):
    test_config = yaml.safe_load((repo / "config" / "test.yaml").read_text())["glitch"]
    run_snakemake(tmp_path, "--cores", "2", "glitch")
    out = tmp_path / "results" / "glitch"
    n_shards = test_config["data"]["n-shards"]
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        f"shard-{i}.h5" for i in range(n_shards)
    ]
    size = test_config["qtransform"]["image-size"]
    with h5py.File(out / "images.h5") as f:
        assert f["strain"].shape == (
            n_shards * test_config["data"]["samples-per-shard"],
            size,
            size,
        )
        assert json.loads(f.attrs["settings"]) == test_config["qtransform"]

    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "glitch_energy_removed",
        "denoising_accuracy",
        "veto_accuracy",
        "chirp_power_retained",
        "denoising_accuracy_perfect_model",
    ):
        assert key in metrics
    for key in ("denoising_accuracy", "veto_accuracy", "denoising_accuracy_perfect_model"):
        assert 0 <= metrics[key] <= 1
    assert metrics["n_test"] > 0 and metrics["settings"]["cluster-threshold"] == 16
    scores = json.loads((out / "vae" / "scores.json").read_text())
    assert 0 <= scores["roc_auc"] <= 1 and scores["n_clean"] > 0 and scores["n_glitch"] > 0
    for figure in (
        "gallery.png",
        "translation/loss.png",
        "vae/loss.png",
        "vae/roc.png",
        "vae/reconstructions.png",
        "vae/latent.png",
    ):
        assert (out / figure).stat().st_size > 0, figure

    # Up to date: nothing to do.
    assert planned_rules(run_snakemake(tmp_path, "--cores", "2", "-n", "glitch")) == set()

    # Editing the VAE's score threshold rescored only; editing the translation loss retrains it only.
    override = tmp_path / "override.yaml"
    override.write_text(
        yaml.safe_dump({"glitch": {"vae": {**test_config["vae"], "snr-threshold": 12}}})
    )
    edited = run_snakemake(
        tmp_path,
        "--cores",
        "2",
        "-n",
        "glitch",
        configfiles=[repo / "config" / "test.yaml", override],
    )
    assert planned_rules(edited) == {"glitch_score_vae", "glitch"}
    override.write_text(
        yaml.safe_dump(
            {"glitch": {"translation": {**test_config["translation"], "loss": "log-cosh"}}}
        )
    )
    edited = run_snakemake(
        tmp_path,
        "--cores",
        "2",
        "-n",
        "glitch",
        configfiles=[repo / "config" / "test.yaml", override],
    )
    assert planned_rules(edited) == {"glitch_train_translation", "glitch_subtract", "glitch"}


def test_bad_glitch_setting_stops_before_any_job(tmp_path, run_snakemake, repo):
    test_config = yaml.safe_load((repo / "config" / "test.yaml").read_text())["glitch"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"glitch": {"qtransform": {**test_config["qtransform"], "image-size": 40}}})
    )
    result = run_snakemake(
        tmp_path,
        "--cores",
        "1",
        "glitch",
        configfiles=[repo / "config" / "test.yaml", bad],
        check=False,
    )
    assert result.returncode != 0
    assert "image-size = 40" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()
