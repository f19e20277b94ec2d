"""The interface both autoencoders implement, and the geometry they declare as data.

An autoencoder maps media to latents and back:
    video (b, 3, t, h, w) in [-1, 1]  <->  z (b, c, t', h', w')
    audio (b, c, n)       in [-1, 1]  <->  z (b, c, n')
Its `AEGeometry` says how: the input rate, the strides, the latent channels, causality.
Everything downstream (token counts, token times, rate compatibility) is derived from it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from avgen.errors import InputError, MissingFileError


@dataclass(frozen=True)
class AEGeometry:
    """How an autoencoder samples time (and space).

    input_rate: frames per second (video) or samples per second (audio), exact.
    time_stride: input steps per latent step.
    spatial_stride: pixels per latent cell along h and w (1 for audio).
    latent_channels: channels of z.
    causal: if True the first latent covers one input step and each later one `time_stride`
        steps, so inputs have 1 + m * time_stride steps (m >= 0); otherwise m * time_stride (m >= 1).
    channels: input channels: 3 for RGB video, 1 (mono) or 2 (stereo) for audio.
    """

    input_rate: Fraction
    time_stride: int
    spatial_stride: int
    latent_channels: int
    causal: bool = False
    channels: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_rate", Fraction(self.input_rate))
        if min(self.time_stride, self.spatial_stride, self.latent_channels, self.channels) < 1 or self.input_rate <= 0:
            raise InputError(f"invalid AEGeometry {self}")

    @property
    def latent_rate(self) -> Fraction:
        """Latent steps per second."""
        return self.input_rate / self.time_stride

    def latent_length(self, input_length: int) -> int:
        """Latent steps for an input of `input_length` steps; raises if the geometry can't take it."""
        self.check_length(input_length)
        if self.causal:
            return 1 + (input_length - 1) // self.time_stride
        return input_length // self.time_stride

    def input_length(self, latent_length: int) -> int:
        """Input steps that decode from `latent_length` latent steps."""
        if latent_length < 1:
            raise InputError(f"latent length must be >= 1, got {latent_length}")
        if self.causal:
            return 1 + (latent_length - 1) * self.time_stride
        return latent_length * self.time_stride

    def valid_lengths(self, around: int, count: int = 3) -> list[int]:
        """A few accepted input lengths near `around`, for error messages."""
        m = max(1, round((around - (1 if self.causal else 0)) / self.time_stride))
        return [self.input_length(k) for k in range(max(1, m - 1), max(1, m - 1) + count)]

    def check_length(self, input_length: int) -> None:
        ok = (
            (input_length - 1) % self.time_stride == 0 and input_length >= 1
            if self.causal
            else input_length % self.time_stride == 0 and input_length >= self.time_stride
        )
        if not ok:
            form = f"1 + m*{self.time_stride}" if self.causal else f"m*{self.time_stride} (m >= 1)"
            raise InputError(
                f"input length {input_length} does not fit this autoencoder (time stride {self.time_stride}, "
                f"causal={self.causal}): lengths must be {form}, e.g. {self.valid_lengths(input_length)}"
            )

    def check_size(self, h: int, w: int) -> None:
        s = self.spatial_stride
        if h % s or w % s:
            raise InputError(
                f"frame size {h}x{w} does not fit this autoencoder: height and width must be multiples of {s}"
            )

    def steps_in(self, seconds: float) -> int:
        """Input steps (frames or samples) in `seconds`, to the nearest: how long an output cut to a requested
        duration is. For a duration the autoencoder must take exactly, use duration_length."""
        return round(Fraction(seconds).limit_denominator(1_000_000) * self.input_rate)

    def duration_length(self, seconds: float | Fraction) -> int:
        """Input steps for a duration in seconds; raises if it is not a whole number of steps."""
        steps = Fraction(seconds).limit_denominator(1_000_000) * self.input_rate
        if steps.denominator != 1:
            raise InputError(f"{seconds} s is not a whole number of input steps at {self.input_rate} per second")
        return int(steps)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_rate"] = str(self.input_rate)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AEGeometry:
        d = dict(d)
        d["input_rate"] = Fraction(d["input_rate"])
        return cls(**d)

    def __str__(self) -> str:
        return (
            f"AEGeometry(rate={self.input_rate}/s, time_stride={self.time_stride}, spatial={self.spatial_stride}, "
            f"c={self.latent_channels}, causal={self.causal}, latent_rate={self.latent_rate}/s)"
        )


# ----------------------------------------------------------------------------------------------------------------------
# the interface
# ----------------------------------------------------------------------------------------------------------------------
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class Autoencoder(nn.Module):
    """What every autoencoder implements (audiocraft's `CompressionModel` idea, without quantisers).

    Subclasses set `geometry`, `modality` ("video" | "audio"), `config` (JSON kwargs that rebuild the model),
    `variational`, `kind` (the short name in config.json), call `_init_stats`, and define `encode_dist` and `_decode`.

    - `encode(x)` returns RAW latents (the posterior mean; a draw with sample=True when variational).
    - `normalize(z)` maps raw latents to ~zero mean / unit std per channel with statistics measured on data and stored
      as buffers beside the weights (EDM2-style data, not a magic constant); `denormalize` is its exact inverse.
    - `decode(z)` returns media clamped to [-1, 1]; `decode(z, clamp=False)` is the raw network output the losses use
      (a clamp has no gradient outside the range, so training must see the unclamped signal).
    - `forward(x)` = (raw reconstruction, mean, logvar): the one call losses make, so a DDP wrapper sees it.
    """

    geometry: AEGeometry
    modality: str
    config: dict
    variational: bool = True
    kind: str = ""
    source_dir: Path | None = None  # the directory it was loaded from (set by load / from_pretrained), for references

    latent_mean: torch.Tensor
    latent_std: torch.Tensor

    def _init_stats(self, channels: int) -> None:
        self.register_buffer("latent_mean", torch.zeros(channels))
        self.register_buffer("latent_std", torch.ones(channels))

    # --- shape checks -------------------------------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError (naming the valid lengths / sizes) for media this geometry cannot take."""
        want = 5 if self.modality == "video" else 3
        if x.ndim != want:
            shape = "(b, 3, t, h, w)" if want == 5 else "(b, c, n)"
            raise InputError(f"{self.kind}: expected {self.modality} input {shape}, got shape {tuple(x.shape)}")
        channels = self.geometry.channels
        if x.shape[1] != channels:
            raise InputError(f"{self.kind}: expected {channels} input channels (dim 1), got shape {tuple(x.shape)}")
        self.geometry.check_length(x.shape[2])
        if self.modality == "video":
            self.geometry.check_size(x.shape[3], x.shape[4])

    def check_latent(self, z: torch.Tensor) -> None:
        want = 5 if self.modality == "video" else 3
        c = self.geometry.latent_channels
        if z.ndim != want or z.shape[1] != c or z.shape[2] < 1:
            shape = f"(b, {c}, t, h, w)" if want == 5 else f"(b, {c}, n)"
            raise InputError(f"{self.kind}: expected latents {shape}, got shape {tuple(z.shape)}")

    # --- the three calls ----------------------------------------------------------------------------------------------
    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(posterior mean, posterior log-variance or None for a deterministic AE)."""
        raise NotImplementedError

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, x: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        mean, logvar = self.encode_dist(x)
        if not sample or logvar is None:
            return mean
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar) * noise

    def decode(self, z: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        self.check_latent(z)
        x = self._decode(z)
        return x.clamp(-1.0, 1.0) if clamp else x

    def forward(
        self, x: torch.Tensor, sample: bool | None = None, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Reconstruction for training: (unclamped x_hat, mean, logvar). Samples the posterior in train mode, with
        `noise` (b, *latent_shape_of(x)) standard normal draws when given (the trainer draws them per clip, so a
        batch's samples do not depend on how it is split over ranks), else from the global RNG."""
        mean, logvar = self.encode_dist(x)
        sample = self.training if sample is None else sample
        if not sample or logvar is None:
            return self.decode(mean, clamp=False), mean, logvar
        if noise is None:
            noise = torch.randn_like(mean)
        elif noise.shape != mean.shape:
            raise ValueError(f"{self.kind}: posterior noise of shape {tuple(noise.shape)}, latents {tuple(mean.shape)}")
        z = mean + torch.exp(0.5 * logvar) * noise.to(mean)
        return self.decode(z, clamp=False), mean, logvar

    # --- latent statistics --------------------------------------------------------------------------------------------
    def _stat_shape(self, z: torch.Tensor) -> tuple[int, ...]:
        return (1, -1) + (1,) * (z.ndim - 2)

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        s = self._stat_shape(z)
        return (z - self.latent_mean.view(s)) / self.latent_std.view(s)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        s = self._stat_shape(z)
        return z * self.latent_std.view(s) + self.latent_mean.view(s)

    @torch.no_grad()
    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        c = self.geometry.latent_channels
        if mean.numel() != c or std.numel() != c:
            raise InputError(f"latent stats need {c} values each, got {mean.numel()} and {std.numel()}")
        self.latent_mean.copy_(mean.reshape(-1))
        self.latent_std.copy_(std.reshape(-1).clamp_min(1e-6))

    @torch.no_grad()
    def measure_latent_stats(self, batches: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean / std of posterior means over an iterable of input batches (streaming, float64 sums).

        Does not set them: call `set_latent_stats(*ae.measure_latent_stats(batches))`.
        """
        c = self.geometry.latent_channels
        total = torch.zeros(c, dtype=torch.float64)
        total_sq = torch.zeros(c, dtype=torch.float64)
        count = 0
        for x in batches:
            z = self.encode(x).double().transpose(0, 1).reshape(c, -1).cpu()  # (c, b*t*h*w)
            total += z.sum(1)
            total_sq += (z * z).sum(1)
            count += z.shape[1]
        if count == 0:
            raise InputError("measure_latent_stats needs at least one batch")
        mean = total / count
        std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
        return mean.float(), std.float()

    def latent_shape(self, duration: float | Fraction, size: tuple[int, int] | None = None) -> tuple[int, ...]:
        """Shape of z (without batch) for a clip of `duration` seconds (and frame `size` (H, W) for video)."""
        m = self.geometry.latent_length(self.geometry.duration_length(duration))
        if self.modality == "video":
            if size is None:
                raise InputError("video latent_shape needs size=(H, W)")
            self.geometry.check_size(*size)
            s = self.geometry.spatial_stride
            return (self.geometry.latent_channels, m, size[0] // s, size[1] // s)
        return (self.geometry.latent_channels, m)

    def latent_shape_of(self, x: torch.Tensor) -> tuple[int, ...]:
        """Shape of z (without batch) that encoding media x (b, c, t, h, w) or (b, c, n) gives."""
        m = self.geometry.latent_length(x.shape[2])
        if self.modality == "video":
            s = self.geometry.spatial_stride
            return (self.geometry.latent_channels, m, x.shape[3] // s, x.shape[4] // s)
        return (self.geometry.latent_channels, m)

    def extra_repr(self) -> str:
        return f"{self.kind}: {self.geometry}"

    # --- weights ------------------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write `config.json` + `model.safetensors` (weights and latent stats), each atomically.

        The weights go first and the config last, so a directory with a config.json is complete; a crash leaves only
        hidden temporary files, never a half-written file under a final name.
        """
        from avgen._atomic import atomic_path

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file(tensors, str(tmp), metadata={"format_version": str(FORMAT_VERSION), "class": self.kind})
        meta = {"class": self.kind, "config": self.config, "geometry": self.geometry.to_dict()}
        meta["format_version"] = FORMAT_VERSION
        meta["weights_sha256"] = weights_hash(self)
        with atomic_path(directory / CONFIG_NAME) as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")


def weights_hash(ae: nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes, bytes; sorted by name): the identity of a set of weights.

    The latent cache stores it beside each shard and refuses shards made by other weights (or other latent stats).
    """
    h = hashlib.sha256()
    for name, t in sorted(ae.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too
    return h.hexdigest()


def read_versioned_json(path: Path, fields: tuple[str, ...], version: int) -> dict:
    """A JSON file of ours, parsed: refused in one line when it is not JSON, lacks one of `fields` or
    "format_version", or has another format_version than `version`."""
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON: {e}") from e
    missing = [k for k in (*fields, "format_version") if k not in meta]
    if missing:
        raise InputError(f"{path} lacks the field(s) {missing}")
    if meta["format_version"] != version:
        raise InputError(f"{path}: format_version {meta['format_version']} is not supported ({version} is)")
    return meta


def read_saved(directory: str | Path, classes: dict[str, type[Autoencoder]]) -> tuple[type[Autoencoder], dict]:
    """Read and check `config.json` of a saved autoencoder; return (class, parsed config)."""
    directory = Path(directory)
    cfg_path, w_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise MissingFileError(
                f"autoencoder directory {directory} has no {p.name}: expected {CONFIG_NAME} and {WEIGHTS_NAME} "
                "as written by Autoencoder.save"
            )
    meta = read_versioned_json(cfg_path, ("class", "config"), FORMAT_VERSION)
    if meta["class"] not in classes:
        raise InputError(f"{cfg_path}: unknown autoencoder class {meta['class']!r}; known: {sorted(classes)}")
    return classes[meta["class"]], meta


def load_saved(directory: str | Path, classes: dict[str, type[Autoencoder]], device: str = "cpu") -> Autoencoder:
    """Rebuild an autoencoder from its config and load its safetensors weights (never unpickles)."""
    directory = Path(directory)
    cls, meta = read_saved(directory, classes)
    ae = cls(**meta["config"])
    stored, built = meta.get("geometry", {}), ae.geometry.to_dict()
    if any(built.get(k) != v for k, v in stored.items()):  # a key older files lack (channels) is not compared
        raise InputError(f"{directory / CONFIG_NAME}: stored geometry {stored} differs from {ae.geometry}")
    state = load_file(str(directory / WEIGHTS_NAME), device="cpu")
    own = ae.state_dict()
    unexpected, absent = sorted(set(state) - set(own)), sorted(set(own) - set(state))
    wrong = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if unexpected or absent or wrong:
        raise InputError(
            f"{directory / WEIGHTS_NAME} does not match {meta['class']} built from {CONFIG_NAME}: "
            f"missing keys {absent[:5]}, unexpected keys {unexpected[:5]}, wrong shapes {wrong[:5]}"
        )
    ae.load_state_dict(state, strict=True)
    return ae.to(device).eval()
