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
    m = subtraction_metrics(
        target, generated, glitch, chirp, flags, flags, np.full(4, 20.0), SETTINGS, 1.0
    )
    assert m["glitch_energy_removed"] == pytest.approx(1.0)
    assert m["denoising_accuracy"] == 1.0
    assert m["veto_accuracy"] == 1.0
    assert m["chirp_power_retained"] == pytest.approx(1.0)


def test_doing_nothing_removes_nothing():
    b, glitch, chirp = _scene()
    target = b + glitch
    m = subtraction_metrics(
        target,
        b,
        glitch,
        chirp * 0,
        np.ones(4, bool),
        np.zeros(4, bool),
        np.full(4, 20.0),
        SETTINGS,
        1.0,
    )
    assert m["glitch_energy_removed"] == pytest.approx(0.0)
    assert m["denoising_accuracy"] == 0.0
    assert m["veto_accuracy"] == 0.0  # target has a cluster, generated none
    assert m["chirp_power_retained"] is None


def test_generating_the_chirp_too_loses_its_power():
    b, glitch, chirp = _scene()
    target = b + glitch + chirp
    flags = np.ones(4, bool)
    m = subtraction_metrics(
        target, target, glitch, chirp, flags, flags, np.full(4, 20.0), SETTINGS, 1.0
    )
    assert m["chirp_power_retained"] == pytest.approx(0.0)
    # Half the glitch generated: half its excess energy removed, and a 25-energy cluster is left.
    m = subtraction_metrics(
        b + glitch,
        b + glitch / 2,
        glitch,
        chirp * 0,
        flags,
        ~flags,
        np.full(4, 20.0),
        SETTINGS,
        1.0,
    )
    assert m["glitch_energy_removed"] == pytest.approx(25 / 50)
    assert m["denoising_accuracy"] == 0.0


def test_noise_cross_term_caps_the_energy_test_but_not_the_amplitude_test():
    """Tiles |n + s|^2 with unit complex Gaussian noise n (mean energy b = 1) and a loud glitch s
    (energy 400, SNR 20). A perfect model G = |s|^2 + b leaves the cross term 2 Re(n* s), of
    standard deviation sqrt(2 * 400) = 28, in the energy residual, so that test fails in most
    samples; the amplitude residual obeys | |n + s| - sqrt(|s|^2 + 1) | <= |n| + 0.025 (triangle
    inequality), and |n| >= 3.97 has probability e^-15.8 per tile, so that test passes."""
    rng = np.random.default_rng(0)
    n_samples, size = 50, 16
    s = np.zeros((n_samples, size, size), dtype=complex)
    s[:, 6:9, 6:9] = 20.0 * np.exp(2j * np.pi * rng.random((n_samples, 3, 3)))
    noise = (rng.standard_normal(s.shape) + 1j * rng.standard_normal(s.shape)) / np.sqrt(2)
    target = np.abs(noise + s) ** 2
    glitch = np.abs(s) ** 2
    flags = np.ones(n_samples, bool)
    m = subtraction_metrics(
        target,
        glitch + 1.0,
        glitch,
        np.zeros_like(glitch),
        flags,
        ~flags,
        np.full(n_samples, 20.0),
        SETTINGS,
        1.0,
    )
    assert m["denoising_accuracy"] < 0.3
    assert m["denoising_accuracy"] == m["denoising_accuracy_perfect_model"]
    assert m["denoising_accuracy_amplitude"] == 1.0
    assert m["denoising_accuracy_amplitude_perfect_model"] == 1.0
    # Generating only half the glitch's amplitude leaves an amplitude residual of ~10 > 4
    half = subtraction_metrics(
        target,
        glitch / 4 + 1.0,
        glitch,
        np.zeros_like(glitch),
        flags,
        ~flags,
        np.full(n_samples, 20.0),
        SETTINGS,
        1.0,
    )
    assert half["denoising_accuracy_amplitude"] == 0.0


def test_clusters_are_connected_pixels_above_threshold():
    image = np.zeros((8, 8))
    assert not has_cluster(image, 16)
    image[3, 3] = 16.0
    assert has_cluster(image, 16)
    exclude = np.zeros((8, 8), bool)
    exclude[3, 3] = True
    assert not has_cluster(image, 16, exclude)


def test_cluster_overlap_metrics_by_hand():
    from twinflow.glitch.subtraction import cluster_overlap_metrics

    target = np.zeros((4, 8, 8))
    target[:, 2:4, 2:6] = 50.0  # an 8-pixel cluster above 16 in each sample
    residual = target.copy()
    residual[0] = 0.0  # removed: IoU 0, disappears
    residual[1, 2:4, 2:4] = 0.0  # half left: IoU 4 / 8
    residual[2, 5, 5] = 30.0  # untouched plus one new pixel: IoU 8 / 9
    has_glitch = np.array([True, True, True, False])
    snr = np.array([7.0, 12.0, 25.0, 0.0])
    m = cluster_overlap_metrics(
        target, residual, has_glitch, snr, 16.0, np.zeros_like(target, bool)
    )
    assert m["n_glitch_with_cluster"] == 3
    assert m["cluster_iou_median"] == pytest.approx(0.5)
    assert m["cluster_vanished_share"] == pytest.approx(1 / 3)
    by = m["cluster_metrics_by_snr"]
    assert by["6-8"] == {"n": 1, "iou_median": 0.0, "vanished_share": 1.0}
    assert by["10-15"]["iou_median"] == pytest.approx(0.5)
    assert by["20-30"]["iou_median"] == pytest.approx(8 / 9)
    assert by["5-6"]["n"] == 0 and by["5-6"]["iou_median"] is None
