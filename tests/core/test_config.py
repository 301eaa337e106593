"""The config check: schema defaults filled at every level, one-line errors naming the key."""

from __future__ import annotations

import copy

import pytest
import yaml

from twinflow.core.config import schema, validate_config
from twinflow.core.settings import ConfigError


@pytest.fixture(scope="module")
def default_config(repo):
    return yaml.safe_load((repo / "config" / "config.yaml").read_text())


def test_an_empty_config_gets_every_default_of_the_schema_files():
    config = validate_config({})
    # keys that sit in files referenced from config.schema.yaml, two levels down
    gw = yaml.safe_load(open(schema.__globals__["SCHEMA_DIR"] / "gw-train.schema.yaml"))
    assert config["gw"]["train"]["batch-size"] == gw["properties"]["batch-size"]["default"]
    assert config["gw"]["psd"]["overlap"] == 0.5
    assert config["glitch"]["qtransform"]["image-size"] == 64
    assert set(config) == {"gw", "glitch", "anomaly"}


@pytest.mark.parametrize(
    "path",
    [("gw", "psd", "overlap"), ("glitch", "qtransform", "image-size"), ("gw", "train", "model")],
)
def test_an_omitted_nested_key_gets_its_default(default_config, path):
    reference = validate_config(copy.deepcopy(default_config))
    config = copy.deepcopy(default_config)
    node = config
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    validate_config(config)
    got, want = config, reference
    for key in path:
        got, want = got[key], want[key]
    assert got == want


def test_a_wrong_type_deep_inside_is_named_in_one_line(default_config):
    config = copy.deepcopy(default_config)
    config["gw"]["train"]["model"]["flow"]["bins"] = "eight"
    with pytest.raises(ConfigError) as err:
        validate_config(config, source="my.yaml")
    message = str(err.value)
    assert "\\n" not in message and "my.yaml" in message
    assert "gw.train.model.flow.bins = 'eight'" in message
