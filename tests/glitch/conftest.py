"""Fixtures for the glitch tests: the tiny test configuration and a small built dataset."""

from __future__ import annotations

import copy

import pytest
from tests.conftest import TEST_CONFIG

from twinflow.core.settings import load_yaml


@pytest.fixture
def glitch_config() -> dict:
    """The glitch section of config/test.yaml (a fresh copy per test)."""
    return copy.deepcopy(load_yaml(TEST_CONFIG)["glitch"])


def easy_linear_config(base: dict) -> dict:
    """A dataset with one witness coupled linearly (gain only) and loud sine-Gaussians."""
    g = copy.deepcopy(base)
    g["data"].update(
        {"n-shards": 2, "samples-per-shard": 80, "n-auxiliary": 1, "clean-fraction": 0.2}
    )
    g["data"]["glitch"].update({"types": {"sine-gaussian": 1.0}, "snr": [15, 30]})
    g["data"]["coupling"] = {"gain": [1.0], "delay": [0.0], "lowpass": [None], "quadratic": [0.0]}
    g["data"]["chirps"]["fraction"] = 0.0
    return g


@pytest.fixture(scope="session")
def easy_images(tmp_path_factory):
    """Images of the easy linear-coupling dataset: (glitch config, shard paths, images path)."""
    from twinflow.glitch.data import simulate_dataset_shard
    from twinflow.glitch.qtransform import build_images
    from twinflow.glitch.settings import stage_settings

    g = easy_linear_config(load_yaml(TEST_CONFIG)["glitch"])
    folder = tmp_path_factory.mktemp("glitch-easy")
    sim = stage_settings(g, "simulate")
    shards = [folder / f"shard-{i}.h5" for i in range(g["data"]["n-shards"])]
    for i, path in enumerate(shards):
        simulate_dataset_shard(sim["data"], i, path, image_band=sim["image-band"])
    images = folder / "images.h5"
    s = stage_settings(g, "images")
    build_images(s["data"], s["qtransform"], shards, images)
    return g, shards, images
