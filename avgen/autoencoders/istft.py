"""IstftDecoder: audio latents -> a complex spectrogram -> waveform by the inverse STFT (the head of Vocos-style
vocoders), a drop-in for SEANet's decoder in SeanetAudioAE (`decoder="istft"`).

    z (b, c, m) --conv, res blocks--> (b, w, m) --transposed conv x up--> (b, w, m*up) --res blocks, 1x1-->
    (b, 2F, m*up) -> log-magnitude, phase (F = n_fft/2 + 1) -> istft(hop / up) -> (b, ch, m*hop)

Why: measured on the shipped tiny SEANet AE, a sustained sine above ~1 kHz came back as silence (0.3 amplitude in,
rms 0.003 out at 1.2-6 kHz; 200-800 Hz kept), which erased avworld's ~2.1 kHz glass pings and the formants of speech.
A transposed-convolution stack must learn to synthesise each oscillation sample by sample; here the network predicts
per frame how much of each frequency there is and at what phase, and the fixed inverse STFT does the synthesis, so a
tone is one bin's magnitude held across frames. The latent rate and width are unchanged (the DiT does not change).
Frames are `up` times the latent rate with n_fft = 4 frame hops (hann window, 75 % overlap).
"""

from __future__ import annotations

import torch
from encodec.modules import SConv1d, SConvTranspose1d
from encodec.modules.seanet import SEANetResnetBlock
from torch import nn


def _res_blocks(width: int, n: int) -> list[nn.Module]:
    """n SEANet residual blocks with dilations 1, 3, 9, ... (a receptive field of several frames)."""
    return [SEANetResnetBlock(width, kernel_sizes=[3, 1], dilations=[3**i, 1]) for i in range(n)]


class IstftDecoder(nn.Module):
    """Latents at hop `hop` -> waveform through an inverse STFT with frame hop hop // up.

    Args:
        latent_channels: channels of z. width: channels of the convolutional body. hop: samples per latent.
        up: STFT frames per latent (hop must divide by it). channels: output audio channels. blocks: residual blocks
        before and after the upsampling.
    """

    def __init__(self, latent_channels: int, width: int, hop: int, up: int = 4, channels: int = 1,
                 blocks: int = 2) -> None:  # fmt: skip
        super().__init__()
        if hop % up:
            raise ValueError(f"IstftDecoder: hop {hop} must be a multiple of up={up}")
        self.hop, self.frame_hop, self.n_fft, self.channels = hop, hop // up, 4 * (hop // up), channels
        self.bins = self.n_fft // 2 + 1
        self.body = nn.Sequential(
            SConv1d(latent_channels, width, 7, norm="weight_norm"),
            *_res_blocks(width, blocks),
            nn.ELU(),
            SConvTranspose1d(width, width, 2 * up, stride=up, norm="weight_norm"),
            *_res_blocks(width, blocks),
            nn.ELU(),
            SConv1d(width, 2 * self.bins * channels, 1),
        )
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, _, m = z.shape
        h = self.body(z)  # (b, 2*F*ch, m*up)
        h = h.reshape(b * self.channels, 2, self.bins, h.shape[-1])  # (b*ch, 2, F, frames)
        mag = torch.exp(h[:, 0].clamp(max=8.0))  # (b*ch, F, frames); the clamp keeps exp finite early in training
        spec = torch.polar(mag, h[:, 1])  # complex (b*ch, F, frames)
        x = torch.istft(spec, self.n_fft, self.frame_hop, window=self.window, center=True, length=m * self.hop)
        return x.reshape(b, self.channels, m * self.hop)  # (b, ch, m*hop)
