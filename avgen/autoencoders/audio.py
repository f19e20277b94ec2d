"""SeanetAudioAE: the `encodec` package's SEANet encoder/decoder as a continuous (KL) audio autoencoder.

    x (b, ch, n) in [-1, 1]  ->  z (b, c, n / hop)  ->  x_hat (b, ch, n)

Why these defaults:
- hop = prod(ratios) = 400 at 16 kHz -> 40 latents per second, so one 4 Hz video latent frame spans exactly 10 audio
  latents (the token interleave needs a whole number) and one latent covers 25 ms: an onset is placed to within a
  latent by the grid, and the decoder's transposed convolutions resolve it further (the onset test asks for 10 ms).
- 32 latent channels: 400 samples -> 32 numbers is 12.5x compression, about what EnCodec's 24 kHz encoder keeps
  (320 -> 128 before quantising, 2.5x) scaled for a 16 kHz, narrow-band world; 16 channels lost transient detail in our
  short runs, 64 doubles the DiT's audio token width for little gain.
- No quantizer: the encoder outputs 2 * latent_channels (mean, logvar), as in a latent-diffusion VAE.
- LSTMs off by default (lstm=0): convolutions only are faster on CPU and keep the model local in time.
- Linear output; `decode(z)` clamps to [-1, 1] (see base.Autoencoder).

Lengths: the geometry takes n = m * hop. SEANet pads each strided convolution so its last window is full; for such n
that padding is zero, the encoder gives exactly m latents and the decoder exactly m * hop samples. We still trim / pad
to m and m * hop so a different ratios/kernel choice can never change the contract (tested).
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import torch
import torch.nn.functional as F
from encodec.modules import SEANetDecoder, SEANetEncoder

from avgen.autoencoders.base import AEGeometry, Autoencoder
from avgen.autoencoders.istft import IstftDecoder
from avgen.errors import InputError

AUDIO_PRESETS: dict[str, dict] = {
    "tiny": dict(n_filters=16, latent_channels=32, ratios=[5, 5, 4, 4]),
    "small": dict(n_filters=32, latent_channels=32, ratios=[8, 5, 5, 2]),
    "base": dict(n_filters=64, latent_channels=64, ratios=[8, 5, 5, 2], lstm=2),
    "tiny_istft": dict(n_filters=16, latent_channels=32, ratios=[5, 5, 4, 4], decoder="istft"),
}


def fit_length(x: torch.Tensor, n: int) -> torch.Tensor:
    """Trim or zero-pad the last dim of x to n."""
    return x[..., :n] if x.shape[-1] >= n else F.pad(x, (0, n - x.shape[-1]))


class SeanetAudioAE(Autoencoder):
    """SEANet KL autoencoder.

    Args:
        latent_channels: channels of z.
        n_filters: SEANet base width (channels double at each of the len(ratios) downsamplings).
        ratios: upsampling ratios of the decoder, in order (the encoder uses them reversed); hop = their product.
        sample_rate: input rate the geometry declares. channels: 1 (mono) or 2 (stereo).
        n_residual_layers, lstm: SEANet depth options.
        decoder: "seanet" (transposed convolutions to the waveform) or "istft" (avgen.autoencoders.istft: a complex
            spectrogram and the inverse STFT; keeps tones above ~1 kHz that the tiny SEANet decoder loses).
    """

    kind = "seanet_audio"
    modality = "audio"
    variational = True

    def __init__(
        self,
        latent_channels: int = 32,
        n_filters: int = 16,
        ratios: tuple[int, ...] | list[int] = (5, 5, 4, 4),
        sample_rate: int = 16000,
        channels: int = 1,
        n_residual_layers: int = 1,
        lstm: int = 0,
        decoder: str = "seanet",
    ) -> None:
        super().__init__()
        ratios = [int(r) for r in ratios]
        if channels not in (1, 2):
            raise InputError(f"SeanetAudioAE channels must be 1 (mono) or 2 (stereo), got {channels}")
        if not ratios or any(r < 1 for r in ratios):
            raise InputError(f"SeanetAudioAE ratios must be positive integers, got {ratios}")
        if decoder not in ("seanet", "istft"):
            raise InputError(f"SeanetAudioAE decoder must be 'seanet' or 'istft', got {decoder!r}")
        self.config = dict(latent_channels=latent_channels, n_filters=n_filters, ratios=ratios, sample_rate=sample_rate,
                           channels=channels, n_residual_layers=n_residual_layers, lstm=lstm)  # fmt: skip
        if decoder != "seanet":  # configs of SEANet-decoder AEs stay as they were (their hashes too)
            self.config["decoder"] = decoder
        self.geometry = AEGeometry(Fraction(sample_rate), math.prod(ratios), 1, latent_channels, False, channels)
        common = dict(channels=channels, n_filters=n_filters, ratios=ratios, n_residual_layers=n_residual_layers,
                      lstm=lstm)  # fmt: skip
        with warnings.catch_warnings():  # encodec builds weight_norm with the older torch API
            warnings.simplefilter("ignore", FutureWarning)
            self.encoder = SEANetEncoder(dimension=2 * latent_channels, **common)
            if decoder == "istft":
                width = n_filters * 2 ** len(ratios)  # SEANet's width at the latent rate
                self.decoder = IstftDecoder(latent_channels, width, math.prod(ratios), channels=channels)
            else:
                self.decoder = SEANetDecoder(dimension=latent_channels, **common)
        self._init_stats(latent_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Start with a small posterior variance (logvar bias -6): reconstructions are learnt before noise matters."""
        last = self.encoder.model[-1].conv.conv  # the final SConv1d's Conv1d (weight-normed)
        with torch.no_grad():
            last.bias[self.geometry.latent_channels :] = -6.0

    @classmethod
    def preset(cls, name: str, **overrides) -> SeanetAudioAE:
        """Build a named size (`tiny` for CPU, `small` / `base` for GPU), with any kwarg overridden (None keeps the
        preset's value: the configs in avgen/conf/ae/ name a preset and restate nothing)."""
        if name not in AUDIO_PRESETS:
            raise InputError(f"unknown SeanetAudioAE preset {name!r}; choose from {sorted(AUDIO_PRESETS)}")
        return cls(**{**AUDIO_PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}})

    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_input(x)
        m = self.geometry.latent_length(x.shape[-1])
        h = fit_length(self.encoder(x), m)  # (b, 2c, m)
        mean, logvar = h.chunk(2, dim=1)  # (b, c, m) each
        return mean, logvar.clamp(-30.0, 20.0)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        n = self.geometry.input_length(z.shape[-1])
        return fit_length(self.decoder(z), n)  # (b, ch, m * hop)
