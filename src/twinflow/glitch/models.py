"""Translation networks from auxiliary-channel Q-plots [B, K, S, S] to the strain Q-plot [B, 1, S, S].

- ``decoder-shallow`` / ``decoder-deep``: a stack of same-resolution 3x3 convolutions
  (Conv-BatchNorm-LeakyReLU), 3 or 6 blocks, then a 1x1 projection to one channel.
- ``unet``: an Encoder-Decoder with skip connections (U-Net-like): ``depth`` stride-2
  downsamplings doubling the width, then transposed-convolution upsamplings that concatenate
  the encoder features of the same scale.

Weights are initialised explicitly (DCGAN style, as Glitch Flow does): convolution weights
N(0, 0.02), normalisation weights N(1, 0.02), biases zero. The output is linear: targets are
min-max normalised energies that may exceed 1 on held-out data.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def init_weights(module: nn.Module) -> None:
    """Conv weights ~ N(0, 0.02), norm weights ~ N(1, 0.02), biases 0 (apply with ``model.apply``)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif (
        isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d))
        and module.weight is not None
    ):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)
    )


class Decoder(nn.Module):
    """Same-resolution convolution stack (``n_blocks`` blocks of ``width`` channels)."""

    def __init__(self, in_channels: int, width: int, n_blocks: int):
        super().__init__()
        layers = [_block(in_channels, width)] + [_block(width, width) for _ in range(n_blocks - 1)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, K, S, S] -> [B, 1, S, S]
        return self.head(self.body(x))


class EncoderDecoder(nn.Module):
    """U-Net-like Encoder-Decoder with ``depth`` scales."""

    def __init__(self, in_channels: int, width: int, depth: int):
        super().__init__()
        widths = [width * 2**i for i in range(depth + 1)]
        self.stem = _block(in_channels, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1),
                nn.BatchNorm2d(widths[i + 1]),
                nn.LeakyReLU(0.2),
                _block(widths[i + 1], widths[i + 1]),
            )
            for i in range(depth)
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 4, stride=2, padding=1)
            for i in reversed(range(depth))
        )
        self.merge = nn.ModuleList(
            _block(2 * widths[i], widths[i]) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, K, S, S] -> [B, 1, S, S]
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for up, merge in zip(self.up, self.merge):
            h = merge(torch.cat([up(h), skips.pop()], dim=1))
        return self.head(h)


def build_translation_model(settings: Mapping, in_channels: int) -> nn.Module:
    """Return the translation network named by ``settings['model']``, initialised."""
    kind = settings["model"]
    if kind == "unet":
        model = EncoderDecoder(in_channels, settings["width"], settings["depth"])
    else:
        model = Decoder(in_channels, settings["width"], 3 if kind == "decoder-shallow" else 6)
    model.apply(init_weights)
    return model
