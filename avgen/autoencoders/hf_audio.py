"""Published audio codecs behind our interface: transformers' EnCodec and DAC (continuous latents) and diffusers'
Oobleck VAE (Stable Audio), each built from its own config and filled with weights from a LOCAL directory.

    x (b, c, n) in [-1, 1] at config.sampling_rate -> z (b, latent_channels, n / hop) -> x_hat (b, c, n)

Continuous latents, not codes. EnCodec and DAC are trained as quantised codecs: encoder -> residual vector quantiser
-> decoder. Here `encode` returns the encoder's output BEFORE the quantiser and `decode` feeds a latent straight to
the decoder, skipping the quantiser. The decoder was trained on quantised inputs (all codebooks at most, fewer under
quantiser dropout), so decoding the unquantised latent is close to the codec's highest-bitrate reconstruction but not
the quality the codec was measured at, and a generated latent off the encoder's manifold has no codebook to snap to.
Oobleck is a VAE: `encode_dist` is its posterior (mean, log-variance), decoded as diffusers does.

Geometry comes from the config (sampling rate, hop = product of the strides, latent channels, mono/stereo); the
length rule is avgen's non-causal one, n = m * hop (m >= 1): these nets map n = m * hop samples to exactly m latents
and back (measured in tests/test_hf_audio.py; the codecs' "causal" convolutions are a padding choice, not the
one-frame-first rule of AEGeometry.causal). Other lengths are refused naming the valid ones, never padded.

Latent statistics: none are published, so latent_mean = 0 and latent_std = 1 until measured
(`ae.set_latent_stats(*ae.measure_latent_stats(batches))`, then `ae.save(dir)`); DAC's 1024-channel encoder output in
particular is far from unit scale.

    ae = HFDac.from_pretrained("weights/dac_16khz")                 # a transformers save_pretrained directory
    ae = DiffusersOobleck.from_pretrained("weights/stable-audio/vae")  # a diffusers one (needs avgen[vae])
    avgen.autoencoders.load("weights/dac_16khz")                      # the same, recognised by its config.json
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from pathlib import Path

import torch
from torch import nn

from avgen.autoencoders.base import AEGeometry, Autoencoder
from avgen.errors import InputError, MissingFileError


def _hf_dir(directory: str | Path, what: str) -> Path:
    d = Path(directory)
    if not (d / "config.json").is_file():
        raise MissingFileError(f"{d} is not a {what} directory: it has no config.json (save_pretrained writes one)")
    return d


def _portable(config: dict) -> dict:
    """A config as we store it: without the machine-specific `_name_or_path` and diffusers' private keys."""
    return {k: v for k, v in config.items() if not k.startswith("_")}


class _HFCodec(Autoencoder):
    """EnCodec and DAC: a transformers model of which we keep the encoder and the decoder (the quantiser is unused).

    `config` is the transformers config as a dict (`model.config.to_dict()`): the architecture is built from it, with
    random weights that `from_pretrained` (HF weights) or avgen's `load` (our safetensors) replace.
    """

    modality = "audio"
    variational = False
    model_type = ""

    def __init__(self, config: dict, model: nn.Module | None = None) -> None:
        """`model`: an already built transformers model to wrap (from_pretrained); None: build from `config`."""
        super().__init__()
        if model is None:
            model = self._build(config)
        self.encoder, self.decoder = model.encoder.float(), model.decoder.float()
        self.config = {"config": _portable(model.config.to_dict())}
        self.geometry = self._geometry(model.config)
        self._init_stats(self.geometry.latent_channels)

    @classmethod
    def _classes(cls) -> tuple[type, type]:
        raise NotImplementedError

    @classmethod
    def _build(cls, config: dict) -> nn.Module:
        config_cls, model_cls = cls._classes()
        return model_cls(config_cls.from_dict(dict(config)))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> _HFCodec:
        """The codec saved in a transformers directory (config.json model_type = cls.model_type, safetensors)."""
        from transformers.utils import logging as hf_logging

        d = _hf_dir(directory, f"transformers {cls.model_type}")
        _, model_cls = cls._classes()
        hf_logging.disable_progress_bar()  # as the text encoder does: no bar per load in logs
        try:
            model = model_cls.from_pretrained(str(d), local_files_only=True)
        except (OSError, ValueError) as e:
            raise InputError(f"{d}: not a transformers {cls.model_type} model ({str(e).splitlines()[0]})") from e
        ae = cls(model.config.to_dict(), model=model).eval()
        ae.source_dir = d.resolve()
        return ae

    def _geometry(self, cfg) -> AEGeometry:
        raise NotImplementedError

    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        self.check_input(x)
        return self.encoder(x), None  # (b, c, n / hop): the pre-quantiser latent

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (b, channels, m * hop)


class HFEncodec(_HFCodec):
    """transformers' `EncodecModel` (24/32/48 kHz checkpoints): z = encoder(x), 128 channels at sampling_rate / hop.

    Two parts of the codec's own `encode` are not applied, because their output is side information a generated
    latent does not carry: the 48 kHz model's RMS normalisation (`normalize=True`: each 1 s chunk divided by its
    loudness, the decoder's output multiplied back) and its chunking (`chunk_length_s`, overlap-added): the whole clip
    is one segment, as for the 24 kHz model. The 48 kHz encoder therefore sees audio at its own level, not unit
    loudness, which it was not trained on: expect lower quality there than the codec's own 48 kHz path.
    """

    kind = "hf_encodec"
    model_type = "encodec"

    @classmethod
    def _classes(cls) -> tuple[type, type]:
        from transformers import EncodecConfig, EncodecModel

        return EncodecConfig, EncodecModel

    def _geometry(self, cfg) -> AEGeometry:
        hop = math.prod(cfg.upsampling_ratios)
        return AEGeometry(
            Fraction(cfg.sampling_rate), hop, 1, cfg.hidden_size, causal=False, channels=cfg.audio_channels
        )


class HFDac(_HFCodec):
    """transformers' `DacModel` (16/24/44 kHz, mono): z = encoder(x), hidden_size channels (1024 for the published
    ones) at sampling_rate / hop. The quantiser's 8-dim projections are not used: the latent is the encoder output.

    With an odd stride (5 in the 16 and 24 kHz configs) the transposed convolutions return a few samples fewer than
    m * hop (8 for strides 2, 4, 5, 8); the decoder's last sample is repeated to fill the clip (1/3 ms at 24 kHz).
    """

    kind = "hf_dac"
    model_type = "dac"

    @classmethod
    def _classes(cls) -> tuple[type, type]:
        from transformers import DacConfig, DacModel

        return DacConfig, DacModel

    def _geometry(self, cfg) -> AEGeometry:
        hop = math.prod(cfg.downsampling_ratios)
        return AEGeometry(Fraction(cfg.sampling_rate), hop, 1, cfg.hidden_size, causal=False, channels=1)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.decoder(z)  # (b, 1, m * hop - k), k = 0 for even strides
        short = z.shape[-1] * self.geometry.time_stride - x.shape[-1]
        return nn.functional.pad(x, (0, short), mode="replicate") if short > 0 else x[..., : x.shape[-1] + short]


def _quiet(build):
    """`build()` without torch's FutureWarning about the old weight_norm that diffusers' Oobleck still uses."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return build()


def _diffusers_oobleck() -> type:
    from avgen.autoencoders.diffusers_video import require_diffusers  # one message naming the extra

    return require_diffusers().AutoencoderOobleck


class DiffusersOobleck(Autoencoder):
    """diffusers' `AutoencoderOobleck` (Stable Audio Open's VAE: 44.1 kHz stereo, hop 2048, 64 channels, 21.53 Hz).

    `encode_dist` returns its posterior's mean and log-variance (std = softplus(scale) + 1e-4, as diffusers computes
    it); `decode` is its decoder (no tanh: the base class clamps to [-1, 1]). Tiling (diffusers' `enable_tiling`) is
    not used: a clip is encoded in one pass.
    """

    modality = "audio"
    variational = True
    kind = "diffusers_oobleck"
    class_name = "AutoencoderOobleck"

    def __init__(self, config: dict, model: nn.Module | None = None) -> None:
        """`config`: diffusers' config of the VAE (its __init__ arguments); `model`: an already built one to wrap."""
        super().__init__()
        if model is None:
            model = _quiet(lambda: _diffusers_oobleck().from_config(dict(config)))
        cfg = model.config
        if cfg.encoder_hidden_size != 2 * cfg.decoder_input_channels:
            raise InputError(f"Oobleck config: encoder_hidden_size={cfg.encoder_hidden_size} must be twice "
                             f"decoder_input_channels={cfg.decoder_input_channels} (mean and scale)")  # fmt: skip
        self.encoder, self.decoder = model.encoder.float(), model.decoder.float()
        self.config = {"config": _portable(dict(cfg))}
        hop = math.prod(cfg.downsampling_ratios)
        self.geometry = AEGeometry(Fraction(cfg.sampling_rate), hop, 1, cfg.decoder_input_channels, causal=False,
                                   channels=cfg.audio_channels)  # fmt: skip
        self._init_stats(self.geometry.latent_channels)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> DiffusersOobleck:
        """The VAE in a diffusers directory (config.json _class_name AutoencoderOobleck, e.g. a pipeline's vae/)."""
        d = _hf_dir(directory, "diffusers AutoencoderOobleck")
        try:
            model = _quiet(lambda: _diffusers_oobleck().from_pretrained(  # without accelerate, low_cpu_mem_usage=True
                str(d), local_files_only=True, low_cpu_mem_usage=False))  # only warns and falls back  # fmt: skip
        except (OSError, ValueError) as e:
            raise InputError(f"{d}: not a diffusers AutoencoderOobleck ({str(e).splitlines()[0]})") from e
        ae = cls(dict(model.config), model=model).eval()
        ae.source_dir = d.resolve()
        return ae

    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from diffusers.models.autoencoders.autoencoder_oobleck import OobleckDiagonalGaussianDistribution

        self.check_input(x)
        posterior = OobleckDiagonalGaussianDistribution(self.encoder(x))  # parameters (b, 2 * c, n / hop)
        return posterior.mean, posterior.logvar  # (b, c, n / hop) each

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (b, channels, m * hop)
