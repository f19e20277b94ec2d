"""Adapter for Meta's EnCodec 24 kHz: its pre-quantizer continuous latents (75 Hz, 128 channels) behind our interface.

The weights are Meta's published checkpoint `encodec_24khz-d7cc33bc.th`, read from a local file (no download:
put the file somewhere and pass its path). The 24 kHz model is causal, mono, un-normalised (normalize=False) and
encodes the whole signal as one segment, so encode/decode here are exactly its encoder and decoder.

    x (b, 1, n) at 24 kHz -> z (b, 128, n / 320) -> x_hat (b, 1, n)
"""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path

import torch

from avgen.autoencoders.base import AEGeometry, Autoencoder
from avgen.errors import InputError, MissingFileError

CHECKPOINT_NAME = "encodec_24khz-d7cc33bc.th"


class EncodecAdapter(Autoencoder):
    modality = "audio"
    kind = "encodec24k"
    variational = False

    def __init__(self, checkpoint: str | None = None, load_weights: bool = True) -> None:
        """`checkpoint`: path to encodec_24khz-d7cc33bc.th (or a state dict file in the same format).

        load_weights=False builds the architecture only (used when weights come from our own safetensors).
        """
        super().__init__()
        from encodec import EncodecModel

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = EncodecModel.encodec_model_24khz(pretrained=False)
        self.encoder, self.decoder = model.encoder, model.decoder
        self.config = {"checkpoint": None if checkpoint is None else str(checkpoint), "load_weights": False}
        self.geometry = AEGeometry(Fraction(24000), 320, 1, 128, causal=False, channels=1)
        self._init_stats(128)
        if load_weights:
            if checkpoint is None:
                raise MissingFileError(
                    f"EncodecAdapter needs Meta's EnCodec 24 kHz weights: download {CHECKPOINT_NAME} once and pass "
                    f"audio_ae.checkpoint=/path/to/{CHECKPOINT_NAME} (avgen never downloads at run time)"
                )
            self.load_checkpoint(checkpoint)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> EncodecAdapter:
        return cls(checkpoint=str(path))

    def load_checkpoint(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(
                f"EnCodec checkpoint not found at {path}: expected Meta's {CHECKPOINT_NAME} "
                f"(put it there or pass its path as audio_ae.checkpoint=...)"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        enc = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
        dec = {k[len("decoder.") :]: v for k, v in state.items() if k.startswith("decoder.")}
        if not enc or not dec:
            raise InputError(f"{path}: not an EnCodec state dict (no encoder./decoder. weights)")
        self.encoder.load_state_dict(enc)
        self.decoder.load_state_dict(dec)

    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        self.check_input(x)
        if x.shape[1] != 1:
            raise InputError(f"encodec24k is mono: expected (b, 1, n), got {tuple(x.shape)}")
        return self.encoder(x), None  # (b, 128, n / 320)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (b, 1, m * 320); `decode` (base class) checks z and clamps
