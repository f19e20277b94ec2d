"""The joint audio-video diffusion transformer: one network denoises both modalities in one interleaved sequence.

Reads top to bottom: helpers, embedders, attention, block, final layer, the model, size presets.

    video tokens (b, lv, pv) --in_video--+                                      +--out_video--> (b, lv, pv)
                                          +-> interleave -> blocks x depth -> split
    audio tokens (b, la, pa) --in_audio--+   (self-attn over all, cross-attn  +--out_audio--> (b, la, pa)
                                              to text, MLP; adaLN-Zero per token from its own noise level)

The network knows nothing of the objective or guidance: it maps (tokens, per-token noise levels, text) to velocities.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from avgen.errors import InputError
from avgen.models.rope import rope_angles
from avgen.tokens import AVTokenLayout


# ----------------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------------
def gather_mods(mods: torch.Tensor, index: torch.Tensor, shape: tuple[int, int], n: int, scales: tuple[int, ...]):
    """Modulation rows per distinct noise level (u, n*d) -> n contiguous per-token tensors (b, l, d).

    index (b*l,) picks each token's row. 1 is added to the chunks at `scales` on the u rows (adaLN's 1 + scale: a
    (u, d) add instead of a (b, l, d) one) before the gather. One index_select per chunk keeps each result contiguous
    and makes the backward an index_add into (u, d), instead of a gather of (b, l, n*d) whose backward concatenates n
    full-size gradients and accumulates them with index_put."""
    chunks = [c + 1 if i in scales else c.contiguous() for i, c in enumerate(mods.chunk(n, dim=-1))]  # n x (u, d)
    return [c.index_select(0, index).view(*shape, -1) for c in chunks]  # n x (b, l, d)


def rope_tables(cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(l, hd/2) angles -> full-width tables (l, hd): [cos, cos] and [-sin, sin], for rotate_half-style rope."""
    return torch.cat([cos, cos], dim=-1), torch.cat([-sin, sin], dim=-1)


def rope_full(x: torch.Tensor, cos2: torch.Tensor, sin2: torch.Tensor) -> torch.Tensor:
    """Rotary embedding with full-width tables: [x1 cos - x2 sin, x2 cos + x1 sin] for x (..., hd), tables
    (..., hd) from rope_tables broadcasting against it; fewer, full-width passes than halves and a cat."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos2 + torch.cat([x2, x1], dim=-1) * sin2


class TimestepEmbedder(nn.Module):
    """Noise level t in [0, 1] -> vector (d,): sinusoidal features of 1000 t, then an MLP."""

    def __init__(self, d: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, d), nn.SiLU(), nn.Linear(d, d))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = 1000.0 * t.float()[:, None] * freqs[None]  # (u, half)
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=-1))  # (u, d)


# ----------------------------------------------------------------------------------------------------------------------
# attention
# ----------------------------------------------------------------------------------------------------------------------
class SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.q_norm = nn.RMSNorm(d // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(d // heads, eps=1e-6)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, cos2: torch.Tensor, sin2: torch.Tensor) -> torch.Tensor:
        """x (b, l, d); cos2 / sin2 (l, 1, hd) from rope_tables. Norms and rope run on (b, l, h, hd) views of the qkv
        output, where they are faster than on (b, h, l, hd) permutes; attention gets transposed views (no copies)."""
        b, l, d = x.shape
        q, k, v = self.qkv(x).view(b, l, 3, self.heads, d // self.heads).unbind(2)  # (b, l, h, hd) each
        q, k = rope_full(self.q_norm(q), cos2, sin2), rope_full(self.k_norm(k), cos2, sin2)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (b, h, l, hd)
        return self.proj(out.transpose(1, 2).reshape(b, l, d))  # (b, l, d)


class CrossAttention(nn.Module):
    def __init__(self, d: int, text_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(text_dim, 2 * d)
        self.q_norm = nn.RMSNorm(d // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(d // heads, eps=1e-6)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        b, l, d = x.shape
        s, hd = text.shape[1], d // self.heads
        q = self.q_norm(self.q(x).view(b, l, self.heads, hd)).transpose(1, 2)  # (b, h, l, hd)
        k, v = self.kv(text).view(b, s, 2, self.heads, hd).permute(2, 0, 3, 1, 4)  # (b, h, s, hd) each
        # text_mask (b, s), or (b, l, s) per token for time-anchored text (AVTokenLayout.text_attention)
        mask = text_mask[:, None, None, :].bool() if text_mask.ndim == 2 else text_mask[:, None].bool()  # True = attend
        out = F.scaled_dot_product_attention(q, self.k_norm(k), v, attn_mask=mask)  # (b, h, l, hd)
        return self.proj(out.transpose(1, 2).reshape(b, l, d))


class SyncPath(nn.Module):
    """A time-aligned path from what is seen to what is heard (after MMAudio's per-frame sync features, inside the
    one sequence). Each video token is read together with the same place in the neighbouring windows (how that
    place changes: an object arriving, turning, leaving); those motion features are pooled over space by mean and
    max, so a contact anywhere in the frame reaches the audio of its instant without attention having to find the
    object; a linear map gives each of the window's audio tokens its own part (which sub-step the impact falls on).
    The output layer starts at zero: the path is the identity at init, so it can join a trained model."""

    def __init__(self, d: int, per_window: int, dim: int = 64) -> None:
        super().__init__()
        self.per_window, self.dim = per_window, dim
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.inp = nn.Linear(d, dim)
        self.motion = nn.Linear(3 * dim, dim)
        self.mix = nn.Linear(2 * dim, per_window * dim)
        self.out = nn.Linear(dim, d)

    def forward(self, hv: torch.Tensor, frames: int) -> torch.Tensor:
        """hv (b, lv, d) video states, frame-major over `frames` windows -> (b, frames * per_window, d) additions."""
        b = hv.shape[0]
        f = self.inp(self.norm(hv)).view(b, frames, -1, self.dim)  # (b, t, h*w, r)
        padded = F.pad(f, (0, 0, 0, 0, 1, 1))  # (b, t + 2, h*w, r): nothing before the first or after the last
        here = torch.cat([padded[:, :-2], f, padded[:, 2:]], dim=-1)  # (b, t, h*w, 3r): each place over 3 windows
        motion = F.gelu(self.motion(here))  # (b, t, h*w, r)
        pooled = torch.cat([motion.mean(2), motion.amax(2)], dim=-1)  # (b, t, 2r)
        sub = F.gelu(self.mix(pooled)).view(b, frames * self.per_window, self.dim)  # (b, la, r)
        return self.out(sub)  # (b, la, d)


def mlp(d: int, ratio: float) -> nn.Sequential:
    hidden = int(d * ratio)
    return nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))


# ----------------------------------------------------------------------------------------------------------------------
# block
# ----------------------------------------------------------------------------------------------------------------------
class DiTBlock(nn.Module):
    """Self-attention over the whole AV sequence, cross-attention to text, MLP (shared or per modality).

    adaLN-Zero: shift / scale / gate of the attention and MLP branches come per token from the token's noise level.
    """

    def __init__(self, d: int, heads: int, text_dim: int, mlp_ratio: float, modality_mlp: bool,
                 sync_per_window: int = 0) -> None:  # fmt: skip
        super().__init__()
        self.sync = SyncPath(d, sync_per_window) if sync_per_window else None
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(d, heads)
        self.norm_x = nn.LayerNorm(d, eps=1e-6)
        self.cross = CrossAttention(d, text_dim, heads)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(d, mlp_ratio)
        self.mlp_audio = mlp(d, mlp_ratio) if modality_mlp else None
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))  # applied to the distinct noise levels only

    def forward(self, x, mod_index, t_emb, text, text_mask, cos2, sin2, layout: AVTokenLayout | None = None):
        """x (b, l, d); mod_index (b*l,) each token's row of t_emb (u, d); text_mask (b, s), or (b, l, s) per token;
        cos2 / sin2 rope tables; layout is needed with modality_mlp and the sync path."""
        b, l, _ = x.shape
        if self.sync is not None:
            hv, ha = layout.split(x)  # (b, lv, d), (b, la, d)
            x = layout.interleave(hv, ha + self.sync(hv, layout.grid[0]))  # (b, l, d)
        mods = gather_mods(self.ada(t_emb), mod_index, (b, l), 6, (1, 4))  # 6 x (b, l, d), scales hold 1 + scale
        shift1, scale1, gate1, shift2, scale2, gate2 = mods
        x = x + gate1 * self.attn(self.norm1(x) * scale1 + shift1, cos2, sin2)  # (b, l, d)
        x = x + self.cross(self.norm_x(x), text, text_mask)  # (b, l, d)
        h = self.norm2(x) * scale2 + shift2  # (b, l, d)
        if self.mlp_audio is None:
            return x + gate2 * self.mlp(h)
        hv, ha = layout.split(h)  # (b, lv, d), (b, la, d)
        return x + gate2 * layout.interleave(self.mlp(hv), self.mlp_audio(ha))


class FinalLayer(nn.Module):
    def __init__(self, d: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.linear = nn.Linear(d, out_dim)

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor, mod_index: torch.Tensor) -> torch.Tensor:
        """x (b, l, d), t_emb (u, d), mod_index (b*l,) -> (b, l, out_dim)."""
        shift, scale = gather_mods(self.ada(t_emb), mod_index, x.shape[:2], 2, (1,))  # (b, l, d); scale = 1 + scale
        return self.linear(self.norm(x) * scale + shift)


# ----------------------------------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------------------------------
class AVDiT(nn.Module):
    """Joint AV DiT. Call with per-modality tokens and per-token noise levels; returns per-modality velocities."""

    def __init__(
        self,
        video_dim: int,
        audio_dim: int,
        width: int = 256,
        depth: int = 6,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        text_dim: int = 384,
        modality_mlp: bool = False,
        max_seconds: float = 30.0,
        null_tokens: int = 1,
        abs_pos: int = 0,
        sync_per_window: int = 0,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if width % heads or (width // heads) % 4:
            raise InputError(f"width {width} must split into {heads} heads of a size divisible by 4")
        self.config = dict(video_dim=video_dim, audio_dim=audio_dim, width=width, depth=depth, heads=heads,
                           mlp_ratio=mlp_ratio, text_dim=text_dim, modality_mlp=modality_mlp,
                           max_seconds=max_seconds, null_tokens=null_tokens, abs_pos=abs_pos,
                           sync_per_window=sync_per_window)  # fmt: skip
        self.grad_checkpointing = grad_checkpointing
        self.heads = heads
        self.in_video = nn.Linear(video_dim, width)
        self.in_audio = nn.Linear(audio_dim, width)
        self.modality = nn.Parameter(torch.zeros(2, width))  # learned modality embedding
        # optional learned absolute embedding of the sequence position, beside the rotary one (abs_pos = table size)
        self.pos = nn.Parameter(torch.zeros(abs_pos, width)) if abs_pos else None
        self.t_embed = TimestepEmbedder(width)
        self.null_text = nn.Parameter(torch.zeros(1, null_tokens, text_dim))  # the "no caption" text
        self.blocks = nn.ModuleList(
            [DiTBlock(width, heads, text_dim, mlp_ratio, modality_mlp, sync_per_window) for _ in range(depth)]
        )
        self.out_video = FinalLayer(width, video_dim)
        self.out_audio = FinalLayer(width, audio_dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier for linear layers; adaLN and output layers zeroed, so every block starts as the identity (adaLN-Zero)
        and the network starts by predicting zero velocity; small random modality and null-text embeddings."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        nn.init.normal_(self.modality, std=0.02)
        nn.init.normal_(self.null_text, std=0.02)
        if self.pos is not None:
            nn.init.normal_(self.pos, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.ada[-1].weight)
            nn.init.zeros_(block.ada[-1].bias)
            if block.sync is not None:
                nn.init.zeros_(block.sync.out.weight)
        for final in (self.out_video, self.out_audio):
            for layer in (final.ada[-1], final.linear):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def null_text_batch(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Text states and mask for `b` unconditional samples: (b, s_null, e), (b, s_null)."""
        states = self.null_text.expand(b, -1, -1)
        return states, torch.ones(b, states.shape[1], dtype=torch.bool, device=states.device)

    def forward(
        self,
        video_tokens: torch.Tensor,
        audio_tokens: torch.Tensor,
        t_video: torch.Tensor,
        t_audio: torch.Tensor,
        text: torch.Tensor | None,
        text_mask: torch.Tensor | None,
        layout: AVTokenLayout,
        drop_text: torch.Tensor | None = None,
        text_spans: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """video_tokens (b, lv, pv), audio_tokens (b, la, pa), t_video (b, lv), t_audio (b, la), text (b, s, e),
        text_mask (b, s); drop_text (b,) bool replaces those samples' text with the learned null text (untimed).
        text_spans (b, s, 2): each text token's time span in seconds (scripts, avgen.models.text.encode_scripts);
        an AV token then attends only to text tokens whose span overlaps its own. None: every token sees all text."""
        b = video_tokens.shape[0]
        if self.config["sync_per_window"] and layout.per_window != self.config["sync_per_window"]:
            raise InputError(f"this DiT's sync path was built for {self.config['sync_per_window']} audio tokens per "
                             f"video window; the layout has {layout.per_window}")  # fmt: skip
        given_text = text is not None
        text, text_mask = self._text(b, text, text_mask, drop_text)  # (b, s, e), (b, s)
        if text_spans is not None and given_text:
            text_mask = layout.text_attention(self._spans(text_spans, text_mask, drop_text), text_mask)  # (b, l, s)
        xv = self.in_video(video_tokens) + self.modality[0]  # (b, lv, d)
        xa = self.in_audio(audio_tokens) + self.modality[1]  # (b, la, d)
        x = layout.interleave(xv, xa)  # (b, l, d)
        if self.pos is not None:
            if layout.l > self.pos.shape[0]:
                raise InputError(f"{layout.l} tokens exceed the DiT's abs_pos table ({self.pos.shape[0]})")
            x = x + self.pos[: layout.l]
        t = layout.interleave(t_video[..., None], t_audio[..., None])[..., 0]  # (b, l)
        levels, mod_index = torch.unique(t, return_inverse=True)  # (u,), (b, l): modulation once per distinct level
        t_emb = self.t_embed(levels)  # (u, d)
        cos2, sin2 = self._rope(layout, x.device)  # (l, 1, hd) each
        for block in self.blocks:
            args = (x, mod_index.flatten(), t_emb, text, text_mask, cos2, sin2, layout)
            if self.grad_checkpointing and self.training:
                x = checkpoint(block, *args, use_reentrant=False)
            else:
                x = block(*args)
        hv, ha = layout.split(x)  # (b, lv, d), (b, la, d)
        tv, ta = layout.split(mod_index[..., None])  # (b, lv, 1), (b, la, 1)
        vv = self.out_video(hv, t_emb, tv.flatten())  # (b, lv, pv)
        va = self.out_audio(ha, t_emb, ta.flatten())  # (b, la, pa)
        return vv, va

    def _text(self, b, text, text_mask, drop_text):
        """Use the learned null text where there is no text or where drop_text is True."""
        if text is None:
            return self.null_text_batch(b)
        mask = (
            torch.ones(text.shape[:2], dtype=torch.bool, device=text.device) if text_mask is None else text_mask.bool()
        )
        if drop_text is None:
            return text, mask
        # drop_text given (training, guidance): always route through the null text, even when no sample drops it,
        # so every rank's graph has the same parameters (DDP / FSDP reduce the same buckets); values are unchanged
        null, null_mask = self.null_text_batch(b)
        s = max(text.shape[1], null.shape[1])
        text, mask = _pad_text(text, mask, s)
        null, null_mask = _pad_text(null.to(text.dtype), null_mask, s)
        drop = drop_text.bool().view(b, 1)
        return torch.where(drop[..., None], null, text), torch.where(drop, null_mask, mask)

    @staticmethod
    def _spans(spans: torch.Tensor, mask: torch.Tensor, drop_text: torch.Tensor | None) -> torch.Tensor:
        """Spans (b, s0, 2) of the given text -> (b, s, 2) for the text _text returned (mask (b, s)): padding and the
        null text of dropped samples are untimed (-inf, inf)."""
        b, s = mask.shape
        if spans.shape[0] != b or spans.shape[1] > s or spans.shape[-1] != 2:
            raise InputError(f"text_spans {tuple(spans.shape)} must be (b, s, 2) for text of {b} x {s} tokens")
        untimed = torch.tensor([-math.inf, math.inf], dtype=spans.dtype, device=spans.device)  # (2,)
        spans = torch.cat([spans, untimed.expand(b, s - spans.shape[1], 2)], dim=1)  # (b, s, 2)
        if drop_text is None:
            return spans
        return torch.where(drop_text.bool().view(b, 1, 1), untimed, spans)

    def _rope(self, layout: AVTokenLayout, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Rope tables (l, 1, hd) for (b, l, h, hd) queries and keys, cached per layout and device."""
        key = (layout.key, str(device))  # content, not id(): Python reuses the ids of dead objects
        cache = getattr(self, "_rope_cache", None)
        if cache is None or cache[0] != key:
            cos, sin = rope_angles(layout.positions, self.config["width"] // self.heads, layout.finest_spacing,
                                   self.config["max_seconds"] * layout.ref_rate, max(layout.grid[1:]) * 2)  # fmt: skip
            cos2, sin2 = rope_tables(cos, sin)  # (l, hd) each
            self._rope_cache = (key, cos2[:, None].to(device), sin2[:, None].to(device))
        return self._rope_cache[1], self._rope_cache[2]


def _pad_text(states: torch.Tensor, mask: torch.Tensor, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (b, s0, e) states and (b, s0) mask with masked-out zeros to length s."""
    extra = s - states.shape[1]
    if extra <= 0:
        return states, mask
    return F.pad(states, (0, 0, 0, extra)), F.pad(mask, (0, extra), value=False)


# ----------------------------------------------------------------------------------------------------------------------
# presets
# ----------------------------------------------------------------------------------------------------------------------
# The one source of each size (avgen/conf/model/*.yaml only name them; tests/test_configs.py checks they do not
# restate them). Parameter counts with the tiny AEs' 64-d tokens and MiniLM's 384-d text.
PRESETS: dict[str, dict] = {
    "tiny": dict(width=256, depth=6, heads=4, mlp_ratio=4.0, modality_mlp=False),  # CPU, 9.5 M parameters
    "small": dict(width=512, depth=12, heads=8, mlp_ratio=4.0, modality_mlp=True),  # one GPU, 95 M
    "base": dict(width=768, depth=16, heads=12, mlp_ratio=4.0, modality_mlp=True, grad_checkpointing=True),  # 277 M
    "large": dict(width=1024, depth=24, heads=16, mlp_ratio=4.0, modality_mlp=True, grad_checkpointing=True),  # 730 M
}


def build_dit(preset: str, video_dim: int, audio_dim: int, per_window: int = 0, **overrides) -> AVDiT:
    """The preset's network for tokens of these sizes; overrides that are None keep the preset's value.
    sync=True (a preset's or an override) adds the sync path, which needs the layout's audio tokens per window."""
    if preset not in PRESETS:
        raise InputError(f"unknown DiT preset {preset!r}; choose from {list(PRESETS)}")
    given = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    if given.pop("sync", False):
        if per_window < 1:
            raise InputError("model.sync=true needs a whole number of audio tokens per video window (per_window=..."
                             "); a layout grouped by time (tokens.relaxed, a causal video AE) has none: model.sync"
                             "=false")  # fmt: skip
        given["sync_per_window"] = per_window
    return AVDiT(video_dim=video_dim, audio_dim=audio_dim, **given)
