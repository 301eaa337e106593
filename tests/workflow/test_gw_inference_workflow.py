"""`snakemake gw_inference` on config/test.yaml plus the three real events of config/events.yaml:
injections, real strain (GW170104 analysed, GW151226 and LVT151012 refused: their published
chirp masses lie below the trained prior), the settings sweep, the collected summary,
bilby-readable results and the report.

config/test.yaml trains a tiny model for a few steps, a poor proposal for posteriors at the
default distances (SNR 10-60): importance sampling is then exact but rests on a handful of
samples. To test coverage with that model, this test moves the distance prior (training and
injections alike) to 3-6 Gpc, where posteriors are broad (network SNR ~2-6) and the tiny
model's proposal gives tens to hundreds of effective samples. It also adds a sweep setting the
training masks never produced (f_min = 100 Hz), which must be flagged.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from tests.conftest import planned_rules

pytestmark = pytest.mark.workflow


def test_gw_inference_workflow(tmp_path, run_snakemake, repo):
    # the real events of ../shared/data run when the folder is there (as tests/conftest.py's SHARED_DATA)
    folder = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "gw" / "strain"
    catalogue = (
        json.loads((folder / "events.json").read_text())
        if (folder / "events.json").is_file()
        else {}
    )
    # the shipped overlay's events (config/events.yaml), its strain paths pointed at that folder
    shipped = yaml.safe_load((repo / "config" / "events.yaml").read_text())["gw"]["inference"]
    events = {
        name: {
            **event,
            "data-dict": {d: str(folder / Path(p).name) for d, p in event["data-dict"].items()},
        }
        for name, event in shipped["events"].items()
        if name in catalogue
    }
    # the test prior's chirp mass is 20-40 Msun, as the default's: these two are refused
    refused = {"GW151226", "LVT151012"} & set(events)
    test_config = yaml.safe_load((repo / "config" / "test.yaml").read_text())
    sweep = test_config["gw"]["inference"]["sweep"]["settings"] + [
        {"label": "fmin-100Hz", "minimum-frequency": 100}
    ]
    override = tmp_path / "override.yaml"
    override.write_text(
        yaml.safe_dump(
            {
                "gw": {
                    "dataset": {
                        "prior": {
                            "luminosity_distance": {
                                "distribution": "Uniform",
                                "minimum": 3000,
                                "maximum": 6000,
                            }
                        }
                    },
                    "inference": {
                        "events": events,
                        "sweep": {"event": "injection-0", "settings": sweep},
                    },
                }
            }
        )
    )
    configfiles = [repo / "config" / "test.yaml", override]
    run_snakemake(tmp_path, "--cores", "2", "gw_inference", configfiles=configfiles)

    out = tmp_path / "results" / "gw" / "inference"
    collected = json.loads((out / "summary.json").read_text())
    n_injections = test_config["gw"]["inference"]["injections"]["n"]
    assert set(collected["events"]) == {f"injection-{i}" for i in range(n_injections)} | (
        set(events) - refused
    )
    assert set(collected["refused"]) == refused
    for name in refused:
        assert collected["refused"][name].startswith(f"{name}: refused before sampling")
        assert not (out / "events" / name).exists()
    injections = collected["injections"]
    assert injections["n"] == n_injections
    efficiencies = [
        collected["events"][f"injection-{i}"]["sampling_efficiency"] for i in range(n_injections)
    ]
    assert injections["median_sampling_efficiency"] == pytest.approx(np.median(efficiencies))

    # coverage: the truth's posterior quantile lies in the central 90 % at roughly that rate
    quantiles = np.array(
        [
            q
            for i in range(n_injections)
            for q in collected["events"][f"injection-{i}"]["truth_quantile"].values()
        ]
    )
    inside = np.mean((quantiles > 0.05) & (quantiles < 0.95))
    assert inside >= 0.6, (
        f"only {inside:.0%} of true values inside the 90 % intervals: {quantiles}"
    )
    assert injections["pp_combined_pvalue"] > 1e-3

    bilby = pytest.importorskip("bilby")
    pesummary_io = pytest.importorskip("pesummary.io")
    for name in collected["events"]:
        folder_e = out / "events" / name
        result = bilby.core.result.read_in_result(str(folder_e / "result.json"))
        assert result.label == name and np.isfinite(result.log_bayes_factor)
        # every posterior opens in PESummary (its page is built in tests/gw/test_real_events.py)
        opened = pesummary_io.read(str(folder_e / "result.json"))
        assert len(opened.samples_dict["chirp_mass"]) == len(result.posterior)
        summary = collected["events"][name]
        assert summary["runtime"]["sampling"] > 0 and summary["runtime"]["likelihood"] > 0
        with h5py.File(folder_e / "posterior.h5", "r") as f:
            # the network's n-samples, or the refined samples when refinement ran
            n_network = test_config["gw"]["inference"]["n-samples"]
            assert len(f["weights"]) == summary["n_samples"]
            assert summary["network"]["n_samples"] == n_network
            assert (summary["final_stage"] == "refinement") == ("network" in f)
            assert np.isclose(f["weights"][:].sum(), 1.0)
        assert (folder_e / "corner.png").stat().st_size > 0 and (
            folder_e / "asd.png"
        ).stat().st_size > 0
    for name in set(events) - refused:
        # the real-event figures, and the published intervals the corner plot marks
        for figure in ("strain", "skymap", "ess"):
            assert (out / "events" / name / f"{figure}.png").stat().st_size > 0
        with h5py.File(out / "events" / name / "posterior.h5", "r") as f:
            assert set(f["published"].attrs) >= {"chirp_mass", "luminosity_distance"}
            assert "maximum_likelihood_signal" in f["event/H1"]
        # Real strain runs end to end. The test model, as the CPU default, fixes the sky at its
        # reference time, so every real event carries that warning. "reliable" needs the final
        # ESS at its target (and clean refinement diagnostics).
        summary = collected["events"][name]
        assert summary["metadata"]["psd-source"]["H1"].startswith("welch:")
        assert any("ra is fixed in the prior" in w for w in summary["warnings"])
        if summary["effective_sample_size"] < summary["target_ess"]:
            assert summary["reliable"] is False

    sweep_summary = json.loads((out / "sweep" / "summary.json").read_text())
    assert list(sweep_summary["results"]) == [s["label"] for s in sweep]
    assert sweep_summary["results"]["H1-only"]["detectors"] == ["H1"]
    assert any(
        "minimum-frequency = 100 Hz was never seen in training" in w
        for w in sweep_summary["results"]["fmin-100Hz"]["warnings"]
    )
    assert not any("never seen" in w for w in sweep_summary["results"]["all"]["warnings"])
    assert (out / "sweep" / "corner.png").stat().st_size > 0

    run_snakemake(
        tmp_path, "--report", str(tmp_path / "report.zip"), "gw_inference", configfiles=configfiles
    )
    assert (tmp_path / "report.zip").stat().st_size > 0

    # Editing only the events reruns inference, never the dataset or the training.
    if events:
        fewer = tmp_path / "fewer.yaml"
        overrides = yaml.safe_load(override.read_text())
        overrides["gw"]["inference"]["events"] = dict(list(events.items())[:1])
        fewer.write_text(yaml.safe_dump(overrides))
        dry = run_snakemake(
            tmp_path,
            "--cores",
            "2",
            "-n",
            "gw_inference",
            configfiles=[repo / "config" / "test.yaml", fewer],
        )
        planned = planned_rules(dry)
        assert "gw_inference_collect" in planned
        assert not planned & {"gw_train", "gw_dataset_shard", "gw_psd_bank", "gw_inference_event"}
