"""The VAE glitch detector: architecture, closed-form KL against Monte Carlo, activation/loss
agreement, and scoring on a small dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from twinflow.core.settings import ConfigError
from twinflow.glitch.settings import stage_settings
from twinflow.glitch.vae import ConvVAE, check_vae_settings, kl_divergence, train_vae
from twinflow.glitch.vae_scores import score_vae


@pytest.mark.parametrize("size", [64, 256])
def test_architecture_and_shapes(size):
    model = ConvVAE(size, latent_dim=8, dropout=0.1)
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in convs] == [
        (1, 32, (2, 2)),
        (32, 64, (2, 2)),
        (64, 128, (2, 2)),
        (128, 256, (2, 2)),
    ]
    assert sum(isinstance(m, torch.nn.Dropout2d) for m in model.encoder) == 4
    ups = [m for m in model.decoder if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(u.in_channels, u.out_channels, u.stride) for u in ups] == [
        (64, 32, (4, 4)),
        (32, 1, (4, 4)),
    ]
    assert model.fc_mu.in_features == 256 * (size // 16) ** 2
    assert model.fc_decode.out_features == 64 * (size // 16) ** 2
    recon, mu, logvar = model.eval()(torch.rand(2, 1, size, size))
    assert recon.shape == (2, 1, size, size) and mu.shape == logvar.shape == (2, 8)


def test_closed_form_kl_equals_monte_carlo():
    torch.manual_seed(0)
    mu = torch.tensor([[0.3, -1.2, 0.0, 2.0]], dtype=torch.float64)
    logvar = torch.tensor([[-0.5, 0.4, -2.0, 0.1]], dtype=torch.float64)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    z = q.sample((400_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean()
    closed = kl_divergence(mu, logvar)[0]
    stderr = (q.log_prob(z) - p.log_prob(z)).sum(-1).std() / np.sqrt(len(z))
    assert abs(float(closed - mc)) < 4 * float(stderr)
    assert float(closed) == pytest.approx(
        float(torch.distributions.kl_divergence(q, p).sum()), rel=1e-12
    )


def test_output_activation_follows_the_loss(glitch_config):
    vae = dict(glitch_config["vae"])
    check_vae_settings({**vae, "loss": "bce", "output-activation": "sigmoid"}, 32)
    for loss, activation in (("bce", "none"), ("mse", "sigmoid"), ("spectral", "sigmoid")):
        with pytest.raises(ConfigError, match=r"output-activation = '.*'.*with loss"):
            check_vae_settings({**vae, "loss": loss, "output-activation": activation}, 32)
    with torch.no_grad():
        sigmoid = ConvVAE(32, 4, 0.0, "sigmoid").eval()(torch.randn(3, 1, 32, 32) * 10)[0]
    assert float(sigmoid.min()) > 0 and float(sigmoid.max()) < 1
    linear = ConvVAE(32, 4, 0.0, "none")
    with torch.no_grad():
        linear.decoder[-1].bias.fill_(-5.0)
        assert float(linear.eval()(torch.rand(1, 1, 32, 32))[0].max()) < 0  # no squashing


def test_image_size_must_be_a_multiple_of_16(glitch_config):
    with pytest.raises(ConfigError, match=r"image-size = 40.*multiple of 16"):
        check_vae_settings(glitch_config["vae"], 40)


def test_vae_separates_glitchy_from_clean_images(easy_images, tmp_path):
    """Trained on clean Q-plots of the easy dataset, the reconstruction error ranks loud glitches
    above clean images (ROC AUC checked with sklearn on the scores written)."""
    torch.set_num_threads(1)
    g, _, images = easy_images
    g = {**g, "vae": {**g["vae"], "epochs": 4, "batch-size": 4}}
    train_vae(
        stage_settings(g, "train-vae"),
        images,
        tmp_path / "vae.pt",
        tmp_path / "m.csv",
        tmp_path / "l.png",
    )
    result = score_vae(
        stage_settings(g, "score-vae"),
        images,
        tmp_path / "vae.pt",
        tmp_path / "s.json",
        tmp_path / "roc.png",
        tmp_path / "rec.png",
        tmp_path / "lat.png",
    )
    assert json.loads((tmp_path / "s.json").read_text())["roc_auc"] == result["roc_auc"]
    assert result["roc_auc"] > 0.9
    for score in ("energy-max", "combined"):  # the same model, the other residual scores
        other = score_vae(
            {**stage_settings(g, "score-vae"), "score": score},
            images,
            tmp_path / "vae.pt",
            tmp_path / f"{score}.json",
            tmp_path / "roc.png",
            tmp_path / "rec.png",
            tmp_path / "lat.png",
        )
        assert other["score"] == score and other["roc_auc"] > 0.9
    for name in ("roc.png", "rec.png", "lat.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_reconstruction_score_is_the_mean_squared_error():
    from twinflow.glitch.vae_scores import anomaly_scores

    model = ConvVAE(32, 4, 0.0)
    x = torch.rand(6, 1, 32, 32)
    scores, recon, _ = anomaly_scores(model, x, {"score": "reconstruction"}, torch.device("cpu"))
    np.testing.assert_allclose(
        scores, ((recon - x.numpy()) ** 2).reshape(6, -1).mean(1), rtol=1e-5
    )


@pytest.mark.parametrize("covariance", ["diagonal", "low-rank", "full"])
def test_posterior_covariance_kl_matches_the_gaussian_formula(covariance):
    """KL(N(mu, Sigma) || N(0, I)) = (tr Sigma + mu^T mu - d - log det Sigma) / 2, with Sigma
    built here in numpy from the head outputs as the module docstring says."""
    d, r = 4, 2
    model = ConvVAE(16, d, 0.0, "none", covariance, r).double()
    rng = np.random.default_rng(3)
    extra = {"diagonal": 0, "low-rank": d * r, "full": d * (d - 1) // 2}[covariance]
    mu = torch.from_numpy(rng.normal(size=(3, d)))
    params = torch.from_numpy(rng.normal(scale=0.5, size=(3, d + extra)))
    kl = model.kl(mu, params).numpy()
    for i in range(3):
        logvar, rest = params[i, :d].numpy(), params[i, d:].numpy()
        if covariance == "diagonal":
            sigma = np.diag(np.exp(logvar))
        elif covariance == "low-rank":
            factor = rest.reshape(d, r)
            sigma = np.diag(np.exp(logvar)) + factor @ factor.T
        else:
            tril = np.diag(np.exp(0.5 * logvar))
            tril[np.tril_indices(d, -1)] = rest
            sigma = tril @ tril.T
        m = mu[i].numpy()
        expected = 0.5 * (np.trace(sigma) + m @ m - d - np.linalg.slogdet(sigma)[1])
        assert kl[i] == pytest.approx(expected, rel=1e-10)
    # A training step runs and reaches the covariance head.
    model.train()
    recon, mu, params = model(torch.rand(2, 1, 16, 16, dtype=torch.float64))
    assert params.shape == (2, d + extra)
    (recon.sum() + model.kl(mu, params).sum()).backward()
    if extra:
        assert model.fc_covariance.weight.grad.abs().sum() > 0


def test_energy_max_and_combined_scores_follow_their_definitions():
    from twinflow.glitch.qtransform import MinMax
    from twinflow.glitch.vae_scores import anomaly_scores, score_reference

    torch.manual_seed(0)
    model = ConvVAE(32, 4, 0.0)
    scale = MinMax(np.array([0.0]), np.array([5.0]), log=True)

    def to_energy(images):  # scaled [N, S, S] -> tile energies
        return scale.inverse(images[:, None])[:, 0]

    x, clean = torch.rand(5, 1, 32, 32), torch.rand(7, 1, 32, 32)
    cpu = torch.device("cpu")
    peak, recon, _ = anomaly_scores(model, x, {"score": "energy-max"}, cpu, to_energy=to_energy)
    by_hand = np.expm1(5 * x.numpy()) - np.expm1(5 * recon)
    np.testing.assert_allclose(peak, by_hand.reshape(5, -1).max(1), rtol=1e-5)

    reference = score_reference(model, clean, cpu, to_energy)
    clean_recon = anomaly_scores(model, clean, {"score": "reconstruction"}, cpu)[1]
    clean_mse = ((clean.numpy() - clean_recon) ** 2).reshape(7, -1).mean(1)
    assert reference["reconstruction"][0] == pytest.approx(clean_mse.mean(), rel=1e-5)
    assert reference["reconstruction"][1] == pytest.approx(clean_mse.std(ddof=1), rel=1e-4)
    combined = anomaly_scores(
        model, x, {"score": "combined"}, cpu, to_energy=to_energy, reference=reference
    )[0]
    mse = ((x.numpy() - recon) ** 2).reshape(5, -1).mean(1)
    expected = sum(
        (value - reference[k][0]) / reference[k][1]
        for k, value in (("reconstruction", mse), ("energy-max", peak))
    )
    np.testing.assert_allclose(combined, expected, rtol=1e-4)
