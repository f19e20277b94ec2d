"""The generation tasks on top of AVGenPipeline: what is given, what is sampled, what is decoded and copied.

Every task samples sound and frames together with one DiT. In a2v, v2a and extend the given tokens are held exactly
during sampling (noise level 0), and the user's own samples / frames are copied into the output untouched: only the
generated spans come from the decoders.
"""

from __future__ import annotations

import torch

from avgen.errors import InputError
from avgen.media import AVClip, MediaError, mix_channels
from avgen.sampling import task_given

MAX_LENGTH_FACTOR = 2.0  # inputs up to this many times the trained duration are generated in one window


def run_task(pipe, task: str, prompt: str, *, video, audio, clip, seconds, duration, seed, settings, progress):
    if task in ("t2av", "t2v", "t2a"):
        return _text_to(pipe, task, prompt, duration, seed, settings, progress)
    if task == "a2v":
        if audio is None:
            raise InputError("task a2v needs audio (c, n) at the model's sample rate: audio=... (input=speech.wav)")
        return _audio_to_video(pipe, prompt, audio, seed, settings, progress)
    if task == "v2a":
        if video is None:
            raise InputError("task v2a needs video frames (t, h, w, 3) uint8: pass video=... (or input=silent.mp4)")
        return _video_to_audio(pipe, prompt, video, seed, settings, progress)
    if clip is None:
        raise InputError("task extend needs a clip (AVClip) to continue: pass clip=... (or input=clip.mp4)")
    return _extend(pipe, prompt or (clip.caption or ""), clip, seconds, seed, settings, progress)


def _check_length(pipe, seconds: float, what: str) -> float:
    limit = pipe.duration * MAX_LENGTH_FACTOR
    if seconds <= 0:
        raise MediaError(f"{what} is empty: give at least {1 / pipe.fps:.3f} s")
    if seconds > limit + 1e-9:
        raise MediaError(f"{what} is {seconds:.2f} s; this model makes clips of up to {limit:g} s: trim it")
    return pipe.valid_duration(seconds)


def _text_to(pipe, task, prompt, duration, seed, settings, progress) -> AVClip:
    want = float(duration or pipe.duration)
    dur = _check_length(pipe, want, f"duration={want}")
    layout = pipe.layout(dur)
    xv, xa = pipe.sample_tokens([prompt], layout, seed, None, settings, progress)
    frames, wave = pipe.decode(xv, xa, layout, video=task != "t2a", audio=task != "t2v")
    n_frames, n_samples = round(want * pipe.fps), round(want * pipe.sample_rate)
    h, w = pipe.size
    if task == "t2v":
        wave = torch.zeros(pipe.audio_ae.config.get("channels", 1), n_samples)
    if task == "t2a":
        frames = torch.zeros(0, h, w, 3, dtype=torch.uint8)
    return AVClip(video=frames[:n_frames], audio=wave[:, :n_samples], fps=pipe.fps, sample_rate=pipe.sample_rate)


def _audio_to_video(pipe, prompt, audio: torch.Tensor, seed, settings, progress) -> AVClip:
    channels = pipe.audio_ae.config.get("channels", 1)
    given = mix_channels(audio.float(), channels)
    n = given.shape[-1]
    dur = _check_length(pipe, n / pipe.sample_rate, "the given audio")
    layout = pipe.layout(dur)
    padded = torch.nn.functional.pad(given, (0, round(dur * pipe.sample_rate) - n))
    xv, xa = pipe.encode(None, padded, layout)
    g = task_given("a2v", layout, 1, audio=xa)
    xv, xa = pipe.sample_tokens([prompt], layout, seed, g, settings, progress)
    frames, _ = pipe.decode(xv, xa, layout, audio=False)
    return AVClip(
        video=frames[: round(n / pipe.sample_rate * pipe.fps)],
        audio=audio.float().clone(),
        fps=pipe.fps,
        sample_rate=pipe.sample_rate,
    )


def _video_to_audio(pipe, prompt, video: torch.Tensor, seed, settings, progress) -> AVClip:
    _check_frames(pipe, video)
    t = video.shape[0]
    dur = _check_length(pipe, t / pipe.fps, "the given video")
    layout = pipe.layout(dur)
    need = round(dur * pipe.fps)
    padded = torch.cat([video, video[-1:].expand(need - t, -1, -1, -1)]) if need > t else video
    xv, xa = pipe.encode(padded, None, layout)
    g = task_given("v2a", layout, 1, video=xv)
    xv, xa = pipe.sample_tokens([prompt], layout, seed, g, settings, progress)
    _, wave = pipe.decode(xv, xa, layout, video=False)
    return AVClip(
        video=video.clone(),
        audio=wave[:, : round(t / pipe.fps * pipe.sample_rate)],
        fps=pipe.fps,
        sample_rate=pipe.sample_rate,
    )


def _check_frames(pipe, video: torch.Tensor) -> None:
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != torch.uint8:
        raise MediaError(f"video must be uint8 (t, h, w, 3), got {tuple(video.shape)} {video.dtype}")
    if tuple(video.shape[1:3]) != pipe.size:
        raise MediaError(
            f"video frames are {tuple(video.shape[1:3])} but the model makes {pipe.size}: resize them "
            f"(read_clip(..., size={pipe.size}) does)"
        )


def _extend(pipe, prompt, clip: AVClip, seconds: float, seed, settings, progress) -> AVClip:
    """Sliding windows of the trained duration: each holds the last `context` seconds given and adds the rest."""
    _check_frames(pipe, clip.video)
    if seconds <= 0:
        raise InputError(f"seconds={seconds}: give how many seconds to add (> 0)")
    window = pipe.duration
    context = pipe.valid_duration(window / 2)
    if clip.duration + 1e-9 < context:
        raise MediaError(f"the clip is {clip.duration:.2f} s; extend needs at least {context:g} s to continue from")
    layout = pipe.layout(window)
    channels = pipe.audio_ae.config.get("channels", 1)
    frames, wave = clip.video, mix_channels(clip.audio.float(), channels)
    cf, cs = round(context * pipe.fps), round(context * pipe.sample_rate)
    want_f, want_s = frames.shape[0] + round(seconds * pipe.fps), wave.shape[1] + round(seconds * pipe.sample_rate)
    k = 0
    while frames.shape[0] < want_f or wave.shape[1] < want_s:
        xv, xa = pipe.encode(frames[-cf:], wave[:, -cs:], layout)
        g = task_given("extend", layout, 1, video=xv, audio=xa, prefix_seconds=context)
        xv, xa = pipe.sample_tokens([prompt], layout, seed + k, g, settings, progress)
        new_f, new_w = pipe.decode(xv, xa, layout)
        frames = torch.cat([frames, new_f[cf:]])
        wave = torch.cat([wave, new_w[:, cs:]], dim=1)
        k += 1
    n0 = clip.video.shape[0]
    added = mix_channels(wave[:, clip.audio.shape[1] : want_s], clip.audio.shape[0])
    out_audio = torch.cat([clip.audio.float(), added], dim=1)
    return AVClip(
        video=torch.cat([clip.video, frames[n0:want_f]]), audio=out_audio, fps=pipe.fps, sample_rate=pipe.sample_rate
    )
