"""Adapters for diffusers' causal video VAEs behind avgen's interface: Wan 2.1 / 2.2, LTX-Video and CogVideoX.

Each adapter wraps the diffusers model itself (`self.vae`) and declares its `AEGeometry` from that model's own config:

    x (b, 3, 1 + k*s, h, w) in [-1, 1]  ->  z (b, c, 1 + k, h / p, w / p)  ->  x_hat (b, 3, 1 + k*s, h, w)

(s the time stride, p the spatial stride, c the latent channels; all three are causal: the first latent covers one
frame). A VAE stores no frame rate, so `fps` is an argument (stored in avgen's config.json). The latent statistics start
from the model's published normalisation, converted to avgen's convention normalize(z) = (z - mean) / std on raw
latents: Wan's config `latents_mean` / `latents_std`; LTX-Video's `latents_mean` / `latents_std` buffers and
`scaling_factor` (std = latents_std / scaling_factor); CogVideoX's `scaling_factor` (mean 0, std 1 / scaling_factor).

Two ways in, neither downloads: `from_diffusers(dir, fps)` reads a directory written by diffusers' `save_pretrained`
(or a pipeline directory with a `vae/` folder), safetensors only; `avgen.autoencoders.load(dir)` reads that too, and
the directory that `Autoencoder.save` writes (config = the diffusers config + fps; the architecture is rebuilt with
`from_config` and filled from our safetensors). diffusers is imported only when an adapter is built (`avgen[vae]`).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from avgen.autoencoders.base import AEGeometry, Autoencoder
from avgen.errors import InputError, MissingDependencyError, MissingFileError

INSTALL_HINT = "pip install 'avgen[vae]'"
DIFFUSERS_CONFIG = "config.json"
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json")


def require_diffusers() -> Any:
    """The diffusers module, or one line naming the extra that installs it."""
    try:
        import diffusers
    except ImportError as e:
        raise MissingDependencyError(f"this autoencoder needs diffusers, which is not installed: {INSTALL_HINT}") from e
    return diffusers


def frame_rate(fps: int | float | str | Fraction) -> Fraction:
    """An exact frame rate: 16, "30000/1001", 23.976 (read as its decimal text, 2997/125)."""
    try:
        rate = Fraction(str(fps))
    except (ValueError, ZeroDivisionError) as e:
        raise InputError(f"fps={fps!r} is not a frame rate: give a number such as 16, 24 or 30000/1001") from e
    if rate <= 0:
        raise InputError(f"fps={fps!r} must be positive")
    return rate


class DiffusersVideoVAE(Autoencoder):
    """A diffusers video VAE (`self.vae`) with the geometry and latent stats its config declares.

    Subclasses name the diffusers class, their `kind` and `default_fps`, and define `_strides` (time, space) from the
    config and `_published_stats` (raw-latent mean, std).
    """

    modality = "video"
    variational = True
    diffusers_class: str = ""
    default_fps: int = 16

    def __init__(
        self, diffusers_config: dict | None = None, fps: int | float | str | Fraction | None = None, *, model=None
    ) -> None:
        """`diffusers_config`: the diffusers config dict (architecture built with random weights, which avgen's
        `load` then fills); or `model`: an already loaded diffusers VAE of this class (`from_diffusers` passes it).
        `fps`: the frame rate of the video this VAE encodes (default `default_fps`)."""
        super().__init__()
        if model is None:
            if diffusers_config is None:
                raise InputError(f"{type(self).__name__} needs diffusers_config or model")
            model = getattr(require_diffusers(), self.diffusers_class).from_config(diffusers_config)
        elif type(model).__name__ != self.diffusers_class:
            raise InputError(f"{type(self).__name__} wraps {self.diffusers_class}, got {type(model).__name__}")
        self.vae = model
        cfg = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
        rate = frame_rate(self.default_fps if fps is None else fps)
        self.config = {"diffusers_config": json.loads(json.dumps(cfg)), "fps": str(rate)}
        time_stride, spatial_stride = self._strides(cfg)
        channels = int(cfg.get("in_channels", 3))
        self.geometry = AEGeometry(rate, time_stride, spatial_stride, self._latent_channels(cfg), True, channels)
        self._init_stats(self.geometry.latent_channels)
        self.set_latent_stats(*self._published_stats(cfg))

    # --- per class ----------------------------------------------------------------------------------------------------
    def _strides(self, cfg: dict) -> tuple[int, int]:
        raise NotImplementedError

    def _latent_channels(self, cfg: dict) -> int:
        return int(cfg["latent_channels"])

    def _published_stats(self, cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _decoder_args(self, z: torch.Tensor) -> dict:
        return {}

    # --- the interface ------------------------------------------------------------------------------------------------
    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_input(x)
        dist = self.vae.encode(x).latent_dist  # diagonal Gaussian over (b, c, 1 + k, h / p, w / p)
        return dist.mean, dist.logvar

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.vae.decode(z, **self._decoder_args(z)).sample  # (b, 3, t', h, w)
        want = self.geometry.input_length(z.shape[2])
        if x.shape[2] < want:
            raise InputError(f"{self.kind}: {z.shape[2]} latent frames decoded to {x.shape[2]} frames, expected {want}")
        # CogVideoX decodes an even number of latent frames with its first one repeated time_stride times: drop the
        # leading extras so that 1 + k latents always give 1 + k * time_stride frames
        return x[:, :, x.shape[2] - want :]  # (b, 3, 1 + k * time_stride, h, w)

    # --- loading a diffusers directory --------------------------------------------------------------------------------
    @classmethod
    def from_diffusers(
        cls, directory: str | Path, fps: int | float | str | Fraction | None = None, **options: Any
    ) -> DiffusersVideoVAE:
        """The VAE a diffusers `save_pretrained` wrote in `directory` (or in its `vae/` folder: a pipeline directory),
        at `fps` (default `default_fps`). Local files only, safetensors only: never downloads, never unpickles."""
        directory = vae_directory(directory)
        name = read_class_name(directory)
        if name != cls.diffusers_class:
            raise InputError(f"{directory / DIFFUSERS_CONFIG}: _class_name is {name!r}, {cls.__name__} reads "
                             f"{cls.diffusers_class}")  # fmt: skip
        if not any((directory / w).is_file() for w in DIFFUSERS_WEIGHTS):
            raise MissingFileError(f"{directory} has no {DIFFUSERS_WEIGHTS[0]}: save the VAE with diffusers' "
                                   "save_pretrained (safetensors; .bin files are never read)")  # fmt: skip
        model_cls = getattr(require_diffusers(), cls.diffusers_class)
        model = model_cls.from_pretrained(  # without accelerate, low_cpu_mem_usage=True only warns and falls back
            str(directory), local_files_only=True, use_safetensors=True, torch_dtype=torch.float32,
            low_cpu_mem_usage=False,
        )  # fmt: skip
        for t in [*model.parameters(), *model.buffers()]:
            # fresh storage: from_pretrained can leave tensors at unaligned addresses inside the file's bytes, where
            # CPU kernels round differently (1e-6) than for the same weights loaded by avgen's `load`
            t.data = t.data.clone()
        ae = cls(fps=fps, model=model.eval(), **options).eval()
        ae.source_dir = directory.resolve()  # a model directory may reference it instead of copying (reference.py)
        return ae

    @classmethod
    def from_pretrained(cls, directory: str | Path, fps: int | float | str | Fraction | None = None,
                        **options: Any) -> DiffusersVideoVAE:  # fmt: skip
        """`avgen.autoencoders.load`'s name for from_diffusers (the audio adapters' from_pretrained)."""
        return cls.from_diffusers(directory, fps, **options)


def _check_stated(cls_name: str, cfg: dict, key: str, built: int, source: str) -> None:
    stated = cfg.get(key)
    if stated is not None and int(stated) != built:
        raise InputError(f"{cls_name} config: {key}={stated} but its {source} give {built}: fix {key} in config.json")


def _stat(cfg: dict, key: str, channels: int) -> torch.Tensor:
    values = cfg.get(key)
    if values is None or len(values) != channels:
        raise InputError(f"config.json: {key} needs {channels} values (one per latent channel), got {values!r}")
    return torch.tensor(values, dtype=torch.float32)


class WanVAE(DiffusersVideoVAE):
    """diffusers' AutoencoderKLWan (Wan 2.1: 4x time, 8x space, 16 channels; Wan 2.2 TI2V: 4x, 16x, 48)."""

    kind = "diffusers_wan"
    diffusers_class = "AutoencoderKLWan"
    default_fps = 16  # Wan 2.1 generates 16 fps video

    def _strides(self, cfg: dict) -> tuple[int, int]:
        downs = len(cfg["dim_mult"]) - 1  # the last stage does not downsample
        time_stride = 2 ** sum(bool(d) for d in cfg["temperal_downsample"][:downs])
        spatial_stride = 2**downs * int(cfg.get("patch_size") or 1)
        source = "dim_mult / temperal_downsample / patch_size"
        _check_stated(self.diffusers_class, cfg, "scale_factor_temporal", time_stride, source)
        _check_stated(self.diffusers_class, cfg, "scale_factor_spatial", spatial_stride, source)
        if 4 % time_stride:
            raise InputError(f"AutoencoderKLWan encodes 4 frames at a time: time stride {time_stride} cannot work")
        return time_stride, spatial_stride

    def _latent_channels(self, cfg: dict) -> int:
        return int(cfg["z_dim"])

    def _published_stats(self, cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
        c = self._latent_channels(cfg)  # the Wan pipeline decodes latents / (1 / latents_std) + latents_mean
        return _stat(cfg, "latents_mean", c), _stat(cfg, "latents_std", c)


class LTXVideoVAE(DiffusersVideoVAE):
    """diffusers' AutoencoderKLLTXVideo (LTX-Video: 8x time, 32x space, 128 channels).

    Decoders with `timestep_conditioning` (0.9.1 and later) get `decode_timestep` (the pipeline's default 0.0); the
    pipeline's optional noise blend before decoding is not applied, so decoding is deterministic.
    """

    kind = "diffusers_ltx_video"
    diffusers_class = "AutoencoderKLLTXVideo"
    default_fps = 25  # LTX-Video's pipelines export at 25 fps

    def __init__(
        self,
        diffusers_config: dict | None = None,
        fps: int | float | str | Fraction | None = None,
        decode_timestep: float = 0.0,
        *,
        model=None,
    ) -> None:
        super().__init__(diffusers_config, fps, model=model)
        self.decode_timestep = float(decode_timestep)
        self.config["decode_timestep"] = self.decode_timestep

    def _strides(self, cfg: dict) -> tuple[int, int]:
        if int(cfg.get("patch_size_t", 1)) != 1:
            raise InputError("AutoencoderKLLTXVideo with patch_size_t != 1 has no 1 + k*stride frame rule")
        types = list(cfg["down_block_types"])
        blocks = len(cfg["block_out_channels"]) - (1 if types[-1] == "LTXVideo095DownBlock3D" else 0)
        times = spaces = 0
        for i in range(blocks):
            if not cfg["spatio_temporal_scaling"][i]:
                continue
            how = cfg["downsample_type"][i] if types[i] == "LTXVideo095DownBlock3D" else "conv"
            times += how in ("conv", "temporal", "spatiotemporal")
            spaces += how in ("conv", "spatial", "spatiotemporal")
        time_stride, spatial_stride = 2**times, int(cfg["patch_size"]) * 2**spaces
        source = "down blocks / patch_size"
        _check_stated(self.diffusers_class, cfg, "temporal_compression_ratio", time_stride, source)
        _check_stated(self.diffusers_class, cfg, "spatial_compression_ratio", spatial_stride, source)
        return time_stride, spatial_stride

    def _published_stats(self, cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
        # the LTX pipelines normalise (z - latents_mean) * scaling_factor / latents_std
        scale = float(cfg.get("scaling_factor", 1.0))
        return self.vae.latents_mean.detach().float(), self.vae.latents_std.detach().float() / scale

    def _decoder_args(self, z: torch.Tensor) -> dict:
        if not self.vae.config.timestep_conditioning:
            return {}
        return {"temb": torch.full((z.shape[0],), self.decode_timestep, device=z.device, dtype=z.dtype)}


class CogVideoXVAE(DiffusersVideoVAE):
    """diffusers' AutoencoderKLCogVideoX (CogVideoX: 4x time, 8x space, 16 channels).

    diffusers decodes an even number of latent frames (1 + k, k odd) to 4k + 4 frames, its first latent upsampled to
    4 frames instead of 1; the adapter keeps the last 1 + 4k (see `_decode`), so every count obeys the frame rule.
    """

    kind = "diffusers_cogvideox"
    diffusers_class = "AutoencoderKLCogVideoX"
    default_fps = 8  # CogVideoX 2b / 5b export at 8 fps

    def _strides(self, cfg: dict) -> tuple[int, int]:
        time_stride, downs = int(cfg["temporal_compression_ratio"]), len(cfg["block_out_channels"]) - 1
        if time_stride < 1 or time_stride & (time_stride - 1) or time_stride > 2**downs:
            raise InputError(f"AutoencoderKLCogVideoX: temporal_compression_ratio {time_stride} is not a power of 2 "
                             f"up to 2**{downs}")  # fmt: skip
        return time_stride, 2**downs

    def _published_stats(self, cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
        # the CogVideoX pipelines scale latents by scaling_factor and nothing else (shift_factor is unused there)
        c = self._latent_channels(cfg)
        return torch.zeros(c), torch.full((c,), 1.0 / float(cfg["scaling_factor"]))


# diffusers' `_class_name` -> adapter: the fixed table a diffusers directory is read through (never import-by-string)
DIFFUSERS_VIDEO_VAES: dict[str, type[DiffusersVideoVAE]] = {
    c.diffusers_class: c for c in (WanVAE, LTXVideoVAE, CogVideoXVAE)
}
# avgen's own config.json `class` -> adapter, for `avgen.autoencoders.io`
KINDS: dict[str, type[Autoencoder]] = {c.kind: c for c in DIFFUSERS_VIDEO_VAES.values()}


def vae_directory(directory: str | Path) -> Path:
    """`directory`, or its `vae/` folder when it is a diffusers pipeline directory without a config.json of its own."""
    directory = Path(directory)
    if not (directory / DIFFUSERS_CONFIG).is_file() and (directory / "vae" / DIFFUSERS_CONFIG).is_file():
        return directory / "vae"
    if not directory.is_dir():
        raise MissingFileError(f"video VAE directory {directory} does not exist")
    return directory


def read_class_name(directory: Path) -> str | None:
    """diffusers' `_class_name` in directory/config.json; None when there is none (not a diffusers directory)."""
    path = directory / DIFFUSERS_CONFIG
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return meta.get("_class_name") if isinstance(meta, dict) else None


def diffusers_video_class(directory: str | Path) -> type[DiffusersVideoVAE] | None:
    """The adapter for the diffusers video VAE saved in `directory`, or None when it holds none. Imports nothing."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    return DIFFUSERS_VIDEO_VAES.get(read_class_name(vae_directory(directory)) or "")


# --- Hydra factories (avgen/conf/video_ae/*.yaml) ---------------------------------------------------------------------
def _load_as(cls: type[DiffusersVideoVAE], path: str, fps: int | float | str | None) -> DiffusersVideoVAE:
    """`avgen.autoencoders.load(path, fps=fps)` (a diffusers directory, an avgen save of one or a reference to one),
    which must hold a `cls`; fps None: the rate the directory records, else the class's `default_fps`."""
    from avgen.autoencoders.io import load

    ae = load(path, fps=fps)
    if not isinstance(ae, cls):
        raise InputError(f"video_ae.path={path} holds {ae.kind or type(ae).__name__}, not {cls.diffusers_class}: "
                         f"choose its video_ae group, or name the directory with video_ae.path alone")  # fmt: skip
    return ae


def wan(path: str, fps: int | float | str | None = None) -> DiffusersVideoVAE:
    """A diffusers AutoencoderKLWan directory (or an avgen save of one) as avgen's video AE."""
    return _load_as(WanVAE, path, fps)


def ltx_video(
    path: str, fps: int | float | str | None = None, decode_timestep: float | None = None
) -> DiffusersVideoVAE:
    """A diffusers AutoencoderKLLTXVideo directory (or an avgen save of one) as avgen's video AE; decode_timestep
    None keeps the saved one (0.0 for a diffusers directory)."""
    ae = _load_as(LTXVideoVAE, path, fps)
    if decode_timestep is not None:
        ae.decode_timestep = ae.config["decode_timestep"] = float(decode_timestep)
    return ae


def cogvideox(path: str, fps: int | float | str | None = None) -> DiffusersVideoVAE:
    """A diffusers AutoencoderKLCogVideoX directory (or an avgen save of one) as avgen's video AE."""
    return _load_as(CogVideoXVAE, path, fps)
