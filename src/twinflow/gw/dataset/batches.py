"""Training batches assembled on the fly: extrinsic draw, projection, PSD draw, noise, whitening,
tokens and masks, in torch on the training device (:class:`BatchAssembler`), and the same for
one event's data at inference (:func:`event_batch`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from twinflow.core.device import select_device, to_device
from twinflow.core.seeding import derive_seed, numpy_rng
from twinflow.core.settings import require
from twinflow.gw.dataset.projection import DetectorProjection, multibanded_strain
from twinflow.gw.dataset.tokens import (
    PSD_FEATURE_REFERENCE_ASD,
    compact,
    draw_keep_mask,
    frequency_keep,
    multibanded_psd,
    multibanded_psd_bank,
    noise_std,
    psd_feature,
    tokenize,
)
from twinflow.gw.domain import MultibandedFrequencyDomain
from twinflow.gw.prior import EXTRINSIC, build_prior, is_fixed, sample, with_placeholders
from twinflow.gw.validation import check_batch_settings


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
            with_placeholders(settings["prior"], ("chirp_mass", "mass_ratio", "theta_jn", "phase"))
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
        from twinflow.gw.dataset.shards import WaveformDataset
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
