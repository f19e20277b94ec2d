"""VideoVAE: a factorised (2-D per frame + 1-D over time) convolutional VAE, 8x space and 4x time.

Reads top to bottom: helpers, blocks, encoder, decoder, the model, size presets.

Design, and why:
- Per-frame 2-D convolutions do the spatial work, and time is mixed only by 1-D (k=3) convolutions and by folding
  pairs of frames into channels ("time to depth") at the smallest spatial size, where it is cheap. Every operation is
  local in time (GroupNorm runs per frame), so the same weights encode any length the geometry allows: train on short
  crops (8 frames), encode 2 s clips.
- A 2x2 space-to-depth stem (pixel unshuffle) shrinks the image before the first convolution; the CPU cost of a video
  AE is the full-resolution convolutions, and this removes them.
- Non-causal by default: T = m * time_stride frames -> m latent frames. `causal=True` makes every temporal op look only
  backwards and takes T = 1 + m * time_stride (the first frame is repeated time_stride - 1 times in front, so it gets a
  latent frame of its own; the decoder drops those frames again).
- KL bottleneck: the encoder outputs mean and log-variance; decode returns a linear output, clamped to [-1, 1] by
  `decode(z)` (not tanh, which cannot reach the saturated colours avworld draws).
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from avgen.autoencoders.base import AEGeometry, Autoencoder
from avgen.errors import InputError


# ----------------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------------
def frame_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm over (c, h, w) of ONE frame: statistics never cross frames, so the net stays local in time."""
    return nn.GroupNorm(math.gcd(8, channels), channels, eps=1e-6)


class TemporalConv(nn.Module):
    """1-D convolution over t at every pixel, zero-padded on both sides, or only on the left when causal."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, causal: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv3d(c_in, c_out, (kernel, 1, 1))
        self.pad = (kernel - 1, 0) if causal else ((kernel - 1) // 2, kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, 0, 0, *self.pad))  # (b, c, t + k - 1, h, w)
        return self.conv(x)  # (b, c', t, h, w)


# ----------------------------------------------------------------------------------------------------------------------
# blocks
# ----------------------------------------------------------------------------------------------------------------------
class ResBlock2d(nn.Module):
    """Pre-norm residual block of two 3x3 convolutions, applied to each frame on its own: x (b*t, c, h, w)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = frame_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = frame_norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (b*t, c_out, h, w)
        h = self.conv2(F.silu(self.norm2(h)))  # (b*t, c_out, h, w)
        return self.skip(x) + h


class SpaceTimeBlock(nn.Module):
    """A per-frame ResBlock2d followed by a residual temporal convolution: x (b, c, t, h, w) -> same shape."""

    def __init__(self, channels: int, causal: bool) -> None:
        super().__init__()
        self.space = ResBlock2d(channels, channels)
        self.norm = frame_norm(channels)
        self.time = TemporalConv(channels, channels, 3, causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        h = rearrange(x, "b c t h w -> (b t) c h w")
        h = self.space(h)  # (b*t, c, h, w)
        n = F.silu(self.norm(h))  # (b*t, c, h, w), per-frame statistics
        n = rearrange(n, "(b t) c h w -> b c t h w", b=b)
        return rearrange(h, "(b t) c h w -> b c t h w", b=b) + self.time(n)  # (b, c, t, h, w)


def time_to_depth(x: torch.Tensor, factor: int) -> torch.Tensor:
    return rearrange(x, "b c (t f) h w -> b (c f) t h w", f=factor)  # (b, c*f, t/f, h, w)


def depth_to_time(x: torch.Tensor, factor: int) -> torch.Tensor:
    return rearrange(x, "b (c f) t h w -> b c (t f) h w", f=factor)  # (b, c/f, t*f, h, w)


def per_frame(fn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D module to every frame of x (b, c, t, h, w)."""
    b = x.shape[0]
    y = fn(rearrange(x, "b c t h w -> (b t) c h w"))
    return rearrange(y, "(b t) c h w -> b c t h w", b=b)


# ----------------------------------------------------------------------------------------------------------------------
# encoder / decoder
# ----------------------------------------------------------------------------------------------------------------------
class Encoder(nn.Module):
    """(b, 3, t, h, w) -> (b, 2*c_z, t/ts, h/ss, w/ss): stem, per-frame levels, time folds, latent blocks."""

    def __init__(self, widths, blocks, latent_blocks, time_folds, latent_channels, causal, in_channels=3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels * 4, widths[0], 3, padding=1)
        levels = []
        for i, w in enumerate(widths):
            c_in = widths[max(i - 1, 0)]
            layers = [nn.Conv2d(c_in, w, 3, stride=2, padding=1)] if i else []
            layers += [ResBlock2d(w, w) for _ in range(blocks)]
            levels.append(nn.Sequential(*layers))
        self.levels = nn.ModuleList(levels)
        c = widths[-1]
        self.folds = nn.ModuleList(
            nn.ModuleList([nn.Conv3d(2 * c, c, 1), SpaceTimeBlock(c, causal)]) for _ in range(time_folds)
        )
        self.latent = nn.Sequential(*[SpaceTimeBlock(c, causal) for _ in range(latent_blocks)])
        self.norm_out = frame_norm(c)
        self.out = nn.Conv3d(c, 2 * latent_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        h = rearrange(x, "b c t h w -> (b t) c h w")
        h = self.stem(F.pixel_unshuffle(h, 2))  # (b*t, w0, h/2, w/2)
        for level in self.levels:
            h = level(h)  # (b*t, wi, h/2^(i+1), w/2^(i+1))
        h = rearrange(h, "(b t) c h w -> b c t h w", b=b)  # (b, c, t, h/ss, w/ss)
        for merge, block in self.folds:
            h = block(merge(time_to_depth(h, 2)))  # (b, c, t/2, h/ss, w/ss)
        h = self.latent(h)  # (b, c, t/ts, h/ss, w/ss)
        return self.out(F.silu(per_frame(self.norm_out, h)))  # (b, 2*c_z, t/ts, h/ss, w/ss)


class Decoder(nn.Module):
    """(b, c_z, m, h', w') -> (b, 3, m*ts, h'*ss, w'*ss): mirror of the encoder, nearest upsampling + conv."""

    def __init__(self, widths, blocks, latent_blocks, time_folds, latent_channels, causal, out_channels=3) -> None:
        super().__init__()
        c = widths[-1]
        self.inp = nn.Conv3d(latent_channels, c, 1)
        self.latent = nn.Sequential(*[SpaceTimeBlock(c, causal) for _ in range(latent_blocks)])
        self.unfolds = nn.ModuleList(
            nn.ModuleList([nn.Conv3d(c, 2 * c, 1), SpaceTimeBlock(c, causal)]) for _ in range(time_folds)
        )
        levels = []
        for i in reversed(range(len(widths))):
            layers: list[nn.Module] = [ResBlock2d(widths[i], widths[i]) for _ in range(blocks)]
            if i:
                layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(widths[i], widths[i - 1], 3, 1, 1)]
            levels.append(nn.Sequential(*layers))
        self.levels = nn.ModuleList(levels)
        self.norm_out = frame_norm(widths[0])
        self.out = nn.Conv2d(widths[0], out_channels * 4, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        h = self.latent(self.inp(z))  # (b, c, m, h', w')
        for split, block in self.unfolds:
            h = block(depth_to_time(split(h), 2))  # (b, c, 2m, h', w')
        h = rearrange(h, "b c t h w -> (b t) c h w")  # (b*t, c, h', w')
        for level in self.levels:
            h = level(h)  # (b*t, wi, ..., ...) growing 2x per level
        h = self.out(F.silu(self.norm_out(h)))  # (b*t, 12, h/2, w/2)
        x = F.pixel_shuffle(h, 2)  # (b*t, 3, h, w)
        return rearrange(x, "(b t) c h w -> b c t h w", b=b)


# ----------------------------------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------------------------------
class VideoVAE(Autoencoder):
    """Factorised convolutional video VAE. Geometry: input_rate=fps, time_stride, spatial_stride = 2 * 2^(levels-1).

    Args:
        latent_channels: channels of z (8 by default; the presets use 16: at 4x8x8 that is 48x fewer numbers than
            the RGB frames, which the tiny model needs to reach 30 dB on avworld).
        width, mults: channels per spatial level = width * mult; level 0 works at h/2 (after the 2x2 stem) and each
            further level halves h and w, so three levels give the 8x spatial stride.
        blocks: ResBlock2d per level; latent_blocks: SpaceTimeBlocks at the latent resolution.
        time_stride: a power of two (folds of 2 frames); fps: the input frame rate the geometry declares.
        causal: look only backwards in time; inputs of 1 + m*time_stride frames.
    """

    kind = "video_vae"
    modality = "video"
    variational = True

    def __init__(
        self,
        latent_channels: int = 8,
        width: int = 32,
        mults: tuple[int, ...] | list[int] = (1, 2, 2),
        blocks: int = 1,
        latent_blocks: int = 1,
        time_stride: int = 4,
        fps: int | str | Fraction = 16,
        causal: bool = False,
    ) -> None:
        super().__init__()
        mults = [int(m) for m in mults]
        widths = [int(width) * m for m in mults]
        folds = round(math.log2(time_stride)) if time_stride >= 1 else -1
        if folds < 0 or 2**folds != time_stride:
            raise InputError(f"VideoVAE time_stride must be a power of two (1, 2, 4, 8), got {time_stride}")
        if not widths or any(w < 1 for w in widths):
            raise InputError(f"VideoVAE width * mults must be positive channel counts, got {widths}")
        self.config = dict(latent_channels=latent_channels, width=width, mults=mults, blocks=blocks,
                           latent_blocks=latent_blocks, time_stride=time_stride, fps=str(Fraction(fps)),
                           causal=causal)  # fmt: skip
        self.geometry = AEGeometry(Fraction(fps), time_stride, 2 ** len(widths), latent_channels, causal, channels=3)
        self.encoder = Encoder(widths, blocks, latent_blocks, folds, latent_channels, causal)
        self.decoder = Decoder(widths, blocks, latent_blocks, folds, latent_channels, causal)
        self._init_stats(latent_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Zero the last conv of every residual branch (each block starts as identity: stable from step 0), and start
        the posterior with a small variance (logvar bias -6) so reconstructions are learnt before the noise matters."""
        for m in self.modules():
            if isinstance(m, ResBlock2d):
                nn.init.zeros_(m.conv2.weight), nn.init.zeros_(m.conv2.bias)
            if isinstance(m, SpaceTimeBlock):
                nn.init.zeros_(m.time.conv.weight), nn.init.zeros_(m.time.conv.bias)
        nn.init.constant_(self.encoder.out.bias[self.geometry.latent_channels :], -6.0)

    @classmethod
    def preset(cls, name: str, **overrides) -> VideoVAE:
        """Build a named size (`tiny` for CPU, `small` / `base` for GPU), with any kwarg overridden (None keeps the
        preset's value: the configs in avgen/conf/ae/ name a preset and restate nothing)."""
        if name not in VIDEO_PRESETS:
            raise InputError(f"unknown VideoVAE preset {name!r}; choose from {sorted(VIDEO_PRESETS)}")
        return cls(**{**VIDEO_PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}})

    def _pad_causal(self, x: torch.Tensor) -> torch.Tensor:
        """Causal: repeat the first frame ts-1 times in front, so 1 + m*ts frames become (m+1)*ts."""
        ts = self.geometry.time_stride
        if not self.geometry.causal or ts == 1:
            return x
        return torch.cat([x[:, :, :1].expand(-1, -1, ts - 1, -1, -1), x], dim=2)  # (b, 3, (m+1)*ts, h, w)

    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_input(x)
        h = self.encoder(self._pad_causal(x))  # (b, 2*c_z, m, h/ss, w/ss)
        mean, logvar = h.chunk(2, dim=1)  # (b, c_z, m, h/ss, w/ss) each
        return mean, logvar.clamp(-30.0, 20.0)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.decoder(z)  # (b, 3, m*ts, h, w)
        if self.geometry.causal:
            x = x[:, :, self.geometry.time_stride - 1 :]  # (b, 3, 1 + (m-1)*ts, h, w)
        return x


# ----------------------------------------------------------------------------------------------------------------------
# presets: tiny trains on 2 CPU cores; small / base are GPU sizes
# ----------------------------------------------------------------------------------------------------------------------
VIDEO_PRESETS: dict[str, dict] = {
    "tiny": dict(latent_channels=16, width=32, mults=[1, 2, 2], blocks=1, latent_blocks=1),
    "small": dict(latent_channels=16, width=64, mults=[1, 2, 4], blocks=2, latent_blocks=2),
    "base": dict(latent_channels=16, width=128, mults=[1, 2, 4], blocks=2, latent_blocks=4),
}
