"""Dingo's earlier embedding, the baseline of Dingo-T1's comparison: an SVD projection of the
whitened strain followed by a residual MLP (Dax et al., PRL 127, 241103 (2021); Dingo's
``LinearProjectionRB`` + ``DenseResidualNet``).

Per detector, the whitened strain on the multibanded grid (Re and Im of every bin of the
trained band) and the PSD feature go through a linear layer whose strain part starts as the
projection onto the first ``basis-size`` right-singular vectors of whitened, noise-free
training waveforms (one basis shared by the detectors, as Dingo does); the layer is trained
with the rest, and the basis itself is kept as a buffer, so it travels in the checkpoint's
state dict (plain tensors, loadable with ``weights_only=True``). The per-detector
coefficients, concatenated, feed a residual MLP whose output is the flow's context.

**No token masks.** The input is a fixed vector: every detector and every token of the band
the model was trained on. The embedding takes the same token batches as the transformer and
scatters them back onto that fixed grid; a token the batch lacks (a dropped detector, a
raised f_min, a notch) is **zero-filled**, and a token outside the trained band is ignored.
Zero-filling is what Dingo's baseline effectively does with a band or detector it was not
trained for, and it is wrong: the network never saw zeros there, so its posterior is not to
be trusted. The model therefore warns whenever it zero-fills (:class:`ZeroFilledInputWarning`),
training draws no masks for it, and a different analysis setting needs a model trained for
that setting (``snakemake gw_compare`` measures both).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from twinflow.core.settings import ConfigError
from twinflow.gw.dataset.tokens import TOKEN_CHANNELS
from twinflow.gw.domain import BINS_PER_TOKEN


class ZeroFilledInputWarning(UserWarning):
    """The SVD + MLP embedding was given fewer tokens than it was trained on and zero-filled them."""


def strain_grid(
    batch: Mapping[str, Tensor], token_lower_edges: Tensor, n_detectors: int
) -> tuple[Tensor, Tensor]:
    """Return the batch's tokens on the fixed grid [B, D, 3, T·16] and the missing count [B].

    ``token_lower_edges`` [T] are the lower edges [Hz] of the trained band's tokens. Channels
    are Re and Im of the whitened strain and the PSD feature; a token the batch lacks is zero
    on the grid, a token whose lower edge is not one of ``token_lower_edges`` is left out.
    """
    tokens, det = batch["tokens"], batch["detector_index"]
    if tokens.dim() == 2:  # one event [N, 48]
        return tuple(
            x[0]
            for x in strain_grid(
                {k: v.unsqueeze(0) for k, v in batch.items() if isinstance(v, Tensor)},
                token_lower_edges,
                n_detectors,
            )
        )
    B, N, C = tokens.shape
    T = len(token_lower_edges)
    padding = batch.get("padding_mask")
    kept = (
        torch.ones(B, N, dtype=torch.bool, device=tokens.device) if padding is None else ~padding
    )
    lower = batch["token_frequency"][..., 0].to(token_lower_edges.dtype)
    position = torch.searchsorted(token_lower_edges, lower).clamp(max=T - 1)  # [B, N]
    # A token's lower edge is exactly one of the grid's (same domain): 1 µHz absorbs rounding.
    found = (token_lower_edges[position] - lower).abs() < 1e-6
    valid = kept & found & (det >= 0) & (det < n_detectors)
    slot = torch.where(valid, det * T + position, torch.full_like(position, n_detectors * T))
    # [B, N, 48] scattered into [B, D·T + 1, 48]; the last slot collects the unused tokens.
    grid = tokens.new_zeros(B, n_detectors * T + 1, C)
    grid.scatter_(1, slot[..., None].expand(B, N, C), tokens)
    # [B, D·T, 3·16] -> [B, D, T, 3, 16] -> [B, D, 3, T, 16] -> [B, D, 3, T·16]
    grid = grid[:, :-1].reshape(B, n_detectors, T, TOKEN_CHANNELS, BINS_PER_TOKEN)
    grid = grid.permute(0, 1, 3, 2, 4).reshape(B, n_detectors, TOKEN_CHANNELS, T * BINS_PER_TOKEN)
    missing = n_detectors * T - valid.sum(dim=1)
    return grid, missing


def svd_basis(waveforms: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Return the first ``size`` right-singular vectors V [n, size] and all singular values.

    ``waveforms`` [M, n] complex: whitened, noise-free strain, one row per waveform and
    detector. ``V`` is orthonormal (V^H V = 1) and ``V V^H h`` is the best rank-``size``
    approximation of the rows in the least-squares sense.
    """
    if size > min(waveforms.shape):
        raise ConfigError(
            f"model.svd-mlp.basis-size = {size} exceeds what {waveforms.shape[0]} waveform rows "
            f"of {waveforms.shape[1]} bins can span: use at most {min(waveforms.shape)} or more "
            "model.svd-mlp.training-waveforms"
        )
    _, s, vh = torch.linalg.svd(waveforms.to(torch.complex128), full_matrices=False)
    return vh[:size].conj().T.contiguous(), s


class ResidualBlock(nn.Module):
    """``h + W2 GELU(W1 GELU(LN h))``, Dingo's ``DenseResidualNet`` block with LayerNorm."""

    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.fc2(self.drop(F.gelu(self.fc1(F.gelu(self.norm(h))))))


class SVDResidualEmbedding(nn.Module):
    """Whitened strain of every detector -> SVD projection -> residual MLP -> context.

    Arguments:
        n_detectors: detectors, in the order of the batches' ``detector_index``.
        token_lower_edges: lower edges [Hz] of the tokens of the trained band (per detector).
        arch: the ``svd-mlp`` block of the model settings: ``basis-size`` (K), ``hidden``,
            ``blocks``, ``context``, ``dropout``.

    Call :meth:`set_basis` with the SVD basis before training; a model loaded from a
    checkpoint gets it back from the state dict.
    """

    def __init__(self, n_detectors: int, token_lower_edges: Sequence[float], arch: Mapping):
        super().__init__()
        self.n_detectors = n_detectors
        k = int(arch["basis-size"])
        self.basis_size = k
        self.register_buffer(
            "token_lower_edges", torch.tensor(list(token_lower_edges), dtype=torch.float64)
        )
        n_bins = len(token_lower_edges) * BINS_PER_TOKEN
        self.n_bins = n_bins
        # The basis V [n_bins, K] (complex, stored as Re and Im): a training artefact.
        self.register_buffer("basis_real", torch.zeros(n_bins, k))
        self.register_buffer("basis_imag", torch.zeros(n_bins, k))
        # Per detector: [3, n_bins] -> 2K numbers (Re and Im of the SVD coefficients).
        self.projection = nn.Parameter(torch.zeros(n_detectors, TOKEN_CHANNELS, n_bins, 2 * k))
        self.projection_bias = nn.Parameter(torch.zeros(n_detectors, 2 * k))
        hidden = int(arch["hidden"])
        self.inp = nn.Linear(n_detectors * 2 * k, hidden)
        self.blocks = nn.ModuleList(
            ResidualBlock(hidden, float(arch["dropout"])) for _ in range(int(arch["blocks"]))
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, int(arch["context"])))

    @torch.no_grad()
    def set_basis(self, basis: Tensor) -> None:
        """Store the complex basis V [n_bins, K] and start the projection at c = V^H h.

        With h = a + ib and W = V^H = W_r + i W_i: Re c = W_r a - W_i b, Im c = W_r b + W_i a.
        The PSD-feature channel starts with zero weights (the layer learns what it needs).
        """
        if basis.shape != (self.n_bins, self.basis_size):
            raise ConfigError(
                f"SVD basis of shape {tuple(basis.shape)}: the embedding needs "
                f"({self.n_bins}, {self.basis_size}) (bins of the trained band, basis-size)"
            )
        self.basis_real.copy_(basis.real.float())
        self.basis_imag.copy_(basis.imag.float())
        k = self.basis_size
        w_r, w_i = basis.real.T.float(), -basis.imag.T.float()  # V^H = conj(V)^T: [K, n] each
        weight = torch.zeros_like(self.projection[0])  # [3, n, 2K]: channel, bin, output
        weight[0, :, :k], weight[1, :, :k] = w_r.T, -w_i.T  # Re c from (a, b)
        weight[0, :, k:], weight[1, :, k:] = w_i.T, w_r.T  # Im c from (a, b)
        self.projection.copy_(weight.expand_as(self.projection))
        self.projection_bias.zero_()

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Return the context [B, context] of a token batch (zero-filling missing tokens)."""
        grid, missing = strain_grid(batch, self.token_lower_edges, self.n_detectors)
        if not self.training and bool((missing > 0).any()):
            warnings.warn(
                f"svd-mlp embedding: {int(missing.max())} of the {self.n_detectors * len(self.token_lower_edges)} "
                "tokens it was trained on are missing (masked detectors, band or notches) and are "
                "zero-filled; this embedding cannot take token masks, so its posterior for this "
                "analysis setting is not trustworthy: train an svd-mlp model for it",
                ZeroFilledInputWarning,
                stacklevel=2,
            )
        # [B, D, 3, n] x [D, 3, n, 2K] -> [B, D, 2K] -> [B, D·2K]
        coefficients = torch.einsum("bdcn,dcnk->bdk", grid, self.projection.to(grid.dtype))
        h = (coefficients + self.projection_bias).flatten(1)
        h = self.inp(h)
        for block in self.blocks:
            h = block(h)
        return self.out(h)


def waveform_matrix(
    batches: Iterable[Mapping[str, Tensor]], token_lower_edges: Tensor, n_detectors: int
) -> Tensor:
    """Return the whitened strain of noise-free batches as rows [M = B·D, n_bins] (complex)."""
    rows = []
    for batch in batches:
        grid, missing = strain_grid(batch, token_lower_edges, n_detectors)
        if bool((missing > 0).any()):
            raise ConfigError(
                "the SVD basis needs unmasked batches (every detector and token of the band)"
            )
        rows.append(torch.complex(grid[:, :, 0].double(), grid[:, :, 1].double()).flatten(0, 1))
    return torch.cat(rows)
