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


def test_glitch_workflow_on_detector_files(tmp_path, run_snakemake, repo):
    """source: files: a gwpy-written multi-channel HDF5 file and a trigger CSV go through
    glitch_load -> images -> translation -> subtraction and the VAE; the metrics that need the
    glitch alone are null (detector data does not know it)."""
    import numpy as np
    import scipy.signal
    from gwpy.timeseries import TimeSeries, TimeSeriesDict

    test_config = yaml.safe_load((repo / "config" / "test.yaml").read_text())["glitch"]
    fs, span, t0 = test_config["data"]["sampling-frequency"], 240, 1_200_000_000.0
    rng = np.random.default_rng(1)
    n = span * fs
    t = t0 + np.arange(n) / fs
    sos = scipy.signal.butter(4, 100, fs=fs, output="sos")
    strain = scipy.signal.sosfilt(sos, rng.standard_normal(n)) + 0.1 * rng.standard_normal(n)
    aux = rng.standard_normal((2, n))
    trigger_times = t0 + 5 + 8 * np.arange(28) + rng.uniform(0, 1, 28)
    for tt in trigger_times:
        glitch = np.exp(-(((t - tt) / 0.02) ** 2)) * np.sin(2 * np.pi * 50 * (t - tt))
        aux[0] += 20 * glitch
        strain += 5 * glitch
    names = ["H1:GDS-CALIB_STRAIN", "H1:PEM-CS_ACC_A", "H1:ASC-X_PIT"]
    data = TimeSeriesDict()
    for name, values in zip(names, [strain, *aux]):
        data[name] = TimeSeries(values, t0=t0, sample_rate=fs, name=name, channel=name)
    frames = tmp_path / "H-H1_TEST-1200000000-240.h5"
    data.write(str(frames), format="hdf5")
    triggers = tmp_path / "triggers.csv"
    triggers.write_text(
        "time,frequency,snr\n" + "".join(f"{tt:.4f},50,12\n" for tt in trigger_times)
    )
    files = {
        **test_config["data"]["files"],
        "paths": [str(frames)],
        "strain-channel": names[0],
        "aux-channels": names[1:],
        "triggers": str(triggers),
    }
    override = tmp_path / "files.yaml"
    override.write_text(
        yaml.safe_dump(
            {"glitch": {"data": {**test_config["data"], "source": "files", "files": files}}}
        )
    )
    configs = [repo / "config" / "test.yaml", override]
    run_snakemake(tmp_path, "--cores", "2", "glitch", configfiles=configs)
    out = tmp_path / "results" / "glitch"
    assert sorted(p.name for p in (out / "data").iterdir()) == ["shard-0.h5"]
    with h5py.File(out / "data" / "shard-0.h5") as f:
        assert int(f["has_glitch"][()].sum()) == len(trigger_times)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["truth"] is False and metrics["glitch_energy_removed"] is None
    assert 0 <= metrics["denoising_accuracy_amplitude"] <= 1
    scores = json.loads((out / "vae" / "scores.json").read_text())
    assert scores["n_glitch"] > 0 and scores["n_clean"] > 0
    # The loud triggered glitches stand out of the off-source-whitened noise.
    assert scores["roc_auc"] > 0.8
