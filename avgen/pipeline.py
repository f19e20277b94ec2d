"""AVGenPipeline: a trained model directory -> clips with synchronized sound, for every task.

A model directory holds three parts, each loadable on its own:

    dit/model.safetensors, dit/config.json   the joint DiT and everything about the clip format it was trained on
    video_ae/, audio_ae/                     the autoencoders (avgen.autoencoders.load)

    pipe = AVGenPipeline.from_pretrained("assets/default")
    clip = pipe("a small red ball bounces around with soft thuds", num_inference_steps=16, guidance_scale=3.0,
                generator=torch.Generator().manual_seed(1))
    clip.save("ball.mp4")
    clips = pipe(["a red ball bounces", "a woman says 'seven'"], num_clips_per_prompt=2, seed=1)  # 4 clips, 1 batch
    clip = pipe(script="a kitchen\n0.2-1.1 left: says 'apple seven'\n1.5 a knock")  # who says what, when: avgen.script
    pipe.save_pretrained("my_model")  # what from_pretrained loads, with a README.md model card

avgen's own names (steps, cfg_video, cfg_audio, cfg_sync, seed) stay as aliases: avgen.pipeline_args.

Tasks: t2av (default), t2v, t2a, a2v (audio given), v2a (video given), extend (a clip continued by sliding windows).
Given samples and frames are copied into the output; only the generated spans are decoded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from avgen.autoencoders import Autoencoder, load
from avgen.data.batch import video_from_model, video_to_model
from avgen.errors import InputError, MissingFileError
from avgen.media import AVClip, MediaError, mix_channels
from avgen.model_dir import export_model, file_hash
from avgen.models.dit import AVDiT
from avgen.models.text import encode_text
from avgen.pipeline_args import Noise, SamplerSettings, draw_noise, prompt_list
from avgen.sampling import Given, guided_velocity, schedule, solve
from avgen.script import Script
from avgen.tasks import CONTINUATION, MAX_LENGTH_FACTOR, Task, get_task, given_masks
from avgen.tokens import AVTokenLayout, ClipFormat
from avgen.train.distributed import autocast_for

NEEDS = {"audio": "audio (c, n) at the model's sample rate: audio=... (input=speech.wav)",
         "video": "video frames (t, h, w, 3) uint8: video=... (input=silent.mp4)",
         "clip": "a clip (AVClip) to continue: clip=... (input=clip.mp4)"}  # fmt: skip


@dataclass(frozen=True)
class Run:
    """What every window of one generation shares: one prompt per clip (prompt-major) and their noise; with a
    script, one script per clip (the prompts are then its prompt())."""

    prompts: tuple[str, ...]
    noise: Noise
    settings: SamplerSettings
    progress: bool
    scripts: tuple[Script, ...] | None = None

    def check_duration(self, seconds: float) -> None:
        """Refuse a script line timed past the end of a clip of `seconds`."""
        if self.scripts:
            self.scripts[0].check_duration(seconds)


class AVGenPipeline:
    """The DiT, both autoencoders and the text encoder of one trained model; call it to generate an AVClip."""

    def __init__(
        self,
        dit: AVDiT,
        video_ae: Autoencoder,
        audio_ae: Autoencoder,
        text_encoder,
        config: dict,
        model_hash: str = "untrained",
    ) -> None:
        self.dit, self.video_ae, self.audio_ae, self.text = dit.eval(), video_ae.eval(), audio_ae.eval(), text_encoder
        self.config = config
        self.format = ClipFormat.derive(video_ae, audio_ae, config["clip"], config["tokens"])
        self.sampler = SamplerSettings(**config.get("sampler", {}))
        self.model_hash = model_hash
        self.fps = float(self.format.fps)
        self.sample_rate = int(self.format.sample_rate)
        self.size = self.format.size
        self.duration = self.format.duration
        self._layouts: dict[float, AVTokenLayout] = {}

    @property
    def device(self) -> torch.device:
        return next(self.dit.parameters()).device

    # ------------------------------------------------------------------------------------------------------------
    # loading
    # ------------------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str = "cpu", text_encoder_path: str | None = None):
        """Load dir/dit, dir/video_ae, dir/audio_ae and the text encoder named in dir/dit/config.json."""
        from avgen.models.text import TextEncoder

        d = Path(directory)
        cfg_path, weights = d / "dit" / "config.json", d / "dit" / "model.safetensors"
        if not cfg_path.is_file() or not weights.is_file():
            raise MissingFileError(
                f"{d} is not an avgen model directory: it needs dit/config.json and dit/model.safetensors "
                f"(the export/ directory of an avgen-train run, or assets/default)"
            )
        config = json.loads(cfg_path.read_text())
        for key in ("dit", "clip", "tokens"):
            if key not in config:
                raise InputError(f"{cfg_path} has no {key!r} section; re-export the model with avgen-train")
        video_ae, audio_ae = load(d / "video_ae", device), load(d / "audio_ae", device)
        dit = AVDiT(**config["dit"])
        state = load_file(str(weights))
        state = {k: v.float() for k, v in state.items()}  # weights may be stored in fp16
        missing, unexpected = dit.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise InputError(f"{weights} does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}")
        text_cfg = dict(config.get("text_encoder") or {})
        text_cfg.pop("_target_", None)
        text = TextEncoder(path=text_encoder_path or text_cfg.get("path"), max_tokens=text_cfg.get("max_tokens", 32))
        return cls(dit.to(device), video_ae, audio_ae, text, config, model_hash=file_hash(weights)[:16])

    def layout(self, duration: float) -> AVTokenLayout:
        if duration not in self._layouts:
            self._layouts[duration] = self.format.layout(self.video_ae, self.audio_ae, duration)
        return self._layouts[duration]

    def valid_duration(self, seconds: float) -> float:
        """The shortest duration >= seconds that both autoencoders and the token layout accept."""
        return self.format.valid_duration(self.video_ae, self.audio_ae, seconds)

    def lengths(self, duration: float) -> tuple[int, int]:
        """(frames, samples) of the layout of `duration` (a valid duration): what encode takes and decode gives."""
        return self.format.lengths(self.video_ae, self.audio_ae, duration)

    # ------------------------------------------------------------------------------------------------------------
    # encoding / decoding
    # ------------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, video: torch.Tensor | None, audio: torch.Tensor | None, layout: AVTokenLayout):
        """uint8 (t, h, w, 3) frames and (c, n) audio of one clip -> normalised tokens (1, l, p) (zeros if None).
        Shorter inputs fill the start of the layout's span (for extend's context window)."""
        zv = torch.zeros(1, *layout.video_latent)
        za = torch.zeros(1, *layout.audio_latent)
        if video is not None:
            z = self.video_ae.normalize(self.video_ae.encode(video_to_model(video[None]).to(self.device)))
            zv[:, :, : z.shape[2]] = z.cpu().float()
        if audio is not None:
            z = self.audio_ae.normalize(self.audio_ae.encode(audio[None].to(self.device)))
            za[:, :, : z.shape[2]] = z.cpu().float()
        return layout.patchify(zv, za)

    @torch.no_grad()
    def decode(self, xv: torch.Tensor, xa: torch.Tensor, layout: AVTokenLayout, video: bool = True, audio: bool = True):
        zv, za = layout.unpatchify(xv, xa)
        frames = self.video_ae.decode(self.video_ae.denormalize(zv.to(self.device))).cpu() if video else None
        frames = video_from_model(frames[0]) if frames is not None else None  # (t, h, w, 3) uint8
        wave = self.audio_ae.decode(self.audio_ae.denormalize(za.to(self.device)))[0].float().cpu() if audio else None
        return frames, wave

    # ------------------------------------------------------------------------------------------------------------
    # sampling
    # ------------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_tokens(
        self,
        prompts: list[str],
        layout: AVTokenLayout,
        seed: int | Sequence[torch.Generator],
        given: Given | None = None,
        sampler: SamplerSettings | None = None,
        progress: bool = False,
        sync_from: int = 0,
        scripts: Sequence[Script] | None = None,
    ):
        """Denoise both modalities together for the batch of prompts; returns video and audio tokens (b, l, p).
        seed: an int (prompt i: seed + i) or one generator per prompt (avgen.pipeline_args.draw_noise).
        sync_from: the modality (0 video, 1 audio) sync guidance makes the other one follow (the task's row).
        scripts: one per prompt, read line by line in place of the prompts; their times anchor each line's text."""
        s = sampler or self.sampler
        b = len(prompts)
        gens = list(seed) if isinstance(seed, Sequence) else Noise.of(b, seed, None).window()
        noise = draw_noise(gens, (layout.lv, layout.pv), (layout.la, layout.pa))
        dev = self.device
        empty = torch.tensor([not p.strip() for p in prompts], device=dev)  # (b,) no caption: the learned null text
        if scripts is not None and len(scripts) != b:
            raise InputError(f"{len(scripts)} scripts for {b} prompts: give one script per clip")
        spans = None
        if empty.all():  # guidance has nothing to add
            text, mask = self.dit.null_text_batch(b)
            s = replace(s, cfg_video=1.0, cfg_audio=1.0)
        else:  # captionless rows of a mixed batch get the null text in every branch (their guidance adds ~0)
            text, mask, spans = encode_text(self.text, prompts if scripts is None else list(scripts))
        text, mask, spans = text.to(dev), mask.to(dev), None if spans is None else spans.to(dev)

        def model_fn(xs, levels, drop):
            reps = xs[0].shape[0] // b  # guidance branches stacked on the batch (the unconditional: null, untimed)
            with autocast_for(dev):
                out = self.dit(xs[0], xs[1], levels[0], levels[1], text.repeat(reps, 1, 1), mask.repeat(reps, 1),
                               layout, drop_text=drop | empty.repeat(reps),
                               text_spans=None if spans is None else spans.repeat(reps, 1, 1))  # fmt: skip
            return tuple(o.float() for o in out)

        velocity = guided_velocity(model_fn, (s.cfg_video, s.cfg_audio), s.cfg_sync, sync_from,
                                   noise[sync_from].to(dev))  # fmt: skip
        if given is not None:
            given = Given(tuple(m.to(dev) for m in given.masks), tuple(v.to(dev) for v in given.values))
        xs = solve(velocity, tuple(x.to(dev) for x in noise), schedule(s.steps, s.shift), s.method, given, progress)
        return xs[0].cpu(), xs[1].cpu()

    def settings(self, **overrides) -> SamplerSettings:
        """The model's sampler defaults with `overrides` (diffusers' or avgen's names, None: keep), checked."""
        return self.sampler.merged(**overrides)

    def __call__(
        self,
        prompt: str | Sequence[str] = "",
        task: str = "t2av",
        *,
        script: Script | str | Sequence | None = None,
        video: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        clip: AVClip | None = None,
        seconds: float = 2.0,
        duration: float | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        audio_guidance_scale: float | None = None,
        sync_guidance_scale: float | None = None,
        num_clips_per_prompt: int = 1,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        seed: int | None = None,
        progress: bool = False,
        **sampler,
    ) -> AVClip | list[AVClip]:
        """Generate clips. t2av/t2v/t2a: from the prompt; a2v: `audio` (c, n) at the model's rate is given;
        v2a: `video` (t, h, w, 3) uint8 at the model's fps and size is given; extend: `clip` continued by `seconds`.
        A list of prompts, each num_clips_per_prompt times, is one DiT batch sharing the given media (extend: one
        clip per call). Returns an AVClip for one prompt string and one clip, else a list of AVClips, prompt-major.
        `sampler`: avgen's names (steps, cfg_video, cfg_audio, cfg_sync, method, shift); noise: avgen.pipeline_args.
        script: instead of a prompt, lines anchored in time (anything avgen.script.Script.coerce takes), for every
        task but extend; its lines must lie within the clip. The clip's caption is then script.prompt() and its
        meta["script"] the lines (Script.to_list())."""
        spec = get_task(task)
        given = {"audio": audio, "video": video, "clip": clip}.get(spec.input)
        if spec.input is not None and given is None:
            raise InputError(f"task {task} needs {NEEDS[spec.input]}")
        the_script = self._script(script, prompt, spec)
        prompts = prompt_list(prompt if the_script is None else the_script.prompt(), num_clips_per_prompt)
        if spec.given == "prefix" and len(prompts) > 1:
            raise InputError(f"task {task} continues one clip per call: give one prompt and num_clips_per_prompt=1")
        settings = self.settings(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                 audio_guidance_scale=audio_guidance_scale, sync_guidance_scale=sync_guidance_scale,
                                 **sampler)  # fmt: skip
        scripts = None if the_script is None else (the_script,) * len(prompts)
        run = Run(tuple(prompts), Noise.of(len(prompts), seed, generator), settings, progress, scripts)
        if spec.given == "none":
            clips = self._from_text(spec, run, duration)
        elif spec.given == "prefix":
            clips = [self._extend(run, given, seconds)]
        else:
            clips = self._from_given(spec, run, given)
        for j, (out, p) in enumerate(zip(clips, prompts, strict=True)):
            out.caption = p
            seed_j = run.noise.seed_of(j)
            out.meta.update({"prompt": p, **({"seed": seed_j} if seed_j is not None else {}), "task": task,
                             "model_hash": self.model_hash})  # fmt: skip
            if the_script is not None:
                out.meta["script"] = the_script.to_list()
        return clips[0] if isinstance(prompt, str) and num_clips_per_prompt == 1 else clips

    @staticmethod
    def _script(script, prompt, spec: Task) -> Script | None:
        """script= as a Script (None without one), refused beside a prompt or for a task it cannot anchor."""
        if script is None:
            return None
        if not isinstance(prompt, str) or prompt.strip():
            raise InputError("give prompt= or script=, not both (a script's untimed lines say what a prompt would)")
        if spec.given == "prefix":
            raise InputError(f"task {spec.name} continues a clip window by window: scripts are for the other tasks")
        return Script.coerce(script)

    def save_pretrained(self, directory: str | Path, half: bool = False, **export_options) -> Path:
        """Write a model directory that from_pretrained loads back (export_model), with the current sampler
        defaults (self.sampler) and a README.md model card. half: store the DiT in fp16 (loads back as fp32)."""
        config = {k: v for k, v in self.config.items() if k != "dit"}
        config["sampler"] = asdict(self.sampler)
        return export_model(self.dit, directory, config, self.video_ae, self.audio_ae, half=half, **export_options)

    # ------------------------------------------------------------------------------------------------------------
    # the tasks: what is given, what is sampled, what is decoded and copied (given media come back untouched)
    # ------------------------------------------------------------------------------------------------------------
    def _window(self, task: str, run: Run, layout, frames=None, wave=None, prefix: float = 0.0, k: int = 0):
        """Encode what `task` gives (shared by the batch), hold those tokens, sample the rest for every prompt of
        `run` (its k-th window): video and audio tokens (b, l, p)."""
        b = len(run.prompts)
        xv, xa = self.encode(frames, wave, layout) if frames is not None or wave is not None else (None, None)
        if xv is not None:
            xv, xa = xv.expand(b, -1, -1), xa.expand(b, -1, -1)  # (b, l, p)
        given = Given.of(given_masks([task] * b, layout, [prefix] * b), xv, xa)
        return self.sample_tokens(list(run.prompts), layout, run.noise.window(k), given, run.settings, run.progress,
                                  get_task(task).sync_index, run.scripts)  # fmt: skip

    def _decoded(self, xv: torch.Tensor, xa: torch.Tensor, layout, video: bool = True, audio: bool = True):
        """(frames, wave) of each clip of a batch, decoded one clip at a time (the memory of large VAEs)."""
        return [self.decode(xv[j : j + 1], xa[j : j + 1], layout, video, audio) for j in range(xv.shape[0])]

    def frames(self, seconds: float) -> int:
        return self.video_ae.geometry.steps_in(seconds)

    def samples(self, seconds: float) -> int:
        return self.audio_ae.geometry.steps_in(seconds)

    def _length(self, seconds: float, what: str) -> float:
        """The duration to generate for `seconds` of output: checked against the model's limit, rounded up."""
        limit = self.duration * MAX_LENGTH_FACTOR
        if seconds <= 0:
            raise MediaError(f"{what} is empty: give at least {1 / self.fps:.3f} s")
        if seconds > limit + 1e-9:
            raise MediaError(f"{what} is {seconds:.2f} s; this model makes clips of up to {limit:g} s: trim it")
        return self.valid_duration(seconds)

    def _check_frames(self, video: torch.Tensor) -> None:
        if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != torch.uint8:
            raise MediaError(f"video must be uint8 (t, h, w, 3), got {tuple(video.shape)} {video.dtype}")
        if tuple(video.shape[1:3]) != self.size:
            raise MediaError(
                f"video frames are {tuple(video.shape[1:3])} but the model makes {self.size}: resize them "
                f"(read_clip(..., size={self.size}) does)"
            )

    def _from_text(self, spec: Task, run: Run, duration: float | None) -> list[AVClip]:
        want = float(duration or self.duration)
        layout = self.layout(self._length(want, f"duration={want}"))
        run.check_duration(want)
        xv, xa = self._window(spec.name, run, layout)
        keep_video, keep_audio = spec.keeps
        n_frames, n_samples = self.frames(want), self.samples(want)
        clips = []
        for frames, wave in self._decoded(xv, xa, layout, video=keep_video, audio=keep_audio):
            if not keep_audio:  # a silent track of the clip's length
                wave = torch.zeros(self.format.channels, n_samples)
            if not keep_video:
                frames = torch.zeros(0, *self.size, 3, dtype=torch.uint8)
            clips.append(AVClip(video=frames[:n_frames], audio=wave[:, :n_samples], fps=self.fps,
                                sample_rate=self.sample_rate))  # fmt: skip
        return clips

    def _from_given(self, spec: Task, run: Run, given: torch.Tensor) -> list[AVClip]:
        """a2v (audio given) and v2a (video given): the given modality is copied, the other one generated."""
        if spec.given == "audio":
            wave = mix_channels(given.float(), self.format.channels)
            seconds = wave.shape[-1] / self.sample_rate
            dur = self._length(seconds, "the given audio")
            run.check_duration(seconds)
            layout = self.layout(dur)
            padded = torch.nn.functional.pad(wave, (0, self.lengths(dur)[1] - wave.shape[-1]))
            xv, xa = self._window(spec.name, run, layout, wave=padded)
            pairs = [(frames[: self.frames(seconds)], given.float().clone())
                     for frames, _ in self._decoded(xv, xa, layout, audio=False)]  # fmt: skip
        else:
            self._check_frames(given)
            seconds = given.shape[0] / self.fps
            dur = self._length(seconds, "the given video")
            run.check_duration(seconds)
            layout = self.layout(dur)
            extra = self.lengths(dur)[0] - given.shape[0]  # repeat the last frame to fill the window
            padded = torch.cat([given, given[-1:].expand(extra, -1, -1, -1)]) if extra > 0 else given
            xv, xa = self._window(spec.name, run, layout, frames=padded)
            pairs = [(given.clone(), wave[:, : self.samples(seconds)])
                     for _, wave in self._decoded(xv, xa, layout, video=False)]  # fmt: skip
        return [AVClip(video=v, audio=a, fps=self.fps, sample_rate=self.sample_rate) for v, a in pairs]

    def _extend(self, run: Run, clip: AVClip, seconds: float) -> AVClip:
        """Sliding windows of the trained duration: each holds the last `context` seconds given and adds the rest."""
        self._check_frames(clip.video)
        if seconds <= 0:
            raise InputError(f"seconds={seconds}: give how many seconds to add (> 0)")
        context = self.valid_duration(self.duration / 2)
        if clip.duration + 1e-9 < context:
            raise MediaError(f"the clip is {clip.duration:.2f} s; extend needs at least {context:g} s to continue from")
        layout = self.layout(self.duration)
        frames, wave = clip.video, mix_channels(clip.audio.float(), self.format.channels)
        (cf, cs), full_f = self.lengths(context), self.lengths(self.duration)[0]
        # audio is cut where the video's context starts (its cs samples may end up to one token before the video's
        # context does, when the rates have no whole ratio), so the two streams stay on one clock window after window
        cut, step = self.samples(context), round((full_f - cf) * self.sample_rate / self.fps)
        want_f, want_s = frames.shape[0] + self.frames(seconds), wave.shape[1] + self.samples(seconds)
        window = replace(run, prompts=(run.prompts[0] or (clip.caption or ""),))
        k, now = 0, wave.shape[1]  # now: where the audio meets the video's end
        while frames.shape[0] < want_f or wave.shape[1] < want_s:
            given = wave[:, now - cut : now - cut + cs]
            given = torch.nn.functional.pad(given, (0, cs - given.shape[1]))  # < 1 token short: silence
            xv, xa = self._window(CONTINUATION, window, layout, frames[-cf:], given, k=k, prefix=context)
            new_f, new_w = self.decode(xv, xa, layout)
            frames, wave = torch.cat([frames, new_f[cf:]]), torch.cat([wave[:, : now - cut + cs], new_w[:, cs:]], 1)
            k, now = k + 1, now + step
        n0 = clip.video.shape[0]
        added = mix_channels(wave[:, clip.audio.shape[1] : want_s], clip.audio.shape[0])
        return AVClip(video=torch.cat([clip.video, frames[n0:want_f]]), audio=torch.cat([clip.audio.float(), added], 1),
                      fps=self.fps, sample_rate=self.sample_rate)  # fmt: skip
