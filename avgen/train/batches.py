"""What the DiT trainer feeds on: cached latents, or clips encoded on the fly (avworld or a media folder).

Either way a batch is a list of dataset indices -> normalised tokens and text states (xv, xa, states, mask, spans),
and the indices of step s are a pure function of (seed, s): a fresh permutation of the data each epoch. With
script_prob > 0 a clip whose meta holds a script (meta["script"]: avgen.script's lines) is read as that script with
this probability, drawn from (seed, step, dataset index); spans (b, s, 2) then anchor its lines' text in time, else
they are None (captions only, as before).
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import torch

from avgen.data.batch import collate_clips
from avgen.errors import InputError
from avgen.models.text import encode_text
from avgen.script import Script


@functools.lru_cache(maxsize=4)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(step: int, batch: int, n: int, seed: int) -> list[int]:
    """Dataset indices of global batch `step`: a fresh permutation of the data each epoch, from (seed, epoch)."""
    out = []
    for i in range(step * batch, (step + 1) * batch):
        epoch, pos = divmod(i, n)
        out.append(int(_permutation(seed, epoch, n)[pos]))
    return out


def _cpu_copy(module):
    """`module` itself when all its tensors are on the CPU (or it is no torch module), else a CPU copy."""
    if not isinstance(module, torch.nn.Module):
        return module
    tensors = [*module.parameters(), *module.buffers()]
    return module if all(t.device.type == "cpu" for t in tensors) else copy.deepcopy(module).cpu()


def uses_script(prob: float, seed: int, step: int, index: int) -> bool:
    """Whether dataset item `index` is read as its script at `step`: a pure function of (seed, step, index)."""
    return prob > 0 and float(np.random.default_rng([seed, step, index, 19]).random()) < prob


def texts(captions: list[str], scripts: list, indices: list[int]) -> list[str | Script]:
    """Each clip's caption, or its script where the draw (uses_script) gave it one (meta["script"]; None: none)."""
    out: list[str | Script] = []
    for caption, script, index in zip(captions, scripts, indices, strict=True):
        if script is None:
            out.append(caption)
            continue
        try:
            out.append(Script.coerce(script))
        except InputError as e:
            raise InputError(f"dataset item {index}: meta['script'] is not a script: {e}") from None
    return out


class LatentBatcher:
    """Cached raw latents -> normalised tokens and text states for one step. script_prob: the probability that a
    clip with a script in its meta is read as that script instead of its caption (module docstring)."""

    def __init__(self, shards, layout, video_ae, audio_ae, text_encoder, device, script_prob: float = 0.0) -> None:
        if not 0.0 <= script_prob <= 1.0:
            raise InputError(f"script_prob={script_prob} must lie in [0, 1]")
        self.shards, self.layout, self.text = shards, layout, text_encoder
        self.video_ae, self.audio_ae, self.device = video_ae, audio_ae, device
        self.script_prob = script_prob

    def __len__(self) -> int:
        return len(self.shards)

    def __call__(self, indices: list[int], step: int = 0, seed: int = 0):
        zv = torch.stack([self.shards.video[i] for i in indices])  # (b, c, t, h, w)
        za = torch.stack([self.shards.audio[i] for i in indices])  # (b, c, n)
        captions = [self.shards.captions[i] for i in indices]
        # a clip's script is looked up only when the draw says it is read as its script
        scripts = [self.shards.scripts[i] if uses_script(self.script_prob, seed, step, i) else None for i in indices]
        return self._tokens(zv, za, texts(captions, scripts, indices))

    def on_cpu(self) -> LatentBatcher:
        """A copy for data-loader workers, which cannot use CUDA: the same tokens, left on the CPU (the trainer moves
        them), from CPU copies of the autoencoders and text encoder where these sit on another device."""
        twin = copy.copy(self)
        twin.video_ae, twin.audio_ae, twin.text = (_cpu_copy(m) for m in (self.video_ae, self.audio_ae, self.text))
        twin.device = torch.device("cpu")
        return twin

    def _tokens(self, zv: torch.Tensor, za: torch.Tensor, texts: list[str | Script]):
        """(xv, xa, states, mask, spans): spans (b, s, 2) when a script line is timed, else None."""
        # latents come from the CPU (shards, or encode(...).cpu()); the stats sit with the AE, on CUDA too
        zv, za = zv.to(self.video_ae.latent_mean.device), za.to(self.audio_ae.latent_mean.device)
        xv, xa = self.layout.patchify(self.video_ae.normalize(zv), self.audio_ae.normalize(za))
        states, mask, spans = encode_text(self.text, texts)
        spans = None if spans is None else spans.to(self.device)
        return xv.to(self.device), xa.to(self.device), states.to(self.device), mask.to(self.device), spans


class ClipBatcher(LatentBatcher):
    """Clips from a dataset (AVWorld, MediaFolder) encoded by the frozen AEs at every step: no cache needed, but the
    AE forward passes cost more than the DiT's for tiny models. Use tools/cache_latents.py for long runs."""

    def __init__(self, dataset, layout, video_ae, audio_ae, text_encoder, device, script_prob: float = 0.0) -> None:
        super().__init__(None, layout, video_ae, audio_ae, text_encoder, device, script_prob)
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    @torch.no_grad()
    def __call__(self, indices: list[int], step: int = 0, seed: int = 0):
        batch = collate_clips([self.dataset[i] for i in indices])
        dev = next(self.video_ae.parameters()).device
        frames, samples = self.layout.media_lengths(self.video_ae.geometry, self.audio_ae.geometry)
        zv = self.video_ae.encode(batch["video"][:, :, :frames].to(dev)).cpu()  # (b, c, t, h, w)
        za = self.audio_ae.encode(batch["audio"][..., :samples].to(dev)).cpu()  # (b, c, n): whole audio tokens
        scripts = [meta.get("script") if uses_script(self.script_prob, seed, step, i) else None
                   for meta, i in zip(batch["meta"], indices, strict=True)]  # fmt: skip
        return self._tokens(zv, za, texts(batch["captions"], scripts, indices))
