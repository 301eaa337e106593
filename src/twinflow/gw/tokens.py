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

from twinflow.core.device import select_device, to_device
from twinflow.core.seeding import derive_seed, numpy_rng
from twinflow.core.settings import ConfigError, require, require_choice
from twinflow.gw.domain import MultibandedFrequencyDomain
from twinflow.gw.prior import EXTRINSIC, build_prior, is_fixed, sample

SPEED_OF_LIGHT = 299792458.0  # m/s
PSD_FEATURE_REFERENCE_ASD = 1e-23  # Hz^-1/2
TOKEN_CHANNELS = 3


# --------------------------------------------------------------------------------------------
# Detector geometry and projection


class DetectorProjection:
    """Antenna patterns, delays and the detector response of bilby, batched in torch.

    ``reference_time`` is the trigger GPS time; the ``geocent_time`` parameter is the offset
    Δt_c from it. GMST at t_c is GMST(reference_time) + Ω Δt_c (Ω from bilby's GMST function).
    """

    def __init__(
        self, detectors: Sequence[str], reference_time: float, device: torch.device | str = "cpu"
    ):
        import bilby
        from bilby.gw.utils import greenwich_mean_sidereal_time as gmst

        self.detectors = list(detectors)
        self.device = torch.device(device)
        ifos = [bilby.gw.detector.get_empty_interferometer(d) for d in self.detectors]
        self.detector_tensor = torch.tensor(
            np.stack([i.detector_tensor for i in ifos]), dtype=torch.float64, device=self.device
        )  # [D, 3, 3]
        self.vertex = torch.tensor(
            np.stack([i.vertex for i in ifos]), dtype=torch.float64, device=self.device
        )
        self.reference_time = float(reference_time)
        self.gmst_reference = float(np.fmod(gmst(self.reference_time), 2 * np.pi))
        self.gmst_rate = float(
            (gmst(self.reference_time + 1.0) - gmst(self.reference_time - 1.0)) / 2.0
        )

    def antenna_and_delay(
        self, ra: torch.Tensor, dec: torch.Tensor, psi: torch.Tensor, time_offset: torch.Tensor
    ):
        """Return F+, F× and the delay from the geocentre [s], each [B, D] (float64)."""
        ra, dec, psi, dt = (
            torch.as_tensor(x, dtype=torch.float64, device=self.device)
            for x in (ra, dec, psi, time_offset)
        )
        phi = ra - (self.gmst_reference + self.gmst_rate * dt)
        theta = math.pi / 2 - dec
        cos_t, sin_t, cos_p, sin_p = (
            torch.cos(theta),
            torch.sin(theta),
            torch.cos(phi),
            torch.sin(phi),
        )
        u = torch.stack([cos_p * cos_t, cos_t * sin_p, -sin_t], dim=-1)  # [B, 3]
        v = torch.stack([-sin_p, cos_p, torch.zeros_like(phi)], dim=-1)
        s, c = torch.sin(psi)[:, None], torch.cos(psi)[:, None]
        m = -u * s - v * c
        n = -u * c + v * s
        Dm = torch.einsum("dij,bj->bdi", self.detector_tensor, m)  # [B, D, 3]
        Dn = torch.einsum("dij,bj->bdi", self.detector_tensor, n)
        f_plus = torch.einsum("bi,bdi->bd", m, Dm) - torch.einsum("bi,bdi->bd", n, Dn)
        f_cross = 2 * torch.einsum("bi,bdi->bd", m, Dn)
        omega = torch.stack([sin_t * cos_p, sin_t * sin_p, cos_t], dim=-1)  # [B, 3]
        delay = -torch.einsum("bi,di->bd", omega, self.vertex) / SPEED_OF_LIGHT
        return f_plus, f_cross, delay

    def project(
        self,
        h_plus: torch.Tensor,
        h_cross: torch.Tensor,
        frequencies: torch.Tensor,
        parameters: Mapping[str, torch.Tensor],
        time_origin_offset: float = 0.0,
    ) -> torch.Tensor:
        """Return the detector strain [B, D, n_f] (complex) of polarisations [B, n_f].

        The phase is ``exp(-2πi f (Δt_c + Δt_d + time_origin_offset))``: 0 gives strain
        referenced to the trigger time (the tokens' convention); T - post_trigger_duration
        gives bilby's, referenced to the segment start. Phases are formed in float64 and
        reduced mod 2π before the trig functions, so float32 data keep full precision.
        """
        f_plus, f_cross, delay = self.antenna_and_delay(
            parameters["ra"], parameters["dec"], parameters["psi"], parameters["geocent_time"]
        )
        dt = (
            torch.as_tensor(parameters["geocent_time"], dtype=torch.float64, device=self.device)[
                :, None
            ]
            + delay
        )
        f = torch.as_tensor(frequencies, dtype=torch.float64, device=self.device)
        cycles = torch.frac(f * (dt[..., None] + time_origin_offset))  # [B, D, n_f], in cycles
        real_dtype = h_plus.real.dtype
        angle = (-2 * math.pi * cycles).to(real_dtype)
        shift = torch.polar(torch.ones_like(angle), angle)
        strain = (
            f_plus.to(real_dtype)[..., None] * h_plus[:, None, :]
            + f_cross.to(real_dtype)[..., None] * h_cross[:, None, :]
        )
        return strain * shift


def multibanded_strain(
    strain: np.ndarray, domain: MultibandedFrequencyDomain, post_trigger_duration: float
) -> np.ndarray:
    """Return detector data (bilby's convention, uniform grid) on the multibanded grid,
    referenced to the trigger time: decimate(d(f) exp(2πi f (T - post_trigger_duration)))."""
    f = domain.base.frequencies
    offset = domain.base.duration - post_trigger_duration
    shift = np.exp(2j * np.pi * np.mod(f * offset, 1.0))
    return domain.decimate(np.asarray(strain) * shift)


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


def check_mask_settings(
    masks: Mapping, n_detectors: int, f_min: float, f_max: float, key: str = "dataset.masks"
) -> None:
    """Raise :class:`ConfigError` for mask settings that cannot apply to the analysis band."""
    p = masks["detector-drop-probabilities"]
    require(
        isinstance(p, list)
        and len(p) >= 1
        and all(isinstance(x, (int, float)) and x >= 0 for x in p)
        and sum(p[:n_detectors]) > 0,
        f"{key}.detector-drop-probabilities",
        p,
        f"probabilities of dropping 0, 1, ... detectors, not all zero for the first {n_detectors}",
    )
    lo, hi = masks["minimum-frequency"], masks["maximum-frequency"]
    for name, section in (
        ("minimum-frequency", lo),
        ("maximum-frequency", hi),
        ("notches", masks["notches"]),
    ):
        prob = section["probability"]
        require(
            isinstance(prob, (int, float)) and 0 <= prob <= 1,
            f"{key}.{name}.probability",
            prob,
            "in [0, 1]",
        )
    if lo["probability"] > 0:
        require(
            f_min < lo["maximum"] < f_max,
            f"{key}.minimum-frequency.maximum",
            lo["maximum"],
            f"a frequency inside the analysis band ({f_min:g}, {f_max:g}) Hz",
        )
    if hi["probability"] > 0:
        require(
            f_min < hi["minimum"] < f_max,
            f"{key}.maximum-frequency.minimum",
            hi["minimum"],
            f"a frequency inside the analysis band ({f_min:g}, {f_max:g}) Hz",
        )
    if lo["probability"] > 0 and hi["probability"] > 0:
        require(
            lo["maximum"] < hi["minimum"],
            f"{key}.minimum-frequency.maximum",
            lo["maximum"],
            f"below {key}.maximum-frequency.minimum = {hi['minimum']} so a band always remains",
        )
    notches = masks["notches"]
    require(
        isinstance(notches["max-count"], int) and notches["max-count"] >= 1,
        f"{key}.notches.max-count",
        notches["max-count"],
        "an integer >= 1",
    )
    require(
        isinstance(notches["max-width"], (int, float)) and notches["max-width"] > 0,
        f"{key}.notches.max-width",
        notches["max-width"],
        "a width > 0 Hz",
    )


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


def check_batch_settings(settings: Mapping) -> None:
    """Raise :class:`ConfigError` for invalid batch settings (detectors, extrinsic prior, masks)."""
    from twinflow.gw.psd import KNOWN_DETECTORS

    require(
        isinstance(settings["detectors"], list) and len(settings["detectors"]) >= 1,
        "detectors",
        settings["detectors"],
        f"a non-empty list of {list(KNOWN_DETECTORS)}",
    )
    for det in settings["detectors"]:
        require_choice("detectors", det, KNOWN_DETECTORS)
    extrinsic = settings["prior"]
    missing = [k for k in EXTRINSIC if k not in extrinsic]
    require(
        not missing,
        "dataset.prior",
        sorted(extrinsic),
        f"a prior (or fixed value) for each of {missing}",
    )
    require(
        isinstance(settings["post-trigger-duration"], (int, float))
        and 0 <= settings["post-trigger-duration"] < settings["duration"],
        "dataset.post-trigger-duration",
        settings["post-trigger-duration"],
        f"in [0, duration = {settings['duration']}) s",
    )
    check_mask_settings(
        settings["masks"],
        len(settings["detectors"]),
        settings["minimum-frequency"],
        settings["maximum-frequency"],
    )


class BatchAssembler:
    """Turn stored polarisations into training batches (the batch contract of ``gw/model.py``).

    Arguments:
        settings: ``twinflow.gw.settings.batch_settings_for(config["gw"])``: detectors,
            analysis band, extrinsic prior, reference time, post-trigger duration, masks.
        domain: the dataset's multibanded domain.
        psd_banks: per detector a :class:`~twinflow.gw.psd.PSDBank` on the domain's uniform grid.
        reference_distance: distance [Mpc] of the stored polarisations.
        intrinsic_parameters: names of the stored (non-fixed) intrinsic parameters.
        device: where batches are made ("auto" picks the GPU when there is one).
        seed: seed of the extrinsic draws, PSD choice, noise and masks.

    ``assembler(waveforms)`` with ``waveforms`` a dict of ``h_plus``, ``h_cross`` [B, n_bins]
    (complex) and the intrinsic parameters [B] (numpy or torch) returns the batch dict.
    """

    def __init__(
        self,
        settings: Mapping,
        domain: MultibandedFrequencyDomain,
        psd_banks: Mapping,
        reference_distance: float,
        intrinsic_parameters: Sequence[str],
        device: str | torch.device = "cpu",
        seed: int = 0,
    ):
        check_batch_settings(settings)
        self.settings = dict(settings)
        self.domain = domain
        self.detectors = list(settings["detectors"])
        require(
            domain.f_min <= settings["minimum-frequency"]
            and settings["maximum-frequency"] <= domain.f_max,
            "minimum-/maximum-frequency",
            [settings["minimum-frequency"], settings["maximum-frequency"]],
            f"inside the dataset's domain [{domain.f_min:g}, {domain.f_max:g}] Hz",
        )
        missing = [d for d in self.detectors if d not in psd_banks]
        require(
            not missing, "psd banks", sorted(psd_banks), f"a PSD bank for each of {self.detectors}"
        )
        self.device = select_device(device) if isinstance(device, str) else torch.device(device)
        self.reference_distance = float(reference_distance)
        self.intrinsic_parameters = list(intrinsic_parameters)
        self.prior = build_prior(
            {
                **{k: 0.0 for k in ("chirp_mass", "mass_ratio", "theta_jn", "phase")},
                **settings["prior"],
            }
        )
        self.extrinsic = {k: self.prior[k] for k in EXTRINSIC}
        self.extrinsic_sampled = [k for k in EXTRINSIC if not is_fixed(self.extrinsic[k])]
        self.parameter_names = self.intrinsic_parameters + self.extrinsic_sampled
        self.projection = DetectorProjection(
            self.detectors, settings["reference-time"], self.device
        )
        self.frequencies = torch.as_tensor(
            domain.sample_frequencies, dtype=torch.float64, device=self.device
        )
        # Per detector: the bank on the multibanded grid [N_d, n_bins], its noise std and PSD feature.
        # PSDs (~1e-46 /Hz) underflow float32: keep them in float64, store σ and the feature in float32.
        self.psd = [
            torch.as_tensor(
                multibanded_psd_bank(psd_banks[d], domain, f"psd bank {d}"),
                dtype=torch.float64,
                device=self.device,
            )
            for d in self.detectors
        ]
        self.sigma = [noise_std(p, domain).to(torch.float32) for p in self.psd]
        self.feature = [psd_feature(p).to(torch.float32) for p in self.psd]
        self.f_min, self.f_max = (
            float(settings["minimum-frequency"]),
            float(settings["maximum-frequency"]),
        )
        self.rng = numpy_rng(seed, "batch-extrinsic")
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(derive_seed(seed, "batch-noise"))

    @classmethod
    def from_files(
        cls,
        settings: Mapping,
        index_path,
        psd_paths: Mapping[str, str],
        device="cpu",
        seed: int = 0,
    ):
        """Build from a dataset ``index.json`` and PSD bank files (detector -> path)."""
        from twinflow.gw.dataset import WaveformDataset
        from twinflow.gw.psd import load_psd_bank

        dataset = WaveformDataset(index_path)
        banks = {d: load_psd_bank(p) for d, p in psd_paths.items()}
        return cls(
            settings,
            dataset.domain,
            banks,
            dataset.reference_distance,
            dataset.parameters,
            device,
            seed,
        )

    @property
    def n_tokens(self) -> int:
        """Tokens per sample before masking (all detectors)."""
        return len(self.detectors) * self.domain.n_tokens

    def describe(self) -> dict:
        """Return what a checkpoint needs to rebuild and check the inputs (plain data)."""
        return {
            "detectors": self.detectors,
            "domain": self.domain.settings,
            "parameters": self.parameter_names,
            "reference-time": self.settings["reference-time"],
            "post-trigger-duration": self.settings["post-trigger-duration"],
            "minimum-frequency": self.f_min,
            "maximum-frequency": self.f_max,
            "masks": self.settings["masks"],
            "token": {
                "bins": self.domain.bins_per_token,
                "channels": ["re", "im", "ln_asd_over_1e-23"],
            },
        }

    def sample_extrinsic(self, n: int) -> dict[str, torch.Tensor]:
        """Return n draws of the extrinsic parameters (float64 tensors on the device)."""
        draws = sample(self.extrinsic, n, self.rng)
        return {
            k: torch.as_tensor(v, dtype=torch.float64, device=self.device)
            for k, v in draws.items()
        }

    def signal(
        self, h_plus: torch.Tensor, h_cross: torch.Tensor, extrinsic: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """Return the detector strain [B, D, n_bins] (referenced to the trigger time) at the drawn distance."""
        scale = (self.reference_distance / extrinsic["luminosity_distance"]).to(h_plus.real.dtype)[
            :, None
        ]
        return self.projection.project(
            h_plus * scale, h_cross * scale, self.frequencies, extrinsic
        )

    def __call__(self, waveforms: Mapping, masks: bool = True, noise: bool = True) -> dict:
        # Host arrays go over pinned and non-blocking on CUDA; tensors already there stay.
        h_plus = to_device(torch.as_tensor(waveforms["h_plus"]), self.device).to(torch.complex64)
        h_cross = to_device(torch.as_tensor(waveforms["h_cross"]), self.device).to(torch.complex64)
        B = h_plus.shape[0]
        extrinsic = self.sample_extrinsic(B)
        strain = self.signal(h_plus, h_cross, extrinsic)  # [B, D, n_bins]
        # A PSD per sample and detector.
        sigma, feature = [], []
        for d in range(len(self.detectors)):
            idx = torch.randint(
                len(self.psd[d]), (B,), generator=self.generator, device=self.device
            )
            sigma.append(self.sigma[d][idx])
            feature.append(self.feature[d][idx])
        sigma, feature = torch.stack(sigma, 1), torch.stack(feature, 1)  # [B, D, n_bins]
        whitened = strain / sigma
        if noise:
            whitened = whitened + torch.complex(
                torch.randn(whitened.shape, generator=self.generator, device=self.device),
                torch.randn(whitened.shape, generator=self.generator, device=self.device),
            )
        batch = tokenize(whitened, feature, self.domain, range(len(self.detectors)))
        band = frequency_keep(
            batch["token_frequency"],
            torch.tensor(self.f_min, device=self.device),
            torch.tensor(self.f_max, device=self.device),
        )
        if masks:
            keep, _ = draw_keep_mask(
                self.settings["masks"],
                batch["detector_index"],
                batch["token_frequency"],
                len(self.detectors),
                self.f_min,
                self.f_max,
                self.generator,
            )
            keep = keep & band
        else:
            keep = band.expand_as(batch["detector_index"])
        out = compact(batch, keep)
        params = {}
        for name in self.intrinsic_parameters:
            params[name] = to_device(torch.as_tensor(waveforms[name]), self.device).to(
                torch.float32
            )
        for name in self.extrinsic_sampled:
            params[name] = extrinsic[name].to(torch.float32)
        out["parameters"] = params
        return out


def event_batch(
    strain: Mapping[str, np.ndarray],
    psd: Mapping[str, np.ndarray],
    domain: MultibandedFrequencyDomain,
    detectors: Sequence[str],
    post_trigger_duration: float,
    minimum_frequency: float,
    maximum_frequency: float,
    device: str | torch.device = "cpu",
    window_factor: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Return the batch (B = 1) of an event, for the detectors present in ``strain``.

    ``strain`` and ``psd`` map detector -> frequency-domain data (bilby's convention: the FFT
    of the segment times 1/f_s, referenced to the segment start) and PSD on the domain's
    uniform grid. ``detectors`` are the analysis detectors of the model (their order gives
    ``detector_index``). Tokens outside [minimum_frequency, maximum_frequency] are dropped.
    ``window_factor``: the mean square of the window applied before the FFT (e.g. bilby's
    ``Interferometer.strain_data.window_factor`` for a Tukey window); windowing scales the
    noise power by it, so the noise standard deviation used for whitening is scaled by its
    square root (the PSD feature is left as the PSD itself, as in training). Bins that average
    several uniform bins are whitened as if those were independent; a taper correlates them
    slightly (for a Tukey taper of 5 % at each end and T - post = T/2, the whitened variance of
    averaged bins comes out ≈ 7 % above 1).
    """
    require(
        isinstance(window_factor, (int, float)) and 0 < window_factor <= 1,
        "window factor",
        window_factor,
        "the mean square of the window, in (0, 1]",
    )
    used = [d for d in detectors if d in strain]
    require(
        len(used) > 0,
        "detectors",
        sorted(strain),
        f"at least one of the model's detectors {list(detectors)}",
    )
    device = torch.device(device)
    whitened, feature = [], []
    for d in used:
        psd_d = multibanded_psd(domain.base.frequencies, psd[d], domain, f"psd of {d}")
        data = multibanded_strain(strain[d], domain, post_trigger_duration)
        whitened.append(data / (domain.noise_std(psd_d) * math.sqrt(window_factor)))
        feature.append(0.5 * np.log(psd_d) - math.log(PSD_FEATURE_REFERENCE_ASD))
    w = torch.as_tensor(np.stack(whitened)[None], dtype=torch.complex64, device=device)
    feat = torch.as_tensor(np.stack(feature)[None], dtype=torch.float32, device=device)
    batch = tokenize(w, feat, domain, [detectors.index(d) for d in used])
    keep = frequency_keep(
        batch["token_frequency"],
        torch.tensor(float(minimum_frequency), device=device),
        torch.tensor(float(maximum_frequency), device=device),
    )
    return compact(batch, keep)
