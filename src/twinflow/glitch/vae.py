"""The convolutional VAE glitch detector: trained on clean strain Q-plots, it scores an image as
anomalous (glitchy) by its reconstruction error (mean squared, its largest tile energy, or the
two combined; or by its negative ELBO).

Architecture (input 1 x S x S, S a multiple of 16):

- encoder: four stride-2 4x4 convolutions 1 -> 32 -> 64 -> 128 -> 256, each followed by ReLU and
  Dropout2d, then flatten (256 * (S/16)^2 features);
- heads ``fc_mu`` and ``fc_logvar`` to the latent space; the posterior covariance
  (``covariance``) is ``diagonal`` (diag exp(logvar)), ``low-rank`` (diag exp(logvar) + F F^T
  with a head for the D x r factor F, r = ``covariance-rank``) or ``full`` (Cholesky factor
  L = diag(exp(logvar / 2)) + a strictly lower triangle from a head: positive diagonal, so
  always a valid covariance); reparameterised samples and the KL to N(0, I) come from
  ``torch.distributions`` (``Normal``, ``LowRankMultivariateNormal``, ``MultivariateNormal``);
- decoder: fc -> (64, S/16, S/16) -> ConvTranspose2d(64, 32, 4, stride 4) -> ReLU ->
  ConvTranspose2d(32, 1, 4, stride 4) -> S x S;
- output activation: sigmoid for the BCE loss, none for MSE or the spectral loss (the config
  is rejected otherwise).

Loss per image: reconstruction (summed over pixels) + beta * KL(q(z|x) || N(0, I)) +
``fft-weight`` * the L1 distance of the 2-D FFT magnitudes (``spectral`` uses that distance as
the whole reconstruction term).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from twinflow.core.checkpoint import load_checkpoint
from twinflow.core.io import quarantine_if_damaged
from twinflow.core.seeding import derive_seed, seed_everything
from twinflow.core.settings import require
from twinflow.glitch.validation import (
    check_vae_settings,
)

VAE_KIND = "glitch-vae"


class ConvVAE(nn.Module):
    """The convolutional VAE of the module docstring."""

    def __init__(
        self,
        image_size: int = 64,
        latent_dim: int = 16,
        dropout: float = 0.1,
        output_activation: str = "none",
        covariance: str = "diagonal",
        covariance_rank: int = 2,
    ):
        super().__init__()
        self.image_size, self.latent_dim = image_size, latent_dim
        self.covariance, self.covariance_rank = covariance, covariance_rank
        self.output_activation = output_activation
        s = image_size // 16
        layers = []
        for c_in, c_out in ((1, 32), (32, 64), (64, 128), (128, 256)):
            layers += [
                nn.Conv2d(c_in, c_out, 4, stride=2, padding=1),
                nn.ReLU(),
                nn.Dropout2d(dropout),
            ]
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        self.fc_mu = nn.Linear(256 * s * s, latent_dim)
        self.fc_logvar = nn.Linear(256 * s * s, latent_dim)
        extra = {
            "diagonal": 0,
            "low-rank": latent_dim * covariance_rank,
            "full": latent_dim * (latent_dim - 1) // 2,
        }[covariance]
        self.fc_covariance = nn.Linear(256 * s * s, extra) if extra else None
        self.fc_decode = nn.Linear(latent_dim, 64 * s * s)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, stride=4),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, stride=4),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mu [B, D], posterior parameters [B, P]): logvar, then (low-rank, full) the
        covariance factor's entries."""
        h = self.encoder(x)
        params = self.fc_logvar(h)
        if self.fc_covariance is not None:
            params = torch.cat([params, self.fc_covariance(h)], dim=-1)
        return self.fc_mu(h), params

    def posterior(self, mu: torch.Tensor, params: torch.Tensor):
        """Return q(z | x) as a torch distribution with event shape [D]."""
        d = self.latent_dim
        logvar, rest = params[..., :d], params[..., d:]
        if self.covariance == "diagonal":
            return torch.distributions.Independent(
                torch.distributions.Normal(mu, torch.exp(0.5 * logvar)), 1
            )
        if self.covariance == "low-rank":
            factor = rest.reshape(*rest.shape[:-1], d, self.covariance_rank)
            return torch.distributions.LowRankMultivariateNormal(mu, factor, torch.exp(logvar))
        tril = torch.diag_embed(torch.exp(0.5 * logvar))
        rows, cols = torch.tril_indices(d, d, offset=-1)
        tril[..., rows, cols] = rest
        return torch.distributions.MultivariateNormal(mu, scale_tril=tril)

    def kl(self, mu: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Return KL(q(z | x) || N(0, I)) per sample."""
        if self.covariance == "diagonal":
            return kl_divergence(mu, params)
        eye = torch.eye(self.latent_dim, dtype=mu.dtype, device=mu.device)
        prior = torch.distributions.MultivariateNormal(torch.zeros_like(mu), scale_tril=eye)
        return torch.distributions.kl_divergence(self.posterior(mu, params), prior)

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # [B, D] -> [B, 1, S, S]
        s = self.image_size // 16
        out = self.decoder(self.fc_decode(z).view(-1, 64, s, s))
        return torch.sigmoid(out) if self.output_activation == "sigmoid" else out

    @staticmethod
    def reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (reconstruction, mu, posterior parameters); z is sampled in training mode."""
        mu, params = self.encode(x)
        if not self.training:
            z = mu
        elif self.covariance == "diagonal":
            z = self.reparameterise(mu, params)
        else:
            z = self.posterior(mu, params).rsample()
        return self.decode(z), mu, params


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Return KL(N(mu, diag exp(logvar)) || N(0, I)) per sample, in closed form:
    0.5 * sum(mu^2 + exp(logvar) - 1 - logvar)."""
    return 0.5 * torch.sum(mu**2 + logvar.exp() - 1.0 - logvar, dim=-1)


def fft_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return the per-image sum of |(|FFT2 x| - |FFT2 y|)| / S (orthonormal FFT)."""
    fx = torch.fft.fft2(x, norm="ortho").abs()
    fy = torch.fft.fft2(y, norm="ortho").abs()
    return (fx - fy).abs().flatten(1).sum(-1)


def reconstruction_error(recon: torch.Tensor, x: torch.Tensor, loss: str) -> torch.Tensor:
    """Return the per-image reconstruction term (summed over pixels)."""
    if loss == "bce":
        return (
            F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), x.clamp(0, 1), reduction="none")
            .flatten(1)
            .sum(-1)
        )
    if loss == "mse":
        return (recon - x).pow(2).flatten(1).sum(-1)
    return fft_distance(recon, x)


def vae_loss(
    recon: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    settings: Mapping,
    kl: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return the per-image loss: reconstruction + beta * KL (+ fft-weight * FFT distance);
    ``kl`` (per image) replaces the diagonal closed form for the other covariances."""
    kl = kl_divergence(mu, logvar) if kl is None else kl
    loss = reconstruction_error(recon, x, settings["loss"]) + settings["beta"] * kl
    if settings["fft-weight"] > 0 and settings["loss"] != "spectral":
        loss = loss + settings["fft-weight"] * fft_distance(recon, x)
    return loss


def build_vae(model_settings: Mapping) -> ConvVAE:
    return ConvVAE(
        model_settings["image-size"],
        model_settings["latent-dim"],
        model_settings["dropout"],
        model_settings["output-activation"],
        model_settings.get("covariance", "diagonal"),
        model_settings.get("covariance-rank", 2),
    )


# --------------------------------------------------------------------------------------------
# Stages


def _clean(images_set) -> np.ndarray:
    labels = images_set.labels
    return ~labels["has_glitch"] & ~labels["has_chirp"]


def train_vae(
    settings: Mapping,
    images: str | Path,
    out: str | Path,
    metrics: str | Path,
    plot: str | Path,
    state: str | Path | None = None,
    log=print,
) -> None:
    """Train the VAE on the clean strain Q-plots of the training split (validated on the clean
    validation images); write the best model, metrics CSV and loss curve."""
    from twinflow.glitch.qtransform import load_images
    from twinflow.glitch.train import train_loop, training_identity, write_training_outputs
    from twinflow.glitch.validation import check_optimiser_settings

    train_set, val_set = load_images(images, "train"), load_images(images, "validation")
    size = train_set.strain.shape[-1]
    check_vae_settings({**settings, "image-size": size})
    check_optimiser_settings(settings)
    x_train = torch.from_numpy(train_set.strain[_clean(train_set)])[:, None]
    x_val = torch.from_numpy(val_set.strain[_clean(val_set)])[:, None]
    require(
        len(x_train) >= 2 and len(x_val) >= 1,
        "clean-fraction",
        len(x_train),
        "enough clean samples (no glitch, no chirp) for the VAE: raise clean-fraction or the dataset size",
    )
    model_settings = {
        "image-size": size,
        **{
            k: settings[k]
            for k in (
                "latent-dim",
                "dropout",
                "output-activation",
                "covariance",
                "covariance-rank",
            )
        },
    }
    seed_everything(derive_seed(settings["seed"], VAE_KIND, "init"))
    model = build_vae(model_settings)

    def batch_loss(net, batch):
        (x,) = batch
        recon, mu, params = net(x)
        return vae_loss(recon, x, mu, params, settings, kl=net.kl(mu, params)).mean()

    identity = training_identity(settings, x_train.numpy())
    state = Path(state) if state is not None else Path(out).with_name(Path(out).stem + "-state.pt")
    best, rows, device = train_loop(
        model,
        batch_loss,
        (x_train,),
        (x_val,),
        settings,
        state_path=state,
        kind=VAE_KIND,
        identity=identity,
        desc="VAE",
        log=log,
    )
    write_training_outputs(
        out,
        metrics,
        plot,
        kind=VAE_KIND,
        model_settings=model_settings,
        best=best,
        rows=rows,
        settings=settings,
        device=device,
        title=f"VAE on clean Q-plots ({settings['loss']}, beta {settings['beta']:g})",
        ylabel="loss per image",
    )
    log(f"wrote {out} ({len(x_train)} clean training images, {len(rows)} epochs)")


def load_vae(path: str | Path) -> tuple[ConvVAE, dict]:
    """Return (model, training settings) stored by :func:`train_vae`."""
    with quarantine_if_damaged(path):  # a damaged model is remade by its rule
        checkpoint = load_checkpoint(path, kind=VAE_KIND)
    model = build_vae(checkpoint["settings"])
    model.load_state_dict(checkpoint["model"])
    return model.eval(), checkpoint["training"]
