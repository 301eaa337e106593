"""Waveform shards: contents against bilby, reproducibility, index, streaming reader, errors."""

import copy
import json

import h5py
import numpy as np
import pytest
import scipy.stats

from twinflow.core.settings import ConfigError, load_yaml
from twinflow.gw.dataset.grid import resolve_domain
from twinflow.gw.dataset.shards import WaveformDataset, simulate_shard, write_index
from twinflow.gw.prior import build_prior
from twinflow.gw.settings import dataset_domain_settings_for, dataset_shard_settings_for


@pytest.fixture(scope="module")
def gw_config(repo):
    return load_yaml(repo / "config" / "test.yaml")["gw"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, gw_config):
    root = tmp_path_factory.mktemp("dataset")
    resolve_domain(dataset_domain_settings_for(gw_config), root / "domain.json")
    settings = dataset_shard_settings_for(gw_config)
    settings["shard-size"], settings["chunk-size"] = 300, 64
    for i in range(2):
        simulate_shard(settings, root / "domain.json", i, root / f"shard-{i}.h5")
    write_index([root / "shard-0.h5", root / "shard-1.h5"], root / "index.json")
    return root, settings


def test_shard_polarizations_equal_bilby_from_the_stored_parameters(dataset, gw_config):
    from bilby.gw.conversion import convert_to_lal_binary_black_hole_parameters
    from bilby.gw.source import lal_binary_black_hole

    root, settings = dataset
    data = WaveformDataset(root / "index.json")
    domain = data.domain
    block = data.read(1, 0, 300)
    assert block["h_plus"].dtype == np.complex64 and block["h_plus"].shape == (300, domain.n_bins)
    for i in (0, 157, 299):
        params = {name: block[name][i] for name in data.parameters}
        converted, _ = convert_to_lal_binary_black_hole_parameters(params)
        keys = (
            "mass_1",
            "mass_2",
            "a_1",
            "tilt_1",
            "phi_12",
            "a_2",
            "tilt_2",
            "phi_jl",
            "theta_jn",
            "phase",
        )
        ref = lal_binary_black_hole(
            domain.base.frequencies,
            **{k: converted[k] for k in keys},
            luminosity_distance=settings["reference-distance"],
            waveform_approximant=settings["approximant"],
            reference_frequency=settings["reference-frequency"],
            minimum_frequency=domain.f_min,
            maximum_frequency=domain.f_max,
        )
        for name, key in (("plus", "h_plus"), ("cross", "h_cross")):
            expected = domain.decimate(ref[name])
            np.testing.assert_allclose(
                block[key][i], expected, rtol=0, atol=1e-6 * np.abs(expected).max()
            )


def test_stored_parameters_follow_the_prior(dataset, gw_config):
    root, _ = dataset
    data = WaveformDataset(root / "index.json").load()
    prior = build_prior(gw_config["dataset"]["prior"])
    assert len(data["chirp_mass"]) == 600
    for name in ("chirp_mass", "mass_ratio", "chi_1", "theta_jn"):
        assert scipy.stats.kstest(data[name], prior[name].cdf).pvalue > 1e-3


def test_shards_are_reproducible_alone_and_independent_of_chunk_size(dataset, tmp_path):
    root, settings = dataset
    again = dict(settings, **{"chunk-size": 1000})
    simulate_shard(again, root / "domain.json", 1, tmp_path / "shard-1.h5")
    with h5py.File(root / "shard-1.h5") as a, h5py.File(tmp_path / "shard-1.h5") as b:
        np.testing.assert_array_equal(a["h_plus"][:], b["h_plus"][:])
        np.testing.assert_array_equal(a["parameters/chirp_mass"][:], b["parameters/chirp_mass"][:])
        with h5py.File(root / "shard-0.h5") as c:
            assert not np.any(c["parameters/chirp_mass"][:] == a["parameters/chirp_mass"][:])
        stored = json.loads(a.attrs["settings"])
        assert (
            stored["approximant"] == settings["approximant"]
            and json.loads(a.attrs["domain"])["nodes"]
        )


def test_index_and_streamed_batches_cover_every_waveform_once(dataset):
    root, _ = dataset
    index = json.loads((root / "index.json").read_text())
    assert index["n-total"] == 600 and [s["path"] for s in index["shards"]] == [
        "shard-0.h5",
        "shard-1.h5",
    ]
    data = WaveformDataset(root / "index.json")
    seen = np.concatenate(
        [b["chirp_mass"] for b in data.batches(50, np.random.default_rng(0), block_size=64)]
    )
    everything = data.load()["chirp_mass"]
    assert len(seen) == 600 and np.array_equal(np.sort(seen), np.sort(everything))
    assert not np.array_equal(seen, everything)  # shuffled


def test_fixed_nodes_are_checked_against_the_band(gw_config, tmp_path):
    settings = dataset_domain_settings_for(
        {**gw_config, "dataset": {**gw_config["dataset"], "domain": {"nodes": [20, 64, 200]}}}
    )
    domain = resolve_domain(settings, tmp_path / "domain.json")
    assert domain.n_tokens == (44 * 4 + 136 * 2) // 16
    for nodes, match in (([24, 64, 200], "first and last nodes"), ([20, 63, 200], "token edges")):
        bad = dict(settings, domain={"nodes": nodes})
        with pytest.raises(ConfigError, match=r"dataset\.domain\.nodes = \[.*" + match):
            resolve_domain(bad, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            {"maximum-frequency": 300},
            r"maximum-frequency = 300 Hz exceeds the Nyquist frequency 256 Hz",
        ),
        ({"approximant": "IMRPhenomXYZ"}, r"dataset\.approximant = 'IMRPhenomXYZ'"),
        (
            {"prior": {"chirp_mass": {"distribution": "Uniform", "minimum": 40, "maximum": 20}}},
            r"dataset\.prior\.chirp_mass\.minimum = 40",
        ),
        ({"shard-size": 0}, r"dataset\.shard-size = 0"),
    ],
)
def test_bad_shard_settings_fail_before_any_output(dataset, tmp_path, edit, match):
    root, settings = dataset
    bad = copy.deepcopy(settings)
    if "prior" in edit:
        bad["prior"].update(edit["prior"])
    else:
        bad.update(edit)
    with pytest.raises(ConfigError, match=match):
        simulate_shard(bad, root / "domain.json", 0, tmp_path / "shard-0.h5")
    assert list(tmp_path.iterdir()) == []


def test_cli_reports_a_bad_setting_in_one_line_and_writes_nothing(gw_config, tmp_path):
    import subprocess
    import sys

    settings = dict(dataset_domain_settings_for(gw_config), approximant="IMRPhenomNope")
    out = tmp_path / "domain.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "twinflow",
            "gw",
            "dataset-domain",
            "--settings",
            json.dumps(settings),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "dataset.approximant = 'IMRPhenomNope' is invalid" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
