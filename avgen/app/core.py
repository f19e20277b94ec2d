"""The web app's work without Gradio: check a request, read its uploads, generate, and render what the page shows.

Every file the app writes lies under one work directory (results/<id>/: the mp4 download, a WebM preview where the
browser can't play H.264/AAC, a wav for t2a, the frames + spectrogram picture); the oldest result directories are
removed as new ones come. Bad requests raise `AppError` with a message meant for the page.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
import torch

from avgen._atomic import atomic_path
from avgen.errors import InputError, UserError
from avgen.media import AVClip, MediaError, read_clip
from avgen.script import Script
from avgen.tasks import MAX_LENGTH_FACTOR, TASKS

if TYPE_CHECKING:
    from avgen.pipeline import AVGenPipeline

TASK_LABELS = {t.name: t.label for t in TASKS.values()}  # the menu, in the task table's order
TEXT_TASKS = tuple(t.name for t in TASKS.values() if t.needs_prompt)
UPLOAD_OF = {t.name: (t.input, f"the {t.input}") for t in TASKS.values() if t.input}
SPEECH = re.compile(r"\b(say|says|said|speak|speaks|talk|talks|voice|voiced|speaker|words?)\b", re.IGNORECASE)
PREVIEW_CODECS = 'video/mp4; codecs="avc1.42E01E, mp4a.40.2"'  # what the page asks the browser about
ProgressFn = Callable[[float, str], None]


class AppError(UserError, ValueError):
    """A request the page answers with a message instead of a result."""


@dataclass
class Limits:
    max_upload_mb: float = 25.0
    max_upload_seconds: float = 30.0  # any upload; a2v / v2a are further held to the model's longest clip
    max_extend_seconds: float = 8.0
    max_steps: int = 100
    max_cfg: float = 15.0
    max_prompt_chars: int = 300
    max_script_chars: int = 2000
    keep_results: int = 8


@dataclass
class Request:
    prompt: str = ""
    task: str = "t2av"
    seed: int | float | None = 0
    steps: int | float | None = 16
    duration: float | None = 2.0  # t2av / t2v / t2a: clip length; extend: seconds to add; a2v / v2a: the upload's
    cfg_video: float | None = 3.0
    cfg_audio: float | None = 3.0
    cfg_sync: float | None = None  # None: the model's default
    audio: str | None = None  # a2v: an uploaded or recorded sound file
    video: str | None = None  # v2a: an uploaded video
    clip: str | None = None  # extend: an uploaded clip
    preview: str = "mp4"  # "webm" where the browser can't play H.264/AAC
    script: str = ""  # lines anchored in time (avgen.script); when not empty, used instead of the prompt


@dataclass
class Result:
    preview: Path  # what the <video> plays: the mp4, or a VP9/Opus WebM
    download: Path  # the mp4 (a wav for t2a)
    figure: Path
    duration: float
    seconds: float  # wall time of the request
    metrics: dict[str, str]
    summary: str = ""


@dataclass
class Probe:
    duration: float
    has_video: bool
    has_audio: bool


def example_prompts() -> list[str]:
    """Captions in the avworld vocabulary, one per kind of scene, written by its own caption templates."""
    from avgen.data.avworld.captions import CAPTIONS
    from avgen.data.avworld.vocab import SHAPE_SOUNDS

    rng = np.random.default_rng(7)

    def obj(size: str, colour: str, shape: str) -> dict:
        return {"size": size, "colour": colour, "shape": shape}

    scenes = [
        ("bounce", {"objects": [obj("small", "red", "circle")], "sound": SHAPE_SOUNDS["circle"],
                    "background": "grey"}),
        ("bounce", {"objects": [obj("large", "blue", "square")], "sound": SHAPE_SOUNDS["square"],
                    "background": "white"}),
        ("bounce", {"objects": [obj("small", "yellow", "triangle"), obj("large", "green", "circle")],
                    "sound": SHAPE_SOUNDS["triangle"], "background": "black"}),
        ("talk", {"voice": "low", "words": ["hello", "river"], "background": "dark blue"}),
        ("talk", {"voice": "high", "words": ["banana", "seven", "moon"], "background": "grey"}),
        ("blink", {"colour": "yellow", "shape": "circle", "pitch": "high", "background": "black"}),
        ("blink", {"colour": "purple", "shape": "square", "pitch": "low", "background": "white"}),
    ]  # fmt: skip
    return [CAPTIONS[family](rng, attrs) for family, attrs in scenes]


def _number(value, name: str, lo: float, hi: float, whole: bool = False) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise AppError(f"{name} is empty: give a number from {lo:g} to {hi:g}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise AppError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(x) or not lo <= x <= hi or (whole and x != int(x)):
        kind = "a whole number" if whole else "a number"
        raise AppError(f"{name} must be {kind} from {lo:g} to {hi:g}, got {value!r}")
    return x


def probe(path: Path, what: str) -> Probe:
    """Duration and streams of an upload, from the container header; AppError when it is not audio or video."""
    try:
        with av.open(str(path)) as c:
            v = next(iter(c.streams.video), None)
            a = next(iter(c.streams.audio), None)
            spans = [float(s.duration * s.time_base) for s in (v, a) if s is not None and s.duration]
            duration = c.duration / av.time_base if c.duration else max(spans, default=0.0)
    except (av.error.FFmpegError, OSError, ValueError, IndexError, RuntimeError) as e:
        raise AppError(f"{what} ({path.name}) cannot be read as audio or video ({type(e).__name__})") from e
    if v is None and a is None:
        raise AppError(f"{what} ({path.name}) has neither sound nor pictures")
    return Probe(float(duration), v is not None, a is not None)


def check_upload(path: str | None, what: str, limits: Limits, max_seconds: float) -> tuple[Path, Probe]:
    if not path:
        raise AppError(f"upload {what} first")
    p = Path(path)
    if not p.is_file():
        raise AppError(f"{what} ({p.name}) was not received: upload it again")
    size_mb = p.stat().st_size / 1e6
    if size_mb > limits.max_upload_mb:
        raise AppError(f"{what} ({p.name}) is {size_mb:.1f} MB; uploads are limited to {limits.max_upload_mb:g} MB")
    if size_mb == 0:
        raise AppError(f"{what} ({p.name}) is empty (0 bytes)")
    info = probe(p, what)
    if info.duration > max_seconds + 1e-6:
        raise AppError(f"{what} ({p.name}) is {info.duration:.2f} s; the limit here is {max_seconds:g} s: trim it")
    return p, info


class AppCore:
    """The loaded pipeline, the work directory and the limits; `generate(Request)` -> `Result`."""

    def __init__(self, pipe: AVGenPipeline, workdir: str | Path, limits: Limits | None = None) -> None:
        self.pipe = pipe
        self.workdir = Path(workdir)
        self.limits = limits or Limits()
        self.longest = pipe.duration * MAX_LENGTH_FACTOR  # the longest clip the model makes in one window

    # --------------------------------------------------------------------------------------------------------------
    # checking and reading
    # --------------------------------------------------------------------------------------------------------------
    def check(self, req: Request) -> dict:
        """Validated sampler arguments for the pipeline; AppError on the first bad field."""
        lim = self.limits
        if req.task not in TASK_LABELS:
            raise AppError(f"unknown task {req.task!r}: choose one of {', '.join(TASK_LABELS)}")
        prompt = (req.prompt or "").strip()
        script = self.check_script(req)
        if req.task in TEXT_TASKS and not prompt and script is None:
            raise AppError(f"type a prompt first ({req.task} makes a clip from text), or click an example")
        if len(prompt) > lim.max_prompt_chars and script is None:
            raise AppError(f"the prompt has {len(prompt)} characters; keep it under {lim.max_prompt_chars}")
        args = {
            "seed": int(_number(req.seed, "seed", 0, 2**31 - 1, whole=True)),
            "steps": int(_number(req.steps, "steps", 1, lim.max_steps, whole=True)),
            "cfg_video": _number(req.cfg_video, "video guidance", 0, lim.max_cfg),
            "cfg_audio": _number(req.cfg_audio, "audio guidance", 0, lim.max_cfg),
        }
        if req.cfg_sync is not None:
            args["cfg_sync"] = _number(req.cfg_sync, "sync guidance", 0, lim.max_cfg)
        if req.task in TEXT_TASKS:
            args["duration"] = _number(req.duration, "duration (s)", 1 / self.pipe.fps, self.longest)
        elif TASKS[req.task].given == "prefix":
            args["seconds"] = _number(req.duration, "seconds to add", 1 / self.pipe.fps, lim.max_extend_seconds)
        if req.preview not in ("mp4", "webm"):
            raise AppError(f"preview must be mp4 or webm, got {req.preview!r}")
        if script is not None:
            if "duration" in args:
                try:
                    script.check_duration(args["duration"])
                except InputError as e:
                    raise AppError(str(e)) from None
            args["script"] = script
        return args

    def check_script(self, req: Request) -> Script | None:
        """The script box parsed (None when empty); AppError naming the line otherwise."""
        text = (req.script or "").strip()
        if not text:
            return None
        if len(text) > self.limits.max_script_chars:
            raise AppError(f"the script has {len(text)} characters; keep it under {self.limits.max_script_chars}")
        if TASKS[req.task].given == "prefix":
            raise AppError(f"{req.task} continues a clip window by window: clear the script, or pick another task")
        try:
            return Script.parse(text, source="the script")
        except InputError as e:
            raise AppError(str(e)) from None

    def read_upload(self, req: Request) -> dict:
        """The task's upload read at the model's rate, fps and frame size: {"audio"|"video"|"clip": ...}."""
        if req.task not in UPLOAD_OF:
            return {}
        key, what = UPLOAD_OF[req.task]
        limit = self.limits.max_upload_seconds if key == "clip" else min(self.limits.max_upload_seconds, self.longest)
        path, info = check_upload(getattr(req, key), what, self.limits, limit)
        pipe = self.pipe
        if key == "audio" and not info.has_audio:
            raise AppError(f"{what} ({path.name}) has no audio track: a2v needs sound (speech, knocks, beeps)")
        if key != "audio" and not info.has_video:
            raise AppError(f"{what} ({path.name}) has no video track: {req.task} needs pictures")
        try:
            if key == "audio":
                clip = read_clip(path, sample_rate=pipe.sample_rate, missing_audio="error")
                if clip.audio.shape[-1] == 0:
                    raise AppError(f"{what} ({path.name}) has no audio samples")
                return {"audio": clip.audio}
            clip = read_clip(path, fps=pipe.fps, size=pipe.size, sample_rate=pipe.sample_rate, missing_audio="silence")
        except MediaError as e:
            raise AppError(f"{what}: {str(e).replace(str(path), path.name)}") from e
        if clip.video.shape[0] == 0:
            raise AppError(f"{what} ({path.name}) has no video frames")
        return {"video": clip.video} if key == "video" else {"clip": clip}

    # --------------------------------------------------------------------------------------------------------------
    # generating
    # --------------------------------------------------------------------------------------------------------------
    def generate(self, req: Request, progress: ProgressFn | None = None) -> Result:
        """Check, read, sample, write; raises AppError (bad request) or MediaError/ValueError from the pipeline."""
        t0 = time.perf_counter()
        say = progress or (lambda frac, desc: None)
        args = self.check(req)
        say(0.0, "reading the upload" if req.task in UPLOAD_OF else "starting")
        inputs = self.read_upload(req)
        say(0.05, "sampling")
        prompt = "" if "script" in args else (req.prompt or "").strip()  # a script replaces the prompt
        try:
            clip = self.pipe(prompt, req.task, progress=True, **args, **inputs)
        except MediaError as e:
            raise AppError(str(e)) from e
        say(0.9, "writing the video")
        result = self.render(clip, req, args)
        result.seconds = time.perf_counter() - t0
        result.summary = summary(result, req, args, self.pipe.model_hash)
        return result

    def new_dir(self) -> Path:
        """A fresh results/<id>/ directory; the oldest beyond `keep_results` are removed."""
        root = self.workdir / "results"
        root.mkdir(parents=True, exist_ok=True)
        earlier = sorted(root.iterdir())  # names start with the time: oldest first
        for old in earlier[: max(0, len(earlier) - self.limits.keep_results + 1)]:
            shutil.rmtree(old, ignore_errors=True)
        d = root / f"{time.time_ns():020d}_{uuid.uuid4().hex[:6]}"
        d.mkdir()
        return d

    def render(self, clip: AVClip, req: Request, args: dict) -> Result:
        from avgen.viz import clip_panel

        out = self.new_dir()
        prompt = args["script"].prompt() if "script" in args else (req.prompt or "").strip()
        slug = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:40] or "clip"
        name = f"{req.task}_{slug}_s{args['seed']}"
        meta = {"prompt": prompt, "seed": str(args["seed"]), "task": req.task, "steps": str(args["steps"])}
        if "script" in args:
            meta["script"] = json.dumps(args["script"].to_list())
        meta.update({"model_hash": self.pipe.model_hash, "generator": "avgen-app"})
        shown = clip
        if clip.video.shape[0] == 0:  # t2a: the download is the sound; the player shows its spectrogram scrolling by
            download = clip.save(out / f"{name}.wav")
            n = round(clip.audio.shape[-1] / clip.sample_rate * self.pipe.fps)
            shown = AVClip(
                spectrogram_video(clip.audio, clip.sample_rate, n), clip.audio, self.pipe.fps, clip.sample_rate
            )
            mp4 = shown.save(out / f"{name}.mp4", metadata=meta)
        else:
            download = mp4 = clip.save(out / f"{name}.mp4", metadata=meta)
        preview = write_webm(shown, out / f"{name}.webm") if req.preview == "webm" else mp4
        figure = out / "frames_and_spectrogram.png"
        clip_panel(clip, frames=8, height=96, title="").save(figure)  # the page shows the prompt
        return Result(preview, download, figure, shown.duration, 0.0, sync_metrics(clip, req.task, prompt))


def sync_metrics(clip: AVClip, task: str, prompt: str) -> dict[str, str]:
    """Offset and AV-Align of a result; mouth_sync too when it is speech (a2v, or a prompt about talking)."""
    from avgen.metrics.sync import av_align, estimate_offset, mouth_sync

    if clip.video.shape[0] < 3:
        return {"sync": "no pictures (t2a): no sync metrics"}
    if float(clip.audio.abs().max()) < 1e-4:
        return {"sync": "no sound (t2v): no sync metrics"}
    offset, confidence = estimate_offset(clip)
    metrics = {
        "offset": f"{offset * 1000:+.0f} ms (confidence {confidence:.2f}; + = sound after picture)",
        "AV-Align": f"{av_align(clip):.2f}",
    }
    if TASKS[task].given == "audio" or SPEECH.search(prompt):
        metrics["mouth_sync"] = f"{mouth_sync(clip):.2f}"
    return metrics


def summary(result: Result, req: Request, args: dict, model_hash: str) -> str:
    rows = [("time taken", f"{result.seconds:.1f} s"), ("clip", f"{result.duration:.2f} s")]
    rows += list(result.metrics.items())
    rows += [("task / seed / steps", f"{req.task} / {args['seed']} / {args['steps']}"), ("model", model_hash)]
    lines = ["| result | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def spectrogram_video(
    audio: torch.Tensor, sample_rate: int, frames: int, size: tuple[int, int] = (128, 256)
) -> torch.Tensor:
    """uint8 (frames, h, w, 3): the log-mel spectrogram of `audio` with a white playhead moving across it."""
    from avgen.viz import log_mel_image

    h, w = size
    image = torch.from_numpy(np.asarray(log_mel_image(audio, sample_rate, w, h)).copy())
    video = image.expand(frames, h, w, 3).clone()
    for i in range(frames):
        x = min(w - 1, round(i / max(frames, 1) * w))
        video[i, :, x] = 255
    return video


def write_webm(clip: AVClip, path: Path) -> Path:
    """VP9 + Opus WebM of a clip, for browsers that cannot play H.264/AAC. Atomic like write_clip."""
    rate = Fraction(clip.fps).limit_denominator(1001)
    video = clip.video.cpu().numpy()
    audio = clip.audio.detach().float().clamp(-1, 1).cpu().numpy()
    layout = "mono" if audio.shape[0] == 1 else "stereo"
    sr = int(clip.sample_rate)
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="webm") as out:
        vs = out.add_stream("libvpx-vp9", rate=rate, options={"crf": "30", "b": "0", "deadline": "realtime"})
        vs.width, vs.height, vs.pix_fmt = video.shape[2], video.shape[1], "yuv420p"
        opus_rate = sr if sr in (8000, 12000, 16000, 24000, 48000) else 48000  # the rates libopus takes
        aus = out.add_stream("libopus", rate=opus_rate, layout=layout)
        for i, frame in enumerate(video):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts = i
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio), format="fltp", layout=layout)
        af.sample_rate, af.pts = sr, 0
        out.mux(aus.encode(af))
        out.mux(aus.encode(None))
    return path
