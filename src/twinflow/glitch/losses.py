"""Image losses for the translation models: L1, MSE, log-cosh and an SSIM mix.

``ssim-mix`` is ``w * (1 - SSIM) + (1 - w) * L1`` with SSIM of Wang et al. (2004): an 11x11
Gaussian window of sigma 1.5, C1 = (0.01 L)^2, C2 = (0.03 L)^2 with data range L = 1 (the
images are min-max normalised), averaged over the valid (unpadded) pixels.

``peak-weight`` a > 0 weights each pixel's L1 / MSE / log-cosh term by ``1 + a * target``
(normalised by the batch's mean weight): the images are almost all noise, so an unweighted loss
barely sees the few bright glitch pixels whose peaks the subtraction must reach. In ssim-mix it
weights the L1 part. The weight uses the target image only, so it needs no glitch truth.

``witness-weight`` w > 0 multiplies that weight by ``1 + w * max_k aux_k`` (the brightest
scaled witness image of the sample): the glitch's pixels are where the witnesses see it, so the
loss leans on them and not on chirps or strain noise, which the witnesses do not see.

``loss-domain: amplitude`` computes the loss on amplitudes ``sqrt(1 + E)`` of the un-scaled tile
energies E instead of on the scaled images: the subtraction is judged on ``sqrt(T) - sqrt(G)``,
and an amplitude loss weighs a glitch's bright pixels as that test does, where a loss on
``log1p(E)`` compresses them. ``sqrt(1 + E) = exp(log1p(E) / 2)`` is smooth at E = 0 (``sqrt(E)``
has an infinite slope there) and equals ``sqrt(E)`` to within 1/(2 sqrt(E)) on bright pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from twinflow.glitch.validation import check_loss_settings


def log_cosh(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return mean log(cosh(prediction - target)), computed stably as |x| + log1p(e^-2|x|) - log 2."""
    return _log_cosh_pixels(prediction, target).mean()


def _log_cosh_pixels(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    x = (prediction - target).abs()
    return x + torch.log1p(torch.exp(-2 * x)) - math.log(2.0)


_PIXEL_LOSSES = {
    "l1": lambda p, t: (p - t).abs(),
    "mse": lambda p, t: (p - t) ** 2,
    "log-cosh": _log_cosh_pixels,
}


def peak_weighted(pixel_loss: Callable, peak_weight: float) -> Callable:
    """Return ``loss(prediction, target)``: the mean of ``pixel_loss`` weighted by
    ``1 + peak_weight * target`` over the mean weight."""

    def loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = 1 + peak_weight * target.clamp(min=0)
        return (weight * pixel_loss(prediction, target)).sum() / weight.sum()

    return loss


def amplitude_map(minimum: float, maximum: float, log: bool) -> Callable:
    """Return ``f(images)``: scaled strain images [B, 1, S, S] as amplitudes ``sqrt(1 + E)`` of
    their tile energies E (the inverse of the training split's min-max scaling, after
    ``log1p`` when ``log``)."""
    span = maximum - minimum if maximum > minimum else 1.0

    def amplitude(images: torch.Tensor) -> torch.Tensor:
        values = images * span + minimum
        if log:  # values = log1p(E), so sqrt(1 + E) = exp(values / 2)
            return torch.exp(values / 2)
        return torch.sqrt((1 + values).clamp(min=1e-6))

    return amplitude


def make_translation_loss(
    settings: Mapping, strain_scale: tuple[float, float, bool]
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """Return ``loss(prediction, target, aux)`` of the translation settings (``loss``,
    ``ssim-weight``, ``peak-weight``, ``witness-weight``, ``loss-domain``; module docstring);
    ``strain_scale`` is (minimum, maximum, log) of the strain images' scaling."""
    name, ssim_weight = settings["loss"], settings["ssim-weight"]
    peak, witness = settings["peak-weight"], settings["witness-weight"]
    check_loss_settings(name, ssim_weight, peak, witness, settings["loss-domain"])
    domain = (
        amplitude_map(*strain_scale)
        if settings["loss-domain"] == "amplitude"
        else (lambda images: images)
    )
    if witness == 0:
        plain = make_loss(name, ssim_weight, peak)
        return lambda prediction, target, aux: plain(domain(prediction), domain(target))
    pixel = _PIXEL_LOSSES[name if name != "ssim-mix" else "l1"]

    def loss(prediction: torch.Tensor, target: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        # [B, K, S, S] -> [B, 1, S, S]: where any witness is bright
        weight = (1 + peak * target.clamp(min=0)) * (
            1 + witness * aux.amax(dim=1, keepdim=True).clamp(min=0)
        )
        p, t = domain(prediction), domain(target)
        weighted = (weight * pixel(p, t)).sum() / weight.sum()
        if name != "ssim-mix":
            return weighted
        return ssim_weight * (1 - ssim(p, t)) + (1 - ssim_weight) * weighted

    return loss


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]  # [1, 1, size, size]


def ssim(
    x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """Return the mean SSIM of images ``x``, ``y`` [B, C, H, W] (valid-pixel average)."""
    c = x.shape[1]
    w = _gaussian_window(min(window, x.shape[-1], x.shape[-2]), sigma, x.device, x.dtype).expand(
        c, 1, -1, -1
    )
    mu_x, mu_y = F.conv2d(x, w, groups=c), F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x**2
    syy = F.conv2d(y * y, w, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    value = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    )
    return value.mean()


def make_loss(
    name: str, ssim_weight: float = 0.5, peak_weight: float = 0.0
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Return the loss function ``loss(prediction, target)`` named ``name``."""
    check_loss_settings(name, ssim_weight, peak_weight)
    if peak_weight > 0:
        pixel = _PIXEL_LOSSES[name if name != "ssim-mix" else "l1"]
        weighted = peak_weighted(pixel, peak_weight)
        if name != "ssim-mix":
            return weighted
        return lambda p, t: ssim_weight * (1 - ssim(p, t)) + (1 - ssim_weight) * weighted(p, t)
    if name == "l1":
        return F.l1_loss
    if name == "mse":
        return F.mse_loss
    if name == "log-cosh":
        return log_cosh

    def ssim_mix(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ssim_weight * (1 - ssim(prediction, target)) + (1 - ssim_weight) * F.l1_loss(
            prediction, target
        )

    return ssim_mix
