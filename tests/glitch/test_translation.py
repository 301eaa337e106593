"""Translation models, losses and training: initialisation, shapes, losses against independent
references, a model that beats the trivial baselines, and exact resumption."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.ndimage
import torch

from twinflow.core.checkpoint import load_checkpoint
from twinflow.core.settings import ConfigError
from twinflow.glitch.losses import log_cosh, make_loss, make_translation_loss, ssim
from twinflow.glitch.models import build_translation_model
from twinflow.glitch.qtransform import load_images
from twinflow.glitch.settings import stage_settings
from twinflow.glitch.train import (
    learning_rate,
    load_translation_model,
    predict,
    train_translation,
    training_target,
)


@pytest.mark.parametrize("kind", ["decoder-shallow", "decoder-deep", "unet"])
def test_models_map_aux_images_to_one_strain_image(kind):
    model = build_translation_model({"model": kind, "width": 8, "depth": 2}, in_channels=3)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 1, 32, 32)


def test_explicit_weight_initialisation():
    torch.manual_seed(0)
    model = build_translation_model({"model": "unet", "width": 16, "depth": 2}, in_channels=3)
    convs = torch.cat(
        [
            m.weight.detach().flatten()
            for m in model.modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
        ]
    )
    norms = torch.cat(
        [
            m.weight.detach().flatten()
            for m in model.modules()
            if isinstance(m, torch.nn.BatchNorm2d)
        ]
    )
    assert float(convs.mean()) == pytest.approx(0, abs=1e-3)
    assert float(convs.std()) == pytest.approx(0.02, rel=0.03)
    assert float(norms.mean()) == pytest.approx(1, abs=0.005)
    assert float(norms.std()) == pytest.approx(0.02, rel=0.2)
    assert all(
        float(m.bias.abs().max()) == 0 for m in model.modules() if isinstance(m, torch.nn.Conv2d)
    )


def test_log_cosh_matches_numpy():
    x = torch.linspace(-30, 30, 101, dtype=torch.float64)
    assert float(log_cosh(x, torch.zeros_like(x))) == pytest.approx(
        float(np.mean(np.log(np.cosh(x.numpy())))), rel=1e-10
    )


def _ssim_reference(x: np.ndarray, y: np.ndarray, sigma=1.5, radius=5) -> float:
    """SSIM of Wang et al. (2004) with scipy's Gaussian filter, averaged over the valid region."""
    f = lambda a: scipy.ndimage.gaussian_filter(a, sigma, truncate=radius / sigma, mode="constant")  # noqa: E731
    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(s[radius:-radius, radius:-radius].mean())


def test_ssim_matches_an_independent_implementation():
    rng = np.random.default_rng(2)
    x = scipy.ndimage.gaussian_filter(rng.uniform(size=(40, 40)), 2)
    y = np.clip(x + 0.05 * rng.standard_normal(x.shape), 0, 1)
    got = float(ssim(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None]))
    assert got == pytest.approx(_ssim_reference(x, y), rel=1e-6)
    assert float(
        ssim(torch.from_numpy(x)[None, None], torch.from_numpy(x)[None, None])
    ) == pytest.approx(1.0)
    # Constant images a, b: SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.3, 0.6
    const = float(
        ssim(
            torch.full((1, 1, 16, 16), a, dtype=torch.float64),
            torch.full((1, 1, 16, 16), b, dtype=torch.float64),
        )
    )
    assert const == pytest.approx((2 * a * b + 1e-4) / (a * a + b * b + 1e-4), rel=1e-9)


def test_unknown_loss_is_rejected():
    with pytest.raises(ConfigError, match=r"loss = 'huber'.*l1"):
        make_loss("huber")


def _translation_settings(g, **changes):
    settings = stage_settings(g, "train-translation")
    settings.update(
        {
            "model": "unet",
            "width": 8,
            "depth": 2,
            "loss": "mse",
            "epochs": 12,
            "batch-size": 8,
            "learning-rate": 0.003,
            "patience": 12,
            "device": "cpu",
        },
        **changes,
    )
    return settings


def test_trained_model_beats_trivial_baselines_on_held_out_data(easy_images, tmp_path):
    """A linear coupling learnt in a few epochs: lower held-out error than predicting zero (the
    empty image) or copying the witness's Q-plot to strain."""
    torch.set_num_threads(1)
    g, _, images = easy_images
    settings = _translation_settings(g)
    out = tmp_path / "model.pt"
    train_translation(settings, images, out, tmp_path / "m.csv", tmp_path / "loss.png")
    test = load_images(images, "test")
    generated = predict(
        load_translation_model(out), torch.from_numpy(test.aux), torch.device("cpu")
    )[:, 0].numpy()
    target = test.strain
    model_error = np.mean((generated - target) ** 2)
    # Noise pixels of strain and witness are independent, so much of any error is irreducible;
    # the model must still be clearly better than either baseline.
    assert model_error < 0.85 * np.mean(target**2)  # zero output
    assert model_error < 0.85 * np.mean((test.aux[:, 0] - target) ** 2)  # witness copied to strain
    assert (tmp_path / "loss.png").stat().st_size > 0
    # trained on the one thread asked for above, and the model says so
    assert load_checkpoint(out, kind="glitch-translation-model")["cpu_threads"] == 1


def test_training_resumes_exactly(easy_images, tmp_path):
    """Two epochs in one go equal one epoch, then a resumed second epoch (same state file)."""
    torch.set_num_threads(1)
    g, _, images = easy_images
    settings = _translation_settings(g, epochs=2, model="decoder-shallow")
    straight = tmp_path / "straight.pt"
    train_translation(
        settings,
        images,
        straight,
        tmp_path / "a.csv",
        tmp_path / "a.png",
        state=tmp_path / "a-state.pt",
    )
    resumed = tmp_path / "resumed.pt"
    state = tmp_path / "b-state.pt"
    train_translation(
        {**settings, "epochs": 1},
        images,
        resumed,
        tmp_path / "b.csv",
        tmp_path / "b.png",
        state=state,
    )
    messages = []
    train_translation(
        settings,
        images,
        resumed,
        tmp_path / "b.csv",
        tmp_path / "b.png",
        state=state,
        log=messages.append,
    )
    assert any("resuming" in m for m in messages)
    a, b = (
        load_checkpoint(straight, kind="glitch-translation-model"),
        load_checkpoint(resumed, kind="glitch-translation-model"),
    )
    assert [r["val_loss"] for r in a["rows"]] == pytest.approx(
        [r["val_loss"] for r in b["rows"]], rel=1e-6
    )
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key])
    # Other settings never resume a foreign state.
    messages.clear()
    other = copy.deepcopy(settings)
    other["learning-rate"] = 0.001
    train_translation(
        {**other, "epochs": 1},
        images,
        resumed,
        tmp_path / "b.csv",
        tmp_path / "b.png",
        state=state,
        log=messages.append,
    )
    assert any("starting afresh" in m for m in messages)


@pytest.mark.parametrize("name", ["l1", "mse", "log-cosh"])
def test_peak_weighted_loss_is_numpys_weighted_average(name):
    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.uniform(0, 1, (4, 1, 8, 8)))
    prediction = torch.from_numpy(rng.uniform(0, 1, (4, 1, 8, 8)))
    err = (prediction - target).numpy()
    pixel = {
        "l1": np.abs(err),
        "mse": err**2,
        "log-cosh": np.log(np.cosh(err)),
    }[name]
    weighted = float(make_loss(name, peak_weight=5.0)(prediction, target))
    assert weighted == pytest.approx(np.average(pixel, weights=1 + 5.0 * target.numpy()))
    assert float(make_loss(name, peak_weight=0.0)(prediction, target)) == pytest.approx(
        pixel.mean()
    )


def _loss_settings(**changes):
    settings = {
        "loss": "mse",
        "ssim-weight": 0.5,
        "peak-weight": 0.0,
        "witness-weight": 0.0,
        "loss-domain": "scaled",
    }
    return {**settings, **changes}


def test_witness_weighted_loss_is_numpys_weighted_average():
    rng = np.random.default_rng(1)
    target = rng.uniform(0, 1, (3, 1, 8, 8))
    prediction = rng.uniform(0, 1, (3, 1, 8, 8))
    aux = rng.uniform(0, 1, (3, 2, 8, 8))
    loss = make_translation_loss(_loss_settings(**{"witness-weight": 4.0}), (0.0, 1.0, True))
    value = float(loss(*(torch.from_numpy(a) for a in (prediction, target, aux))))
    weights = 1 + 4.0 * aux.max(axis=1, keepdims=True)
    assert value == pytest.approx(np.average((prediction - target) ** 2, weights=weights))


@pytest.mark.parametrize("log", [True, False])
def test_amplitude_loss_compares_square_roots_of_the_tile_energies(log):
    rng = np.random.default_rng(2)
    minimum, maximum = 0.3, 6.0
    target = rng.uniform(0, 1, (2, 1, 8, 8))
    prediction = rng.uniform(0, 1, (2, 1, 8, 8))
    loss = make_translation_loss(
        _loss_settings(**{"loss-domain": "amplitude"}), (minimum, maximum, log)
    )
    value = float(loss(torch.from_numpy(prediction), torch.from_numpy(target), None))

    def energy(scaled):  # the images stage's scaling, inverted by hand
        values = minimum + scaled * (maximum - minimum)
        return np.expm1(values) if log else values

    expected = np.mean((np.sqrt(1 + energy(prediction)) - np.sqrt(1 + energy(target))) ** 2)
    assert value == pytest.approx(expected)


def test_a_cosine_schedule_run_can_resume(easy_images, tmp_path):
    """The training state written under the cosine schedule loads again (with
    ``weights_only=True``): a rerun with the same settings resumes instead of starting afresh."""
    torch.set_num_threads(1)
    g, _, images = easy_images
    settings = _translation_settings(g, epochs=1, model="decoder-shallow", schedule="cosine")
    paths = (tmp_path / "m.pt", tmp_path / "m.csv", tmp_path / "m.png")
    train_translation(settings, images, *paths, state=tmp_path / "state.pt")
    messages = []
    train_translation(settings, images, *paths, state=tmp_path / "state.pt", log=messages.append)
    assert any("resuming" in m for m in messages), messages


def test_cosine_schedule_matches_torchs_cosine_annealing():
    settings = {"learning-rate": 0.002, "epochs": 7, "schedule": "cosine"}
    optimiser = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.002)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=7)
    for epoch in range(7):
        assert learning_rate(settings, epoch) == pytest.approx(optimiser.param_groups[0]["lr"])
        optimiser.step()
        reference.step()
    assert learning_rate({**settings, "schedule": "constant"}, 5) == 0.002


def test_expected_target_is_the_scaled_glitch_energy_plus_the_noise_mean(easy_images):
    """E[|n + s|^2] = |s|^2 + E|n|^2: the expected target is log1p(glitch energy + 1),
    min-max scaled with the strain's training statistics (psd normalisation: noise mean 1)."""
    _, _, images = easy_images
    test = load_images(images, "test")
    assert test.settings["norm"] == "psd" and test.strain_scale.log
    lo, hi = test.strain_scale.minimum[0], test.strain_scale.maximum[0]
    by_hand = (np.log1p(test.labels["glitch_energy"] + 1.0) - lo) / (hi - lo)
    np.testing.assert_allclose(training_target(test, "expected"), by_hand, rtol=1e-5, atol=1e-6)
    assert training_target(test, "observed") is test.strain
    # noise-free: on glitch-free images the expected target is the noise mean everywhere
    clean = ~test.labels["has_glitch"]
    expected_clean = training_target(test, "expected")[clean]
    np.testing.assert_allclose(expected_clean, (np.log1p(1.0) - lo) / (hi - lo), rtol=1e-5)
