"""Batched training inputs, made on the fly on the training device: projection, noise,
whitening, tokens and masks (Dingo-T1, arXiv:2512.02968).

From a batch of stored polarisations (h+, h× at the reference distance on the multibanded
domain) and their intrinsic parameters, :class:`BatchAssembler` draws the extrinsic
parameters, projects onto each detector, draws a PSD per sample and detector from the PSD
banks, adds Gaussian noise, whitens, cuts the result into tokens and drops a random set of
them. Everything after the extrinsic draw is batched torch on the device.

**Time reference.** The detector response is bilby's
``h_d(f) = (F+ h+ + F× h×) exp(-2πi f (t_c + Δt_d - t_start))`` with t_start = t_trigger -
(T - post-trigger-duration). On the multibanded grid the strain is *referenced to the trigger
time*: multiplied by ``exp(+2πi f (t_trigger - t_start))`` on the uniform grid before
decimation, as Dingo does, because averaging bins of a signal that is (T - post) ≈ 2 s away
from the time origin would cancel it. So the projection applies
``exp(-2πi f (Δt_c + Δt_d))`` at each bin's frequency, Δt_c = t_c - t_trigger being the
``geocent_time`` parameter; :func:`multibanded_strain` brings detector data (bilby's
convention, uniform grid) onto the same footing. Antenna patterns and delays are bilby's,
evaluated at t_c (the reference time plus the offset), so the projection equals bilby's
``Interferometer.get_detector_response`` at the multibanded frequencies (tested).

**Noise and whitening.** With S̄ the PSD averaged over a bin of width Δf_j, noise in that bin
has Re and Im with standard deviation σ = sqrt(S̄ / (4 Δf_j)); the whitened strain is
``h_d / σ + n`` with n standard normal, so <h, h> = Σ |h_d / σ|^2.

**Tokens** ``[B, N, 48]``: per token 16 bins × 3 channels, channel-major: ``[..., 0:16]`` Re and
``[..., 16:32]`` Im of the whitened strain, ``[..., 32:48]`` the PSD feature
``ln(ASD / 1e-23 Hz^-1/2)`` (an O(1) number that keeps the noise level and shape without any
state fitted to a bank). Tokens run detector by detector, low to high frequency.
``detector_index`` [B, N] indexes ``detectors``; ``token_frequency`` [B, N, 2] holds each
token's [lower, upper) edges in Hz. ``padding_mask`` [B, N] is True where a token is dropped;
kept tokens are compacted to the front of each row (dropped ones never reach the
transformer: padded slots are zero and masked), and N is cut to the longest row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from twinflow.core.settings import ConfigError, require
from twinflow.gw.domain import BINS_PER_TOKEN, MultibandedFrequencyDomain

PSD_FEATURE_REFERENCE_ASD = 1e-23  # Hz^-1/2
#: Channels per bin of a token: Re and Im of the whitened strain, and the PSD feature.
TOKEN_CHANNELS = 3
TOKEN_FEATURES = BINS_PER_TOKEN * TOKEN_CHANNELS


# --------------------------------------------------------------------------------------------
# Detector geometry and projection


# --------------------------------------------------------------------------------------------
# PSDs, noise and the PSD feature


def multibanded_psd(
    frequencies: np.ndarray, psd: np.ndarray, domain: MultibandedFrequencyDomain, key: str
) -> np.ndarray:
    """Return PSDs [..., n_f] on the uniform grid ``frequencies`` averaged onto the multibanded domain.

    Raises :class:`ConfigError` naming ``key`` if the grid is not the domain's uniform grid or
    a PSD is not positive in the analysis band.
    """
    f = np.asarray(frequencies, dtype=float)
    base = domain.base
    if len(f) != len(base) or not np.allclose(
        f, base.frequencies, rtol=0, atol=1e-9 * base.delta_f + 1e-12
    ):
        df = f[1] - f[0] if len(f) > 1 else float("nan")
        raise ConfigError(
            f"{key} has {len(f)} frequencies at delta_f = {df:g} Hz up to {f[-1]:g} Hz; the domain needs the "
            f"uniform grid of duration = {base.duration:g} s and sampling-frequency = {base.sampling_frequency:g} Hz "
            f"({len(base)} bins at delta_f = {base.delta_f:g} Hz): remake the PSD banks with these settings"
        )
    psd = np.asarray(psd, dtype=float)
    require(
        psd.shape[-1] == len(f),
        key,
        f"{psd.shape[-1]} PSD values",
        f"one per frequency ({len(f)})",
    )
    require(
        np.all(psd[..., domain.uniform_slice] > 0),
        key,
        "PSD values",
        "positive PSD values in the analysis band",
    )
    return domain.decimate(psd)


def multibanded_psd_bank(
    bank, domain: MultibandedFrequencyDomain, key: str | None = None
) -> np.ndarray:
    """Return a :class:`~twinflow.gw.psd.PSDBank` [N, n_f] averaged onto the multibanded domain [N, n_bins]."""
    return multibanded_psd(bank.frequencies, bank.psd, domain, key or f"psd bank {bank.detector}")


def noise_std(psd_multibanded: torch.Tensor, domain: MultibandedFrequencyDomain) -> torch.Tensor:
    """Return σ = sqrt(S̄ / (4 Δf_j)), the std of Re and Im of noise in each multibanded bin."""
    return domain.noise_std(psd_multibanded)


def coloured_noise(
    psd_multibanded: torch.Tensor,
    domain: MultibandedFrequencyDomain,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return complex Gaussian noise with PSD ``psd_multibanded`` [..., n_bins] on the grid.

    E|n_j|^2 = S̄_j / (2 Δf_j), i.e. the average of bilby's uniform-grid noise over the bin.
    """
    sigma = noise_std(psd_multibanded, domain)
    re = torch.randn(sigma.shape, generator=generator, device=sigma.device, dtype=sigma.dtype)
    im = torch.randn(sigma.shape, generator=generator, device=sigma.device, dtype=sigma.dtype)
    return torch.complex(re, im) * sigma


def psd_feature(psd_multibanded: torch.Tensor) -> torch.Tensor:
    """Return the token's PSD channel: ln(ASD / 1e-23 Hz^-1/2)."""
    return 0.5 * torch.log(psd_multibanded) - math.log(PSD_FEATURE_REFERENCE_ASD)


# --------------------------------------------------------------------------------------------
# Tokens and masks


def tokenize(
    whitened: torch.Tensor,
    feature: torch.Tensor,
    domain: MultibandedFrequencyDomain,
    detector_index: Sequence[int] | torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Return unmasked tokens of whitened strain [B, D, n_bins] and the PSD feature [B, D, n_bins].

    ``detector_index`` [D] gives the index (into the analysis detectors) of each row of D.
    Returns ``tokens`` [B, D*T, 48], ``detector_index`` [B, D*T], ``token_frequency`` [B, D*T, 2].
    """
    B, D, n_bins = whitened.shape
    P = domain.bins_per_token
    T = n_bins // P
    real_dtype = whitened.real.dtype
    # [B, D, n_bins] -> [B, D, T, P] per channel -> [B, D, T, 3P] channel-major -> [B, D*T, 3P]
    channels = [whitened.real, whitened.imag, feature.to(real_dtype)]
    tokens = torch.cat([c.reshape(B, D, T, P) for c in channels], dim=-1).reshape(
        B, D * T, TOKEN_CHANNELS * P
    )
    det = torch.as_tensor(detector_index, dtype=torch.long, device=whitened.device)
    det = det[:, None].expand(D, T).reshape(1, D * T).expand(B, D * T)
    edges = torch.as_tensor(domain.token_edges, dtype=real_dtype, device=whitened.device)
    edges = edges[None].expand(D, T, 2).reshape(1, D * T, 2).expand(B, D * T, 2)
    return {"tokens": tokens, "detector_index": det, "token_frequency": edges}


def compact(batch: Mapping[str, torch.Tensor], keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """Return the token tensors with kept tokens moved to the front of each row.

    ``keep`` [B, N] bool. The sequence is cut to the longest row; slots past a row's kept
    tokens are zero and flagged True in ``padding_mask``.
    """
    B, N = keep.shape
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept first, order kept
    n_kept = keep.sum(dim=1)
    length = int(n_kept.max().item()) if B else 0
    order = order[:, :length]
    padding = torch.arange(length, device=keep.device)[None, :] >= n_kept[:, None]  # [B, L]
    out = {}
    for name in ("tokens", "detector_index", "token_frequency"):
        x = batch[name]
        idx = order.reshape(B, length, *([1] * (x.dim() - 2))).expand(B, length, *x.shape[2:])
        gathered = torch.gather(x, 1, idx)
        pad = padding.reshape(B, length, *([1] * (x.dim() - 2)))
        out[name] = gathered.masked_fill(pad, 0)
    out["padding_mask"] = padding
    return out


def frequency_keep(
    token_frequency: torch.Tensor, f_min: torch.Tensor, f_max: torch.Tensor
) -> torch.Tensor:
    """Return [B, N] True for tokens entirely inside [f_min, f_max] (per-token bounds [B, N])."""
    eps = 1e-9
    return (token_frequency[..., 0] >= f_min - eps) & (token_frequency[..., 1] <= f_max + eps)


def draw_keep_mask(
    masks: Mapping,
    detector_index: torch.Tensor,
    token_frequency: torch.Tensor,
    n_detectors: int,
    f_min: float,
    f_max: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict]:
    """Draw a random token mask; return keep [B, N] and the draws (per sample and detector).

    Drops k detectors with probability ``detector-drop-probabilities[k]`` (k < number of
    detectors), raises f_min to U(f_min, minimum-frequency.maximum) and lowers f_max to
    U(maximum-frequency.minimum, f_max) each with its probability, and cuts up to
    ``notches.max-count`` notches of width U(0, max-width) at U(f_min, f_max); every token
    overlapping a notch, or not entirely inside [f_min, f_max], is dropped.
    """
    B, N = detector_index.shape
    D = n_detectors
    device = detector_index.device
    dtype = token_frequency.dtype
    rand = lambda *shape: torch.rand(shape, generator=generator, device=device, dtype=dtype)  # noqa: E731

    # Detectors: k ~ Categorical(p[:D]) (at least one kept); drop the k with the lowest scores.
    p = torch.tensor(masks["detector-drop-probabilities"][:D], dtype=dtype, device=device)
    k = torch.multinomial(p / p.sum(), B, replacement=True, generator=generator)  # [B]
    scores = rand(B, D)
    rank = torch.argsort(torch.argsort(scores, dim=1), dim=1)  # rank of each detector's score
    detector_kept = rank >= k[:, None]  # [B, D]

    n_draw = D if masks.get("independent-detectors", True) else 1

    def per_detector(x):  # [B, n_draw] -> [B, D]
        return x.expand(B, D) if n_draw == 1 else x

    lo, hi = masks["minimum-frequency"], masks["maximum-frequency"]
    raise_lo = rand(B, n_draw) < lo["probability"]
    low = torch.where(
        raise_lo,
        f_min + (lo["maximum"] - f_min) * rand(B, n_draw),
        torch.full_like(raise_lo, f_min, dtype=dtype),
    )
    lower_hi = rand(B, n_draw) < hi["probability"]
    high = torch.where(
        lower_hi,
        hi["minimum"] + (f_max - hi["minimum"]) * rand(B, n_draw),
        torch.full_like(lower_hi, f_max, dtype=dtype),
    )
    low, high = per_detector(low), per_detector(high)  # [B, D]

    det = detector_index.clamp(max=D - 1)
    token_low = torch.gather(low, 1, det)  # [B, N]
    token_high = torch.gather(high, 1, det)
    keep = frequency_keep(token_frequency, token_low, token_high) & torch.gather(
        detector_kept, 1, det
    )

    notches = masks["notches"]
    M = int(notches["max-count"])
    has = rand(B, n_draw) < notches["probability"]
    count = torch.randint(1, M + 1, (B, n_draw), generator=generator, device=device)
    active = has[..., None] & (
        torch.arange(M, device=device)[None, None, :] < count[..., None]
    )  # [B, n_draw, M]
    centre = f_min + (f_max - f_min) * rand(B, n_draw, M)
    width = notches["max-width"] * rand(B, n_draw, M)
    if n_draw == 1:
        active, centre, width = (x.expand(B, D, M) for x in (active, centre, width))
    idx = det[..., None].expand(B, N, M)
    c, w, a = (torch.gather(x, 1, idx) for x in (centre, width, active))  # [B, N, M]
    overlap = (token_frequency[..., 0:1] < c + w / 2) & (token_frequency[..., 1:2] > c - w / 2) & a
    keep = keep & ~overlap.any(dim=-1)
    # A notch could in principle take every remaining token: then keep the row without notches.
    empty = ~keep.any(dim=1)
    if empty.any():
        fallback = frequency_keep(token_frequency, token_low, token_high) & torch.gather(
            detector_kept, 1, det
        )
        keep = torch.where(empty[:, None], fallback, keep)
    draws = {
        "detector_kept": detector_kept,
        "minimum_frequency": low,
        "maximum_frequency": high,
        "notch_centre": centre,
        "notch_width": width,
        "notch_active": active,
    }
    return keep, draws


# --------------------------------------------------------------------------------------------
# The assembler
