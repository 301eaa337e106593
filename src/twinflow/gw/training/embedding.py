"""The transformer embedding of Dingo-T1: a residual-MLP tokenizer over 16-bin tokens, a pre-LN
transformer encoder and a summary token, producing the context of the normalizing flow.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from twinflow.gw.dataset.tokens import TOKEN_FEATURES


class ConditionedResidualBlock(nn.Module):
    """``h + W2 GELU(W1 [LN(h), c])``: a residual MLP block that sees a conditioning vector."""

    def __init__(self, hidden: int, condition: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden + condition, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        return h + self.fc2(F.gelu(self.fc1(torch.cat([self.norm(h), c], dim=-1))))


class Tokenizer(nn.Module):
    """Maps each token's 48 features to ``d_model``, conditioned on its detector and band.

    The condition is a one-hot detector code and the token's lower and upper frequency edges
    divided by ``frequency_scale`` (the top of the analysis band), so a token knows where in
    the spectrum and in which interferometer it sits; the same weights serve every token.
    """

    def __init__(
        self, n_detectors: int, d_model: int, hidden: int, blocks: int, frequency_scale: float
    ):
        super().__init__()
        self.n_detectors = n_detectors
        self.frequency_scale = frequency_scale
        n_condition = n_detectors + 2
        self.inp = nn.Linear(TOKEN_FEATURES + n_condition, hidden)
        self.blocks = nn.ModuleList(
            ConditionedResidualBlock(hidden, n_condition) for _ in range(blocks)
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, d_model))

    def forward(self, tokens: Tensor, detector_index: Tensor, token_frequency: Tensor) -> Tensor:
        # [B, N] + [B, N, 2] -> condition [B, N, D + 2]
        condition = torch.cat(
            [
                F.one_hot(detector_index, self.n_detectors).to(tokens.dtype),
                token_frequency.to(tokens.dtype) / self.frequency_scale,
            ],
            dim=-1,
        )
        h = F.gelu(self.inp(torch.cat([tokens, condition], dim=-1)))
        for block in self.blocks:
            h = block(h, condition)
        return self.out(h)


class EncoderLayer(nn.Module):
    """Pre-LayerNorm transformer layer: ``x + MHA(LN x)``, then ``x + FF(LN x)``."""

    def __init__(self, d_model: int, heads: int, feed_forward: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, feed_forward),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(feed_forward, d_model),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, attend: Tensor) -> Tensor:
        """``x`` [B, L, d]; ``attend`` [B, 1, 1, L] bool, True for keys that may be attended to."""
        b, length, d = x.shape
        # [B, L, 3d] -> 3 × [B, heads, L, d / heads]
        q, k, v = (
            self.qkv(self.norm1(x))
            .view(b, length, 3, self.heads, d // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attend, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, length, d)))
        return x + self.drop(self.ff(self.norm2(x)))


class TransformerEncoder(nn.Module):
    """Tokenizer + summary token + pre-LN encoder layers -> context [B, d_model]."""

    def __init__(self, n_detectors: int, frequency_scale: float, arch: Mapping):
        super().__init__()
        tr, tok = arch["transformer"], arch["tokenizer"]
        d = tr["d-model"]
        self.tokenizer = Tokenizer(n_detectors, d, tok["hidden"], tok["blocks"], frequency_scale)
        self.summary = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.layers = nn.ModuleList(
            EncoderLayer(d, tr["heads"], tr["feed-forward"], tr["dropout"])
            for _ in range(tr["layers"])
        )
        self.norm = nn.LayerNorm(d)

    def forward(
        self,
        tokens: Tensor,
        detector_index: Tensor,
        token_frequency: Tensor,
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        b, n, _ = tokens.shape
        if padding_mask is None:
            padding_mask = torch.zeros(b, n, dtype=torch.bool, device=tokens.device)
        # Kept tokens sit at the front of each row: cut the columns no row keeps.
        n_kept = int((~padding_mask).sum(dim=1).max().item()) if n else 0
        tokens, detector_index = tokens[:, :n_kept], detector_index[:, :n_kept]
        token_frequency, padding_mask = token_frequency[:, :n_kept], padding_mask[:, :n_kept]
        x = self.tokenizer(tokens, detector_index, token_frequency)  # [B, N, d]
        x = torch.cat([self.summary.expand(b, -1, -1).to(x.dtype), x], dim=1)  # [B, 1 + N, d]
        keep = torch.cat(
            [torch.ones(b, 1, dtype=torch.bool, device=x.device), ~padding_mask], dim=1
        )
        attend = keep[:, None, None, :]  # [B, 1, 1, 1 + N]: dropped tokens are never keys
        for layer in self.layers:
            x = layer(x, attend)
        return self.norm(x[:, 0])
