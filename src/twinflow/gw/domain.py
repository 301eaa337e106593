"""Frequency domains: the uniform FFT grid and Dingo's multibanded grid.

The **uniform domain** is the rfft grid of a segment of duration T sampled at f_s:
``f_k = k / T`` for ``k = 0 .. f_s T / 2``. PSD banks and bilby live on it.

The **multibanded domain** (Dingo's ``MultibandedFrequencyDomain``, used by Dingo-T1,
arXiv:2512.02968) covers [nodes[0], nodes[-1]) in bands; band j spans [nodes[j], nodes[j+1])
with bin width ``2^j / T``, and each of its bins is the average of ``2^j`` neighbouring bins of
the uniform grid. A chirp oscillates ever more slowly in f as f grows (dΨ/df ∝ f^(-8/3)), so
coarser bins at higher f lose almost nothing. Every band holds a whole number of 16-bin tokens,
so a token never straddles two bin widths. At T = 8 s, the Dingo-T1 nodes
[20, 38, 50, 66, 82, 1810] Hz give 144 + 48 + 32 + 16 + 864 = 1104 bins = 69 tokens.

Noise convention (bilby's): on the uniform grid E|n(f_k)|^2 = T S(f_k) / 2. The average of m
uniform bins therefore has E|n̄|^2 = S̄ / (2 Δf_j) with S̄ the mean PSD over those bins and
Δf_j = m / T, and whitening by ``sqrt(S̄ / (4 Δf_j))`` gives unit-variance real and imaginary
parts on both grids. The noise-weighted inner product becomes
``<a, b> = 4 Re Σ_j Δf_j a_j* b_j / S̄_j`` on the multibanded grid.

A domain is rebuilt from its settings dict (``domain_from_settings``), which every dataset
shard, index and model checkpoint carries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from twinflow.core.settings import ConfigError, require, require_nyquist, require_positive

BINS_PER_TOKEN = 16


class UniformFrequencyDomain:
    """The rfft grid of a segment: ``f_k = k / duration``, k = 0 .. sampling_frequency * duration / 2."""

    def __init__(self, duration: float, sampling_frequency: float):
        require_positive("duration", duration)
        require_positive("sampling-frequency", sampling_frequency)
        require(
            float(duration * sampling_frequency).is_integer(),
            "duration",
            duration,
            f"duration x sampling-frequency must be a whole number of samples (fs = {sampling_frequency} Hz)",
        )
        self.duration = float(duration)
        self.sampling_frequency = float(sampling_frequency)
        self.delta_f = 1.0 / self.duration
        self.frequencies = (
            np.arange(int(round(duration * sampling_frequency)) // 2 + 1) * self.delta_f
        )

    def __len__(self) -> int:
        return len(self.frequencies)

    def index(self, frequency: float) -> int:
        """Return the index of ``frequency``, which must lie on the grid."""
        k = frequency * self.duration
        if abs(k - round(k)) > 1e-9 or not 0 <= round(k) < len(self):
            raise ValueError(
                f"{frequency} Hz is not on the uniform grid (delta_f = {self.delta_f:g} Hz)"
            )
        return int(round(k))

    @property
    def settings(self) -> dict:
        return {
            "type": "uniform",
            "duration": self.duration,
            "sampling-frequency": self.sampling_frequency,
        }


class MultibandedFrequencyDomain:
    """Bands of doubling bin width over [nodes[0], nodes[-1]); bins are averages of uniform bins.

    Arguments:
        nodes: band edges [Hz], increasing; each on the uniform grid, and each band a whole
            number of ``bins_per_token``-bin tokens at its bin width ``2^j / duration``.
        duration, sampling_frequency: the uniform grid the bins are decimated from.
        bins_per_token: bins per token (16 in Dingo-T1).
        key: the config key named in errors.
    """

    def __init__(
        self,
        nodes: Sequence[float],
        duration: float,
        sampling_frequency: float,
        bins_per_token: int = BINS_PER_TOKEN,
        key: str = "dataset.domain.nodes",
    ):
        self.base = UniformFrequencyDomain(duration, sampling_frequency)
        self.bins_per_token = int(bins_per_token)
        nodes = [float(x) for x in nodes]
        self.nodes = np.array(nodes)
        require(
            len(nodes) >= 2 and all(b > a for a, b in zip(nodes, nodes[1:])),
            key,
            nodes,
            "at least two strictly increasing frequencies [Hz]",
        )
        require(nodes[0] > 0, key, nodes, "the first node must be above 0 Hz")
        require_nyquist(
            f"{key}[-1] (the domain's maximum frequency)", nodes[-1], self.base.sampling_frequency
        )
        base_df = self.base.delta_f
        node_index = self.nodes * self.base.duration
        if np.any(np.abs(node_index - np.round(node_index)) > 1e-9):
            fail_at = [x for x, k in zip(nodes, node_index) if abs(k - round(k)) > 1e-9]
            raise ConfigError(
                f"{key} = {nodes!r} is invalid: nodes {fail_at} are not on the uniform grid "
                f"(multiples of delta_f = 1/duration = {base_df:g} Hz)"
            )
        self.node_index = np.round(node_index).astype(int)
        self.num_bands = len(nodes) - 1
        self.decimation = 2 ** np.arange(self.num_bands)  # uniform bins per multibanded bin
        band_width = np.diff(self.node_index)  # in uniform bins
        token_width = self.bins_per_token * self.decimation  # in uniform bins
        bad = [j for j in range(self.num_bands) if band_width[j] % token_width[j]]
        if bad:
            j = bad[0]
            raise ConfigError(
                f"{key} = {nodes!r} is invalid: band {j} [{nodes[j]:g}, {nodes[j + 1]:g}) Hz is "
                f"{band_width[j] * base_df:g} Hz wide, not a whole number of {self.bins_per_token}-bin "
                f"tokens of {token_width[j] * base_df:g} Hz (bin width {self.decimation[j] * base_df:g} Hz): "
                "nodes must fall on token edges"
            )
        self.bins_per_band = band_width // self.decimation
        self.band_of_bin = np.repeat(np.arange(self.num_bands), self.bins_per_band)
        self.decimation_of_bin = self.decimation[self.band_of_bin]
        self.delta_f = self.decimation_of_bin * base_df  # [n_bins] bin widths
        # Each bin averages the uniform bins [lower, lower + delta_f): first index per bin.
        first = np.concatenate([[0], np.cumsum(self.decimation_of_bin)[:-1]]) + self.node_index[0]
        self.first_uniform_index = first
        self.f_base_lower = first * base_df  # first uniform frequency in the bin
        self.f_base_upper = (
            self.f_base_lower + self.delta_f - base_df
        )  # last uniform frequency in it
        # As Dingo: the bin's frequency is the mean of the uniform frequencies it averages.
        self.sample_frequencies = 0.5 * (self.f_base_lower + self.f_base_upper)

    # ----------------------------------------------------------------------------------------
    @property
    def n_bins(self) -> int:
        return int(self.bins_per_band.sum())

    def __len__(self) -> int:
        return self.n_bins

    @property
    def n_tokens(self) -> int:
        return self.n_bins // self.bins_per_token

    @property
    def f_min(self) -> float:
        return float(self.nodes[0])

    @property
    def f_max(self) -> float:
        return float(self.nodes[-1])

    @property
    def token_edges(self) -> np.ndarray:
        """[n_tokens, 2] lower and upper edge [Hz] of each token: it covers [lower, upper)."""
        lower = self.f_base_lower[:: self.bins_per_token]
        upper = lower + self.bins_per_token * self.delta_f[:: self.bins_per_token]
        return np.stack([lower, upper], axis=1)

    @property
    def uniform_slice(self) -> slice:
        """The uniform bins the domain decimates: [nodes[0], nodes[-1])."""
        return slice(int(self.node_index[0]), int(self.node_index[-1]))

    @property
    def settings(self) -> dict:
        return {
            "type": "multibanded",
            "nodes": [float(x) for x in self.nodes],
            "duration": self.base.duration,
            "sampling-frequency": self.base.sampling_frequency,
            "bins-per-token": self.bins_per_token,
        }

    def __repr__(self) -> str:
        return (
            f"MultibandedFrequencyDomain(nodes={self.nodes.tolist()}, T={self.base.duration:g} s, "
            f"{self.n_bins} bins, {self.n_tokens} tokens)"
        )

    # ----------------------------------------------------------------------------------------
    def decimate(self, data):
        """Return ``data`` on the uniform grid averaged onto this domain (last axis).

        ``data`` may be a numpy array or a torch tensor; its last axis is either the whole
        uniform grid (0 .. f_s/2) or exactly the decimated range [nodes[0], nodes[-1]).
        """
        n = data.shape[-1]
        if n == len(self.base):
            data = data[..., self.uniform_slice]
        elif n != self.node_index[-1] - self.node_index[0]:
            raise ValueError(
                f"data has {n} bins; expected {len(self.base)} (uniform grid) or "
                f"{self.node_index[-1] - self.node_index[0]} (the range [{self.f_min:g}, {self.f_max:g}) Hz)"
            )
        if isinstance(data, np.ndarray):
            return self._decimate_numpy(data)
        pieces = []
        for j in range(self.num_bands):
            lo, hi = (
                self.node_index[j] - self.node_index[0],
                self.node_index[j + 1] - self.node_index[0],
            )
            band = data[..., lo:hi]
            pieces.append(band.reshape(*band.shape[:-1], -1, int(self.decimation[j])).mean(-1))
        import torch

        return torch.cat(pieces, dim=-1)

    def _decimate_numpy(self, data: np.ndarray) -> np.ndarray:
        # Band by band into one output: a copy where m = 1, sums of m strided slices for small
        # m (vectorised adds, ~2x faster than reduceat there), reduceat for larger m.
        out = np.empty((*data.shape[:-1], self.n_bins), dtype=data.dtype)
        scalar = data.real.dtype.type
        start = 0
        for j in range(self.num_bands):
            lo, hi = (
                self.node_index[j] - self.node_index[0],
                self.node_index[j + 1] - self.node_index[0],
            )
            m, n = int(self.decimation[j]), int(self.bins_per_band[j])
            dst = out[..., start : start + n]
            if m == 1:
                dst[...] = data[..., lo:hi]
            elif m <= 4:
                np.add(data[..., lo:hi:m], data[..., lo + 1 : hi : m], out=dst)
                for k in range(2, m):
                    dst += data[..., lo + k : hi : m]
                dst *= scalar(1.0 / m)
            else:
                np.multiply(
                    np.add.reduceat(data[..., lo:hi], np.arange(0, hi - lo, m), axis=-1),
                    scalar(1.0 / m),
                    out=dst,
                )
            start += n
        return out

    def noise_std(self, psd_multibanded):
        """Return the standard deviation of Re and Im of noise in each bin: sqrt(S̄ / (4 Δf_j))."""
        return (psd_multibanded / (4.0 * self._delta_f_like(psd_multibanded))) ** 0.5

    def inner_product(self, a, b, psd_multibanded):
        """Return <a, b> = 4 Re Σ Δf_j a_j* b_j / S̄_j over the last axis (numpy)."""
        return 4.0 * np.real(np.sum(self.delta_f * np.conj(a) * b / psd_multibanded, axis=-1))

    def _delta_f_like(self, x):
        if isinstance(x, np.ndarray):
            return self.delta_f
        import torch

        return torch.as_tensor(self.delta_f, dtype=x.dtype, device=x.device)


def domain_from_settings(settings: Mapping) -> MultibandedFrequencyDomain:
    """Rebuild a multibanded domain from its ``settings`` dict (as stored in shards and checkpoints)."""
    require(
        settings.get("type") == "multibanded", "domain.type", settings.get("type"), "'multibanded'"
    )
    return MultibandedFrequencyDomain(
        settings["nodes"],
        settings["duration"],
        settings["sampling-frequency"],
        settings.get("bins-per-token", BINS_PER_TOKEN),
    )


def uniform_inner_product(
    a: np.ndarray, b: np.ndarray, psd: np.ndarray, duration: float
) -> np.ndarray:
    """Return bilby's noise-weighted inner product 4 Re Σ a* b / S Δf on the uniform grid."""
    return 4.0 / duration * np.real(np.sum(np.conj(a) * b / psd, axis=-1))


# --------------------------------------------------------------------------------------------
# Proposing nodes for another duration or frequency range


def decimation_loss(h: np.ndarray, factor: int) -> np.ndarray:
    """Return, per token-sized block, the fraction of power lost by averaging ``factor`` bins.

    ``h`` [n_waveforms, n] on the uniform grid (n a multiple of ``factor``); the result is
    ``1 - factor |mean h|^2 / Σ |h|^2`` per averaged bin, [n_waveforms, n / factor]. By
    Cauchy-Schwarz it is in [0, 1]; 0 when h is constant over the bin.
    """
    blocks = h.reshape(*h.shape[:-1], -1, factor)
    power = np.sum(np.abs(blocks) ** 2, axis=-1)
    kept = factor * np.abs(blocks.mean(-1)) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(power > 0, 1.0 - kept / power, 0.0)


def propose_nodes(
    waveforms: np.ndarray,
    duration: float,
    sampling_frequency: float,
    minimum_frequency: float,
    maximum_frequency: float,
    tolerance: float,
    bins_per_token: int = BINS_PER_TOKEN,
    max_time_shift: float = 0.0,
) -> list[float]:
    """Return band nodes for [minimum_frequency, maximum_frequency] from example waveforms.

    ``waveforms`` [n, n_uniform] are complex polarisations (h+ and h× of prior draws) on the
    uniform grid of (``duration``, ``sampling_frequency``). Walking up in frequency, the bin
    width doubles as soon as doubling it keeps the power lost by averaging below ``tolerance``
    for every waveform over the next token at the doubled width — and for each waveform shifted
    in time by ``±max_time_shift`` s (the largest arrival-time shift the training applies after
    decimation, so the phase ramp of that shift is resolved too). Bands always hold whole tokens
    and the last node is ``maximum_frequency``. Each token may lose at most ``tolerance`` x its
    share of the band's width of a waveform's power, so the loss in <h, h> (for a white PSD)
    stays below ``tolerance`` in total.
    """
    base = UniformFrequencyDomain(duration, sampling_frequency)
    lo, hi = base.index(minimum_frequency), base.index(maximum_frequency)
    total = hi - lo
    if total % bins_per_token:
        raise ConfigError(
            f"maximum-frequency - minimum-frequency = {maximum_frequency - minimum_frequency:g} Hz is not a whole "
            f"number of {bins_per_token}-bin tokens at delta_f = {base.delta_f:g} Hz "
            f"({bins_per_token * base.delta_f:g} Hz): choose the band so it is"
        )
    h = np.asarray(waveforms)[..., lo:hi]
    if max_time_shift:
        f = base.frequencies[lo:hi]
        shifts = [np.exp(-2j * np.pi * f * s) for s in (-max_time_shift, max_time_shift)]
        h = np.concatenate([h] + [h * s for s in shifts], axis=0)
    norm = np.sum(np.abs(h) ** 2, axis=-1, keepdims=True)
    h = h / np.sqrt(np.where(norm > 0, norm, 1.0))

    def acceptable(start: int, factor: int) -> bool:
        # Power lost in this token, as a fraction of each waveform's whole power, against a
        # budget proportional to the token's width: summed over tokens it stays <= tolerance.
        stop = start + bins_per_token * factor
        piece = h[:, start:stop]
        bin_power = np.sum(np.abs(piece.reshape(len(h), -1, factor)) ** 2, axis=-1)
        lost = np.sum(decimation_loss(piece, factor) * bin_power, axis=-1)
        return bool(np.all(lost <= tolerance * (stop - start) / total))

    nodes = [float(minimum_frequency)]
    position, factor, band_start = 0, 1, 0
    while position < total:
        token = bins_per_token * factor
        # Double once the band holds a token, if the doubled width is good enough here and
        # the rest of the range still tiles with tokens of the doubled width.
        if (
            position > band_start
            and (total - position) % (2 * token) == 0
            and acceptable(position, 2 * factor)
        ):
            nodes.append(float(minimum_frequency + position * base.delta_f))
            factor, band_start = 2 * factor, position
            continue
        position += token
    nodes.append(float(maximum_frequency))
    return nodes
