"""One torch thread; small intermediates of the glitch and anomaly branches, made once from
config/test.yaml, for the corruption and kill tests."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from tests.conftest import TEST_CONFIG
from twinflow.core.config import load_config

QUIET = {"log": lambda *a: None}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread, here and in the stages' subprocesses, as the rules run training: the
    suite shares two cores (restored after each module, so other folders are unaffected)."""
    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if env is None:
        del os.environ["OMP_NUM_THREADS"]
    else:
        os.environ["OMP_NUM_THREADS"] = env


@pytest.fixture(scope="session")
def test_config() -> dict:
    """config/test.yaml with the schema's defaults filled in (do not modify: copy first)."""
    return load_config(TEST_CONFIG)


@pytest.fixture(scope="session")
def glitch_images(tmp_path_factory, test_config):
    """(glitch section, shard paths, images path) of the test configuration."""
    from twinflow.glitch.data import simulate_dataset_shard
    from twinflow.glitch.qtransform import build_images
    from twinflow.glitch.settings import stage_settings

    glitch = copy.deepcopy(test_config["glitch"])
    folder = tmp_path_factory.mktemp("glitch")
    simulate = stage_settings(glitch, "simulate")
    shards = [folder / f"shard-{i}.h5" for i in range(glitch["data"]["n-shards"])]
    for i, path in enumerate(shards):
        simulate_dataset_shard(
            simulate["data"], i, path, image_band=simulate["image-band"], **QUIET
        )
    images = stage_settings(glitch, "images")
    build_images(images["data"], images["qtransform"], shards, folder / "images.h5", **QUIET)
    return glitch, shards, folder / "images.h5"


@pytest.fixture(scope="session")
def anomaly_events(tmp_path_factory, test_config):
    """(anomaly section, events path) of the test configuration."""
    from twinflow.anomaly.data import prepare_events

    anomaly = copy.deepcopy(test_config["anomaly"])
    path = tmp_path_factory.mktemp("anomaly") / "events.h5"
    prepare_events({"seed": anomaly["seed"], "data": anomaly["data"]}, path)
    return anomaly, path
