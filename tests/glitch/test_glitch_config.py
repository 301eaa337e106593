"""Bad glitch settings stop everything with a clear error naming the key and value, before any
output; the shipped configurations pass."""

from __future__ import annotations

import copy

import pytest
from tests.conftest import REPO

from twinflow.cli import main as twinflow_main
from twinflow.core.io import dumps_settings
from twinflow.core.settings import ConfigError, load_yaml
from twinflow.glitch.settings import check_config, stage_settings


@pytest.mark.parametrize("name", ["config.yaml", "test.yaml", "production.yaml"])
def test_shipped_configurations_are_valid(name):
    check_config(load_yaml(REPO / "config" / name)["glitch"])


@pytest.mark.parametrize(
    ("section", "key", "value", "match"),
    [
        (
            "qtransform",
            "image-size",
            40,
            r"glitch.vae: image-size = 40 is invalid: a multiple of 16",
        ),
        (
            "translation",
            "loss",
            "huber",
            r"glitch.translation: loss = 'huber' is invalid: choose one of",
        ),
        (
            "qtransform",
            "frange",
            [20, 300],
            r"glitch.qtransform: frange = \[20, 300\] Hz: the upper frequency exceeds the Nyquist",
        ),
        ("data", "n-auxiliary", 0, r"glitch.data: n-auxiliary = 0 is invalid"),
        ("data", "source", "frames", r"glitch.data: source = 'frames' is invalid: choose one of"),
        (
            "data",
            "noise-source",
            "real-recoloured",
            r"glitch.data: real-noise.paths = \[\] is invalid: a list of GWOSC HDF5",
        ),
        (
            "translation",
            "peak-weight",
            -1,
            r"glitch.translation: peak-weight = -1 is invalid: a number >= 0",
        ),
        (
            "translation",
            "witness-weight",
            -2,
            r"glitch.translation: witness-weight = -2 is invalid: a number >= 0",
        ),
        (
            "translation",
            "loss-domain",
            "energy",
            r"glitch.translation: loss-domain = 'energy' is invalid: choose one of",
        ),
        (
            "translation",
            "schedule",
            "step",
            r"glitch.translation: schedule = 'step' is invalid: choose one of",
        ),
        (
            "vae",
            "output-activation",
            "sigmoid",
            r"glitch.vae: output-activation = 'sigmoid' is invalid: 'none' with loss 'mse'",
        ),
    ],
)
def test_bad_settings_name_key_and_value(glitch_config, section, key, value, match):
    g = copy.deepcopy(glitch_config)
    g[section][key] = value
    with pytest.raises(ConfigError, match=match):
        check_config(g)


def test_cli_stops_before_writing(glitch_config, tmp_path, capsys):
    settings = stage_settings(glitch_config, "simulate")
    settings["data"]["n-auxiliary"] = 0
    out = tmp_path / "shard.h5"
    code = twinflow_main(
        [
            "glitch",
            "simulate",
            "--settings",
            dumps_settings(settings),
            "--shard",
            "0",
            "--out",
            str(out),
        ]
    )
    assert code == 2
    assert "n-auxiliary = 0" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_schema_defaults_are_the_default_config():
    """An empty glitch section filled by the schema equals config/config.yaml's section."""
    from snakemake.utils import validate

    filled = {}
    validate(
        filled, str(REPO / "src" / "twinflow" / "schemas" / "glitch.schema.yaml"), set_default=True
    )
    assert filled == load_yaml(REPO / "config" / "config.yaml")["glitch"]


def test_expected_target_is_refused_for_detector_data(glitch_config, monkeypatch):
    import twinflow.glitch.validation

    # the detector files themselves are checked elsewhere: here only the cross-check matters
    monkeypatch.setattr(twinflow.glitch.validation, "check_data_settings", lambda *a: None)
    g = copy.deepcopy(glitch_config)
    g["data"]["source"] = "files"
    g["translation"]["target"] = "expected"
    with pytest.raises(ConfigError, match=r"glitch.translation: target = 'expected' is invalid"):
        check_config(g)
