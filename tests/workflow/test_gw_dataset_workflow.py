"""`snakemake gw_dataset` on config/test.yaml: shards, index, plots; edits rerun only what they touch."""

import json

import h5py
import pytest
import yaml
from tests.conftest import planned_rules

pytestmark = pytest.mark.workflow


def test_gw_dataset_workflow(tmp_path, run_snakemake, repo):
    run_snakemake(tmp_path, "--cores", "2", "gw_dataset")
    test_config = yaml.safe_load((repo / "config" / "test.yaml").read_text())["gw"]
    ds = tmp_path / "results" / "gw" / "dataset"
    index = json.loads((ds / "index.json").read_text())
    n_shards, size = test_config["dataset"]["n-shards"], test_config["dataset"]["shard-size"]
    assert len(index["shards"]) == n_shards and index["n-total"] == n_shards * size
    domain = json.loads((ds / "domain.json").read_text())
    assert domain["domain"]["nodes"][0] == test_config["minimum-frequency"]
    assert domain["domain"]["nodes"][-1] == test_config["maximum-frequency"]
    assert (
        domain["n-bins"]
        < (test_config["maximum-frequency"] - test_config["minimum-frequency"])
        * test_config["duration"]
    )
    with h5py.File(ds / "shard-0.h5") as f:
        assert f["h_plus"].shape == (size, domain["n-bins"])
        assert "settings" in f.attrs
    assert (ds / "example-strain.png").stat().st_size > 0 and (
        ds / "example-masks.png"
    ).stat().st_size > 0

    # Up to date: nothing to do.
    again = run_snakemake(tmp_path, "--cores", "2", "-n", "gw_dataset")
    assert planned_rules(again) == set()

    # Editing the masks or the extrinsic prior reruns the plots only, never the waveforms.
    override = tmp_path / "override.yaml"
    override.write_text(
        yaml.safe_dump(
            {
                "gw": {
                    "dataset": {
                        "masks": {
                            **test_config["dataset"]["masks"],
                            "detector-drop-probabilities": [0.5, 0.5],
                        },
                        "prior": {**test_config["dataset"]["prior"], "psi": 0.3},
                    }
                }
            }
        )
    )
    edited = run_snakemake(
        tmp_path,
        "--cores",
        "2",
        "-n",
        "gw_dataset",
        configfiles=[repo / "config" / "test.yaml", override],
    )
    assert planned_rules(edited) == {"gw_dataset_plots", "gw_dataset"}

    # Editing an intrinsic prior bound reruns domain, shards and index.
    override.write_text(
        yaml.safe_dump(
            {
                "gw": {
                    "dataset": {
                        "prior": {
                            **test_config["dataset"]["prior"],
                            "mass_ratio": {
                                "distribution": "UniformInComponentsMassRatio",
                                "minimum": 0.6,
                                "maximum": 1,
                            },
                        }
                    }
                }
            }
        )
    )
    edited = run_snakemake(
        tmp_path,
        "--cores",
        "2",
        "-n",
        "gw_dataset",
        configfiles=[repo / "config" / "test.yaml", override],
    )
    assert {"gw_dataset_domain", "gw_dataset_shard", "gw_dataset_index"} <= planned_rules(edited)
