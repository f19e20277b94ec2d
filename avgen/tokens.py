"""The one place that knows how audio and video latents become a single token sequence on a shared clock.

Names used throughout avgen:
    patchify    latents -> tokens of one modality: video (b, c, t, h, w) -> (b, lv, pv), audio (b, c, n) -> (b, la, pa)
    interleave  [video tokens, audio tokens] -> one sequence  (b, l, d), ordered by time window, video before audio
    split       the inverse of interleave
    unpatchify  the inverse of patchify

A token's time is the centre of its true span in seconds. Each video token group (a window) spans `pt` latent frames;
the audio tokens of that time follow it. Which audio tokens go with which window, by rule:
    whole ratio (the default)  audio tokens per video window must be a whole number (checked with Fraction; a clear
                               error otherwise, naming the audio_patch values that work and the opt-in below).
    relaxed (tokens.relaxed)   opt-in, for published codecs with no whole ratio (Oobleck 44100/2048 Hz, DAC 44 kHz):
                               each audio token follows the window its centre falls in; windows hold n or n + 1.
    causal video AE            its first latent frame covers one input frame (Wan, CogVideoX, LTX-Video), so no
                               whole share exists: a causal layout always groups by time, with or without the flag.
With a whole ratio and a uniform AE the three give the same order (bit-identical to the whole-ratio rule), and the
permutation is computed once per shape either way. Window spans, clip lengths: avgen/timeline.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import torch
from einops import rearrange

from avgen.autoencoders.base import AEGeometry
from avgen.errors import InputError
from avgen.timeline import audio_tokens_in, clip_lengths, latent_edges, shortest_duration, window_of


def patchify_video(z: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """(b, c, t, h, w) -> (b, lv, c*pt*ph*pw), tokens in (t, h, w) order."""
    pt, ph, pw = patch
    return rearrange(z, "b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw)


def unpatchify_video(x: torch.Tensor, patch: tuple[int, int, int], grid: tuple[int, int, int]) -> torch.Tensor:
    """(b, lv, c*pt*ph*pw) -> (b, c, t, h, w); grid = token counts (t', h', w')."""
    pt, ph, pw = patch
    t, h, w = grid
    return rearrange(x, "b (t h w) (c pt ph pw) -> b c (t pt) (h ph) (w pw)", t=t, h=h, w=w, pt=pt, ph=ph, pw=pw)


def patchify_audio(z: torch.Tensor, k: int) -> torch.Tensor:
    """(b, c, n) -> (b, n/k, c*k)."""
    return rearrange(z, "b c (n k) -> b n (c k)", k=k)


def unpatchify_audio(x: torch.Tensor, k: int) -> torch.Tensor:
    """(b, n/k, c*k) -> (b, c, n)."""
    return rearrange(x, "b n (c k) -> b c (n k)", k=k)


@dataclass
class AVTokenLayout:
    """Token counts, times, positions and the interleave permutation for one clip format."""

    video_latent: tuple[int, int, int, int]  # (c, t, h, w)
    audio_latent: tuple[int, int]  # (c, n)
    video_patch: tuple[int, int, int]
    audio_patch: int
    video_rate: Fraction  # video latent frames per second
    audio_rate: Fraction  # audio latents per second
    ref_rate: float = 100.0  # rotary time coordinate = seconds * ref_rate
    causal: bool = False  # the video AE's first latent frame covers one input frame (module docstring)
    time_stride: int = 1  # input frames per later video latent frame (used with causal)
    relaxed: bool = False  # group audio tokens by the window their centre falls in, without a whole number each
    perm: torch.Tensor = field(init=False, repr=False)
    inverse: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        c, t, h, w = self.video_latent
        pt, ph, pw = self.video_patch
        self.by_time = self.relaxed or self.causal
        self.per_window = self._whole_share() if self.by_time else self.audio_per_window(
            self.video_rate / pt, self.audio_rate, self.audio_patch)  # fmt: skip
        if t % pt or h % ph or w % pw:
            raise InputError(f"video latents {self.video_latent} are not divisible by the patch {self.video_patch}")
        if self.audio_latent[1] % self.audio_patch:
            raise InputError(
                f"{self.audio_latent[1]} audio latents are not divisible by audio_patch={self.audio_patch}"
            )
        self.grid = (t // pt, h // ph, w // pw)
        self.lv = self.grid[0] * self.grid[1] * self.grid[2]
        self.la = self.audio_latent[1] // self.audio_patch
        self.edges = latent_edges(t, self.video_rate, self.causal, self.time_stride)[::pt]  # window edges, seconds
        want = audio_tokens_in(self.edges[-1], self.audio_rate, self.audio_patch) if self.by_time else None
        if self.la != (want if self.by_time else self.grid[0] * self.per_window):
            each = "" if self.by_time else f" of {self.per_window}"
            raise InputError(
                f"{self.la} audio tokens do not fill {self.grid[0]} video windows{each}: the audio and "
                f"video latents cover different durations"
            )
        self.l = self.lv + self.la
        self.pv = c * pt * ph * pw
        self.pa = self.audio_latent[0] * self.audio_patch
        # interleave: sort [video, audio] by (window, modality, original order)
        video_window = torch.arange(self.lv) // (self.grid[1] * self.grid[2])
        window = torch.cat([video_window, self.audio_windows])
        modality = torch.cat([torch.zeros(self.lv, dtype=torch.long), torch.ones(self.la, dtype=torch.long)])
        key = (window * 2 + modality) * self.l + torch.arange(self.l)
        self.perm = torch.argsort(key)  # sequence position -> index in [video, audio]
        self.inverse = torch.argsort(self.perm)

    @property
    def audio_windows(self) -> torch.Tensor:
        """(la,) the video window each audio token follows: the one its centre falls in (exact, with Fractions)."""
        if not self.by_time:
            return torch.arange(self.la) // self.per_window
        span = Fraction(self.audio_patch) / Fraction(self.audio_rate)
        return torch.tensor(window_of([(i + Fraction(1, 2)) * span for i in range(self.la)], self.edges))

    def _whole_share(self) -> int:
        """Audio tokens per window where every window holds the same whole number, else 0 (grouped by time)."""
        ratio = Fraction(self.audio_rate) / self.audio_patch / (Fraction(self.video_rate) / self.video_patch[0])
        return int(ratio) if not self.causal and ratio.denominator == 1 else 0

    @staticmethod
    def audio_per_window(window_rate: Fraction, audio_rate: Fraction, k: int) -> int:
        ratio = Fraction(audio_rate) / k / Fraction(window_rate)
        if ratio.denominator != 1 or ratio < 1:
            good_k = [d for d in range(1, 65) if (Fraction(audio_rate) / d / Fraction(window_rate)).denominator == 1]
            raise InputError(
                f"audio tokens per video latent frame must be a whole number: audio latent rate {audio_rate} Hz / "
                f"audio_patch {k} / video latent rate {window_rate} Hz = {ratio}. audio_patch values that work: "
                f"{good_k[:8] or 'none'} (or change the video fps so its latent rate divides {audio_rate} Hz, or set "
                f"tokens.relaxed=true to group audio tokens by the window their centre falls in)"
            )
        return int(ratio)

    @classmethod
    def from_geometry(
        cls,
        video: AEGeometry,
        audio: AEGeometry,
        duration: float,
        size: tuple[int, int],
        video_patch: tuple[int, int, int] = (1, 2, 2),
        audio_patch: int = 2,
        ref_rate: float = 100.0,
        relaxed: bool = False,
    ) -> AVTokenLayout:
        """Layout for clips of `duration` seconds at frame `size` (H, W), from the two AEs' declared geometry."""
        video.check_size(*size)
        nv, na = clip_lengths(video, audio, duration, video_patch, audio_patch)
        tv, ta = video.latent_length(nv), audio.latent_length(na)
        s = video.spatial_stride
        return cls(
            video_latent=(video.latent_channels, tv, size[0] // s, size[1] // s),
            audio_latent=(audio.latent_channels, ta),
            video_patch=tuple(video_patch),
            audio_patch=int(audio_patch),
            video_rate=video.latent_rate,
            audio_rate=audio.latent_rate,
            ref_rate=ref_rate,
            causal=video.causal,
            time_stride=video.time_stride,
            relaxed=bool(relaxed),
        )

    @classmethod
    def from_autoencoders(cls, video_ae, audio_ae, duration: float, size: tuple[int, int], **kwargs) -> AVTokenLayout:
        return cls.from_geometry(video_ae.geometry, audio_ae.geometry, duration, size, **kwargs)

    # ---------------------------------------------------------------------------------------------------------------
    def interleave(self, video_tokens: torch.Tensor, audio_tokens: torch.Tensor) -> torch.Tensor:
        """(b, lv, ...) + (b, la, ...) -> (b, l, ...)."""
        both = torch.cat([video_tokens, audio_tokens], dim=1)
        return both.index_select(1, self.perm.to(both.device))

    def split(self, sequence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, l, ...) -> (b, lv, ...), (b, la, ...)."""
        both = sequence.index_select(1, self.inverse.to(sequence.device))
        return both[:, : self.lv], both[:, self.lv :]

    def media_lengths(self, video: AEGeometry, audio: AEGeometry) -> tuple[int, int]:
        """(frames, samples) that encode to this layout's latents and that decoding them gives (the inverse of
        avgen.timeline.clip_lengths: a clip source longer by less than one audio token is cut to these)."""
        return video.input_length(self.video_latent[1]), audio.input_length(self.audio_latent[1])

    def patchify(self, zv: torch.Tensor, za: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return patchify_video(zv, self.video_patch), patchify_audio(za, self.audio_patch)

    def unpatchify(self, xv: torch.Tensor, xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return unpatchify_video(xv, self.video_patch, self.grid), unpatchify_audio(xa, self.audio_patch)

    # ---------------------------------------------------------------------------------------------------------------
    @property
    def video_times(self) -> torch.Tensor:
        """(lv,) centre time in seconds of each video token (of its window's true span, for a causal AE too)."""
        frame = torch.arange(self.lv) // (self.grid[1] * self.grid[2])
        if self.causal:
            centres = [float((a + b) / 2) for a, b in zip(self.edges[:-1], self.edges[1:], strict=True)]
            return torch.tensor(centres, dtype=torch.float64)[frame]
        span = float(self.video_patch[0] / self.video_rate)
        return (frame.double() + 0.5) * span

    @property
    def audio_times(self) -> torch.Tensor:
        """(la,) centre time in seconds of each audio token."""
        span = float(self.audio_patch / self.audio_rate)
        return (torch.arange(self.la).double() + 0.5) * span

    @property
    def times(self) -> torch.Tensor:
        """(l,) centre time in seconds of each token of the interleaved sequence."""
        return torch.cat([self.video_times, self.audio_times])[self.perm]

    @property
    def is_audio(self) -> torch.Tensor:
        """(l,) True for audio tokens of the interleaved sequence."""
        return (torch.arange(self.l) >= self.lv)[self.perm]

    @property
    def positions(self) -> torch.Tensor:
        """(l, 3) rotary coordinates (time ticks, y, x). Audio sits at y = x = -1, outside the video's grid."""
        _, h, w = self.grid
        idx = torch.arange(self.lv)
        vy, vx = (idx // w) % h, idx % w
        video = torch.stack([self.video_times * self.ref_rate, vy.double(), vx.double()], dim=1)
        audio = torch.stack(
            [self.audio_times * self.ref_rate, -torch.ones(self.la).double(), -torch.ones(self.la).double()], 1
        )
        return torch.cat([video, audio])[self.perm].float()

    @property
    def finest_spacing(self) -> float:
        """Smallest token span, in rotary ticks (a causal AE's first window is its shortest)."""
        first = self.edges[1] - self.edges[0]  # = video_patch[0] / video_rate without a causal AE
        return float(min(first, self.audio_patch / self.audio_rate)) * self.ref_rate

    @property
    def span(self) -> float:
        """Clip duration in rotary ticks (the video's span; the audio ends within it)."""
        return float(self.edges[-1]) * self.ref_rate

    def bounds(self) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """(start, end) in seconds of each token's true span: video (lv,) twice, audio (la,) twice."""
        if self.causal:
            window = torch.arange(self.lv) // (self.grid[1] * self.grid[2])
            edges = torch.tensor([float(e) for e in self.edges], dtype=torch.float64)
            video = (edges[:-1][window], edges[1:][window])
        else:
            half = 0.5 * float(self.video_patch[0] / self.video_rate)
            video = (self.video_times - half, self.video_times + half)
        half = 0.5 * float(self.audio_patch / self.audio_rate)
        return video, (self.audio_times - half, self.audio_times + half)

    def text_attention(self, spans: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Which text tokens each token of the interleaved sequence may attend to, for time-anchored text (scripts):
        spans (b, s, 2) seconds, mask (b, s) -> (b, l, s) bool. Token i sees text token j when j is unmasked and
        their spans overlap (start_j < end_i and end_j > start_i; an untimed (-inf, inf) one overlaps every token).
        A token that would see none falls back to the mask, so attention never has an empty row."""
        (v_start, v_end), (a_start, a_end) = self.bounds()
        start = torch.cat([v_start, a_start])[self.perm].to(spans)  # (l,): sequence order
        end = torch.cat([v_end, a_end])[self.perm].to(spans)  # (l,)
        mask = mask.bool()[:, None, :]  # (b, 1, s)
        begins, ends = spans[:, None, :, 0], spans[:, None, :, 1]  # (b, 1, s) each
        overlap = (begins < end[None, :, None]) & (ends > start[None, :, None])  # (b, l, s)
        allowed = overlap & mask  # (b, l, s)
        return allowed | (mask & ~allowed.any(-1, keepdim=True))

    def token_mask_before(self, seconds: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-modality masks (lv,), (la,) of tokens whose span ends by `seconds` (for continuation)."""
        (_, v_end), (_, a_end) = self.bounds()
        eps = 1e-9
        return v_end <= seconds + eps, a_end <= seconds + eps

    @property
    def key(self) -> tuple:
        """Everything that defines the layout (two layouts with equal keys have equal tokens, times and positions)."""
        return (self.video_latent, self.audio_latent, self.video_patch, self.audio_patch, self.video_rate,
                self.audio_rate, self.ref_rate, self.causal, self.time_stride, self.relaxed)  # fmt: skip

    def _per_window_text(self) -> str:
        if self.per_window:
            return f"{self.per_window} audio tokens per video window"
        counts = torch.bincount(self.audio_windows, minlength=self.grid[0])
        rule = "causal first window" if self.causal else "relaxed"
        return f"{int(counts.min())}-{int(counts.max())} audio tokens per video window (grouped by time, {rule})"

    def describe(self) -> str:
        return (
            f"{self.lv} video tokens ({self.grid[0]}x{self.grid[1]}x{self.grid[2]}, dim {self.pv}) + {self.la} audio "
            f"tokens (dim {self.pa}), {self._per_window_text()}; {self.l} in all"
        )


def rope_periods(n_pairs: int, min_period: float, max_period: float) -> torch.Tensor:
    """Geometric periods from min_period to max_period: (n_pairs,)."""
    if n_pairs == 1:
        return torch.tensor([max_period])
    return torch.logspace(math.log10(min_period), math.log10(max_period), n_pairs)


@dataclass(frozen=True)
class ClipFormat:
    """The clip a model makes, derived once: the few free choices (duration, frame size, patches, rotary rate, the
    relaxed rule) plus what the two autoencoders declare (fps, sample rate, channels). A model directory stores only
    the free choices (dit/config.json "clip" and "tokens"); the rest is read from its autoencoders."""

    duration: float
    size: tuple[int, int]
    fps: Fraction
    sample_rate: Fraction
    channels: int  # audio channels
    video_patch: tuple[int, int, int] = (1, 2, 2)
    audio_patch: int = 2
    ref_rate: float = 100.0
    relaxed: bool = False

    @classmethod
    def derive(cls, video_ae, audio_ae, clip: dict, tokens: dict) -> ClipFormat:
        """From the AEs and the free choices as a model directory or a training config writes them:
        clip {"duration", "size"}, tokens {"video_patch", "audio_patch", "ref_rate", "relaxed" (default false)}."""
        v, a = video_ae.geometry, audio_ae.geometry
        return cls(duration=float(clip["duration"]), size=tuple(int(x) for x in clip["size"]), fps=v.input_rate,
                   sample_rate=a.input_rate, channels=a.channels, video_patch=tuple(tokens["video_patch"]),
                   audio_patch=int(tokens["audio_patch"]), ref_rate=float(tokens["ref_rate"]),
                   relaxed=bool(tokens.get("relaxed", False)))  # fmt: skip

    def to_config(self) -> dict:
        """The free choices, as dit/config.json stores them (the rates belong to the autoencoders)."""
        return {"clip": {"duration": self.duration, "size": list(self.size)},
                "tokens": {"video_patch": list(self.video_patch), "audio_patch": self.audio_patch,
                           "ref_rate": self.ref_rate, "relaxed": self.relaxed}}  # fmt: skip

    def layout(self, video_ae, audio_ae, duration: float | None = None) -> AVTokenLayout:
        """The token layout of this format for clips of `duration` seconds (default: the trained duration)."""
        return AVTokenLayout.from_autoencoders(video_ae, audio_ae, self.duration if duration is None else duration,
                                               self.size, video_patch=self.video_patch, audio_patch=self.audio_patch,
                                               ref_rate=self.ref_rate, relaxed=self.relaxed)  # fmt: skip

    def lengths(self, video_ae, audio_ae, duration: float | None = None) -> tuple[int, int]:
        """(frames, samples) of a clip of `duration` seconds (default: the trained duration) in this format: what
        a data source must give the autoencoders and what decoding a layout of that duration returns. Raises,
        naming the valid frame counts, for a duration the video AE can't take (avgen.timeline.clip_lengths)."""
        return clip_lengths(video_ae.geometry, audio_ae.geometry, self.duration if duration is None else duration,
                            self.video_patch, self.audio_patch)  # fmt: skip

    def valid_duration(self, video_ae, audio_ae, seconds: float) -> float:
        """The shortest duration >= seconds this format takes, with both frames and samples covering `seconds`."""
        return float(shortest_duration(video_ae.geometry, audio_ae.geometry, seconds, self.video_patch,
                                       self.audio_patch))  # fmt: skip
