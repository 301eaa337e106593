"""Subtraction metrics on images whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from twinflow.glitch.subtraction import has_cluster, subtraction_metrics

SETTINGS = {"cluster-threshold": 16, "mask-energy": 2.0, "gallery-size": 2, "device": "cpu"}


def _scene(n=4, size=16):
    background = np.ones((n, size, size))
    glitch = np.zeros((n, size, size))
    glitch[:, 6:9, 6:9] = 50.0
    chirp = np.zeros((n, size, size))
    chirp[:, 2, 1:12] = 20.0
    return background, glitch, chirp


def test_perfect_generation_removes_everything_and_keeps_chirps():
    b, glitch, chirp = _scene()
    target = b + glitch + chirp
    generated = b + glitch
    flags = np.ones(4, bool)
    m = subtraction_metrics(target, generated, glitch, chirp, flags, flags, np.full(4, 20.0), SETTINGS, 1.0)
    assert m["glitch_energy_removed"] == pytest.approx(1.0)
    assert m["denoising_accuracy"] == 1.0
    assert m["veto_accuracy"] == 1.0
    assert m["chirp_power_retained"] == pytest.approx(1.0)


def test_doing_nothing_removes_nothing():
    b, glitch, chirp = _scene()
    target = b + glitch
    m = subtraction_metrics(target, b, glitch, chirp * 0, np.ones(4, bool), np.zeros(4, bool), np.full(4, 20.0),
                            SETTINGS, 1.0)
    assert m["glitch_energy_removed"] == pytest.approx(0.0)
    assert m["denoising_accuracy"] == 0.0
    assert m["veto_accuracy"] == 0.0  # target has a cluster, generated none
    assert m["chirp_power_retained"] is None


def test_generating_the_chirp_too_loses_its_power():
    b, glitch, chirp = _scene()
    target = b + glitch + chirp
    flags = np.ones(4, bool)
    m = subtraction_metrics(target, target, glitch, chirp, flags, flags, np.full(4, 20.0), SETTINGS, 1.0)
    assert m["chirp_power_retained"] == pytest.approx(0.0)
    # Half the glitch generated: half its excess energy removed, and a 25-energy cluster is left.
    m = subtraction_metrics(b + glitch, b + glitch / 2, glitch, chirp * 0, flags, ~flags, np.full(4, 20.0), SETTINGS, 1.0)
    assert m["glitch_energy_removed"] == pytest.approx(25 / 50)
    assert m["denoising_accuracy"] == 0.0


def test_clusters_are_connected_pixels_above_threshold():
    image = np.zeros((8, 8))
    assert not has_cluster(image, 16)
    image[3, 3] = 16.0
    assert has_cluster(image, 16)
    exclude = np.zeros((8, 8), bool)
    exclude[3, 3] = True
    assert not has_cluster(image, 16, exclude)
