#!/usr/bin/env python
"""Evaluate a trained model on held-out captions: sync, attributes, Fréchet distance, A2V and V2A.

    OMP_NUM_THREADS=1 python tools/evaluate.py --model runs/export_latest --count 32 --steps 16 \
        --out outputs/eval            # writes eval.md, eval.json, bars.png, samples.png there

Held out: avworld scenes from seed 777 (--world-seed; training used seed 0) and hand-written captions with attribute
combinations the avworld never makes (a triangle that knocks like wood, a triangle lamp, unseen pairs of objects);
--latents checks both against the training captions. Every number stands beside the same metric on real clips, on
real clips through the autoencoders (the best a generator can do with them) and on audio-shuffled real clips (audio of
another clip of the same family: right kind of sound, wrong timing). Attribute detectors (avgen.metrics.attributes)
read pixels and samples only; ground truth comes from the captions' attributes. --scripts N: script control
(avgen.metrics.script) on N held-out dialogue/scripted clips, the model given each clip's script vs the same lines as
one untimed prompt.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run as `python tools/evaluate.py`: tools.eval_report
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from avgen.autoencoders import Autoencoder
from avgen.data import AVWorld, collate_clips, video_from_model
from avgen.data.avworld.vocab import SHAPE_SOUNDS, TIMED_FAMILIES
from avgen.evaluation import speech_rows
from avgen.media import AVClip, MediaError, read_clip
from avgen.metrics import av_align, detect_onsets, mouth_sync
from avgen.metrics.attributes import (
    ATTRIBUTES,
    accuracy,
    attributes_from_meta,
    detect_family,
    detect_sounds,
    mismatched_accuracy,
    read_attributes,
)
from avgen.metrics.frechet import fd_scores
from avgen.metrics.onsets import match_events
from avgen.metrics.sync import offset_error
from avgen.paths import portable_path
from avgen.pipeline import AVGenPipeline
from tools.eval_report import markdown, plots

HELD_OUT_SEED = 777
FRAME_TOL = 0.0625  # s: one frame at 16 fps
WOOD, METAL, GLASS = "wooden knocks", "metallic clangs", "glassy pings"


def _bounce(objects: list[tuple[str, str, str]], sounds: list[str]) -> tuple[dict, tuple]:
    """(attributes the caption states, combination key) of a bounce caption; objects as (size, colour, shape)."""
    truth = {"family": "bounce", "colour": tuple(sorted(c for _, c, _ in objects)),
             "shape": tuple(sorted({s for _, _, s in objects})), "sound": tuple(sorted(set(sounds)))}  # fmt: skip
    return truth, ("bounce", tuple(sorted(objects)), truth["sound"])


def _blink(colour: str, shape: str, pitch: str) -> tuple[dict, tuple]:
    return {"family": "blink", "colour": (colour,), "shape": (shape,), "pitch": pitch}, ("blink", colour, shape, pitch)


def _talk(voice: str, words: tuple[str, ...]) -> tuple[dict, tuple]:
    return {"family": "talk", "voice": voice}, ("talk", voice, words)


def combination(meta: dict) -> tuple:
    """The combination key of an avworld clip's ground truth, as the NOVEL entries give it."""
    a = meta["attributes"]
    if meta["family"] in TIMED_FAMILIES:  # scripts: no NOVEL entry to compare with
        return (meta["family"],)
    if meta["family"] == "bounce":
        objects = [(o["size"], o["colour"], o["shape"]) for o in a["objects"]]
        return _bounce(objects, [SHAPE_SOUNDS[o["shape"]] for o in a["objects"]])[1]
    if meta["family"] == "blink":
        return _blink(a["colour"], a["shape"], a["pitch"])[1]
    return _talk(a["voice"], tuple(a["words"]))[1]


# Written by hand from avgen/data/avworld/vocab.py: combinations no avworld clip has (a shape's sound is fixed, lamps
# are circles or squares), and pairs of objects and word sequences the training set lacks (checked with --latents).
NOVEL = [
    ("a small red triangle bounces around with wooden knocks", *_bounce([("small", "red", "triangle")], [WOOD])),
    ("a large blue circle bounces off the walls with metallic clangs",
     *_bounce([("large", "blue", "circle")], [METAL])),
    ("a small green square bounces around with glassy pings", *_bounce([("small", "green", "square")], [GLASS])),
    ("a large yellow triangle ricochets between the walls, making metallic clangs on a grey background",
     *_bounce([("large", "yellow", "triangle")], [METAL])),
    ("a small purple square bounces around; every hit gives dull knocks against black",
     *_bounce([("small", "purple", "square")], [WOOD])),
    ("a large orange circle bounces around with bright glass pings on a white background",
     *_bounce([("large", "orange", "circle")], [GLASS])),
    ("a purple triangle lamp blinks with a high beep each time it lights up", *_blink("purple", "triangle", "high")),
    ("an orange triangle light blinks and gives a low tone while lit", *_blink("orange", "triangle", "low")),
    ("a large green square and a large red triangle bounce around with metallic clangs and glassy pings",
     *_bounce([("large", "green", "square"), ("large", "red", "triangle")], [METAL, GLASS])),
    ("a large blue triangle and a small yellow circle bounce around with glassy pings and wooden knocks",
     *_bounce([("large", "blue", "triangle"), ("small", "yellow", "circle")], [GLASS, WOOD])),
    ("a woman says 'moon yes'", *_talk("high", ("moon", "yes"))),
    ("a man with a deep voice says 'tomato banana'", *_talk("low", ("tomato", "banana"))),
]  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# baselines and metrics
# ----------------------------------------------------------------------------------------------------------------------
def shuffled(clips: list[AVClip], groups: list[str]) -> list[AVClip]:
    """Clip i's video with the audio of the next clip of its group (family), cyclically; a group of one keeps its own
    audio, so give groups of two or more."""
    out = list(clips)
    for g in set(groups):
        idx = [i for i, x in enumerate(groups) if x == g]
        for n, i in enumerate(idx):
            out[i] = dataclasses.replace(clips[i], audio=clips[idx[(n + 1) % len(idx)]].audio)
    return out


@torch.no_grad()
def round_trip(clip: AVClip, video_ae: Autoencoder, audio_ae: Autoencoder) -> AVClip:
    """The clip encoded and decoded by both autoencoders: the best a generator using them can give back."""
    batch, dev = collate_clips([dataclasses.replace(clip, meta={})]), next(video_ae.parameters()).device
    video = video_from_model(video_ae.decode(video_ae.encode(batch["video"].to(dev))).clamp(-1, 1)[0].cpu())
    audio = audio_ae.decode(audio_ae.encode(batch["audio"].to(dev))).clamp(-1, 1)[0][:, : clip.audio.shape[1]].cpu()
    return AVClip(video[: clip.video.shape[0]], audio, clip.fps, clip.sample_rate, clip.caption)


def sync_metrics(clips: list[AVClip], talk: list[bool]) -> dict[str, float]:
    offsets = [offset_error(c) for c in clips]
    ms = [1000 * error for error, _ in offsets]
    mouth = [mouth_sync(c) for c, t in zip(clips, talk, strict=True) if t]
    return {
        "median |A/V offset| (ms)": float(np.median(ms)),
        "low-confidence offsets (share)": float(np.mean([not trusted for _, trusted in offsets])),
        "AV-Align": float(np.mean([av_align(c) for c in clips])),
        "mouth_sync (talking heads)": float(np.mean(mouth)) if mouth else float("nan"),
    }


def attribute_rows(sets: dict[str, tuple[list[AVClip], list[dict]]]) -> dict[str, dict]:
    """Per set: attribute accuracy against its truths, and against other clips' truths (chance)."""
    out = {}
    for name, (clips, truths) in sets.items():
        preds = [read_attributes(dataclasses.replace(c, meta={})) for c in clips]
        out[name] = {"accuracy": accuracy(preds, truths), "other captions": mismatched_accuracy(preds, truths)}
        out[name]["readings"] = [{k: p[k] for k in ATTRIBUTES} for p in preds]
    return out


# ----------------------------------------------------------------------------------------------------------------------
# the sections
# ----------------------------------------------------------------------------------------------------------------------
def training_overlap(latents: str | None, captions: list[str]) -> dict:
    """How many held-out captions appear verbatim among the training captions, and which NOVEL combinations the
    training set has (read from the shards' headers only)."""
    from safetensors import safe_open

    files = sorted(Path(latents).glob("shard_*.safetensors")) if latents else []
    if not files:
        return {"note": "no --latents shards: not checked against the training captions"}
    train_caps, combos = set(), set()
    for f in files:
        with safe_open(str(f), framework="pt") as sf:
            meta = sf.metadata() or {}
        train_caps.update(json.loads(meta.get("captions", "[]")))
        combos.update(combination(m) for m in json.loads(meta.get("meta", "[]")))
    novel_seen = [cap for cap, _, key in NOVEL if key in combos]
    return {
        "training captions": len(train_caps),
        "held-out scene captions also in training (verbatim)": sum(c in train_caps for c in captions),
        "held-out scene captions": len(captions),
        "novel captions whose attribute combination training has": novel_seen,
        "novel captions in training (verbatim)": sum(cap in train_caps for cap, _, _ in NOVEL),
    }


def held_out(pipe: AVGenPipeline, args: argparse.Namespace, families: list[str] | None = None) -> AVWorld:
    """The held-out scenes: avworld of --world-seed (777 unless a selection asks for other scenes)."""
    return AVWorld(args.world_seed, fps=pipe.fps, size=pipe.size, sample_rate=pipe.sample_rate, families=families)


def text_to_av(pipe: AVGenPipeline, args: argparse.Namespace) -> tuple[dict, list[AVClip]]:
    world, aes = held_out(pipe, args), (pipe.video_ae, pipe.audio_ae)
    reals = [world[i] for i in range(args.count)]
    truths = [attributes_from_meta(c.meta) for c in reals]
    fams = [c.meta["family"] for c in reals]
    t0 = time.perf_counter()
    gens = [pipe(c.caption, seed=args.seed + i, **args.sampler) for i, c in enumerate(reals)]
    rtf = (time.perf_counter() - t0) / sum(c.duration for c in gens)
    novel_set = NOVEL[: args.novel]
    novel = [pipe(cap, seed=args.seed + 10_000 + i, **args.sampler) for i, (cap, _, _) in enumerate(novel_set)]
    trips = [round_trip(c, *aes) for c in reals]
    shuf = shuffled(reals, fams)
    talk = [f == "talk" for f in fams]
    sync = {name: sync_metrics(clips, talk) for name, clips in
            (("generated", gens), ("real", reals), ("AE round trip", trips), ("audio-shuffled", shuf))}  # fmt: skip
    attrs = attribute_rows({
        "generated": (gens, truths), "generated, novel captions": (novel, [t for _, t, _ in novel_set]),
        "real": (reals, truths), "AE round trip": (trips, truths), "audio-shuffled": (shuf, truths),
    })  # fmt: skip
    reference = [world[args.count + i] for i in range(args.count)]
    fd = fd_scores({"generated": gens, "real": reals, "AE round trip": trips, "audio-shuffled": shuf}, reference, *aes)
    out = {
        "sync": sync,
        "attributes": attrs,
        "fd": fd,
        "captions": [c.caption for c in reals],
        "real-time factor": rtf,
        "intelligibility": speech_rows(reals, {"generated": gens, "real": reals, "AE round trip": trips}),
    }
    return out, gens[:2] + novel[:2]


def speech_windows(n: int, sample_rate: int) -> tuple[list[torch.Tensor], str]:
    """Up to n 2-second windows of real recorded speech (pocketsphinx-testdata's LibriVox readings)."""
    try:
        listed = subprocess.run(["dpkg", "-L", "pocketsphinx-testdata"], capture_output=True, text=True, check=False)
    except OSError:
        return [], "dpkg not found"
    files = sorted(p for p in listed.stdout.split() if p.endswith(".wav") and "librivox" in p)
    windows = []
    for f in files:
        try:
            audio = read_clip(f, sample_rate=sample_rate, channels=1).audio
        except MediaError:
            continue
        for s in range(0, audio.shape[1] - 2 * sample_rate + 1, 2 * sample_rate):
            w = audio[:, s : s + 2 * sample_rate]
            windows.append(0.7 * w / w.abs().max().clamp_min(1e-6))
    note = f"{len(files)} LibriVox files of pocketsphinx-testdata" if files else "pocketsphinx-testdata missing"
    return windows[:n], note


def audio_to_video(pipe: AVGenPipeline, args: argparse.Namespace) -> tuple[dict, list[AVClip]]:
    from avgen.data.avworld.vocab import SPEAKER
    from avgen.metrics.attributes import detect_voice

    prompt = lambda a: f"{SPEAKER[detect_voice(a, pipe.sample_rate) or 'low'][0]} talks"  # voice heard, no words
    talks = held_out(pipe, args, ["talk"])
    reals = [talks[i] for i in range(args.task_count)]
    recorded, note = speech_windows(args.task_count, pipe.sample_rate)
    out, shown = {"recorded speech source": note}, []
    for name, audios in (("avworld speech", [c.audio for c in reals]), ("recorded speech", recorded)):
        if len(audios) < 2:
            continue
        gens = [pipe(prompt(a), task="a2v", audio=a, seed=args.seed + i, **args.sampler)
                for i, a in enumerate(audios)]  # fmt: skip
        other = shuffled(gens, ["all"] * len(gens))
        out[name] = {
            "generated": float(np.mean([mouth_sync(g) for g in gens])),
            "generated video, other audio": float(np.mean([mouth_sync(g) for g in other])),
            "generated video looks like a talking head (share)": float(np.mean([detect_family(g.video) == "talk"
                                                                                for g in gens])),
            "clips": len(gens),
        }  # fmt: skip
        if name == "avworld speech":
            out[name]["real"] = float(np.mean([mouth_sync(c) for c in reals]))
            out[name]["audio-shuffled"] = float(np.mean([mouth_sync(c) for c in shuffled(reals, ["t"] * len(reals))]))
        shown += gens[:1]
    return out, shown


def video_to_audio(pipe: AVGenPipeline, args: argparse.Namespace) -> tuple[dict, list[AVClip]]:
    bounces, aes = held_out(pipe, args, ["bounce"]), (pipe.video_ae, pipe.audio_ae)
    reals = [bounces[i] for i in range(args.task_count)]
    prompts = [c.caption if args.v2a_prompt == "caption" else "" for c in reals]
    gens = [pipe(p, task="v2a", video=c.video, seed=args.seed + i, **args.sampler)
            for i, (p, c) in enumerate(zip(prompts, reals, strict=True))]  # fmt: skip
    sets = {"generated": gens, "real": reals, "AE round trip": [round_trip(c, *aes) for c in reals],
            "audio-shuffled": shuffled(reals, ["b"] * len(reals))}  # fmt: skip
    out = {}
    for name, clips in sets.items():
        pr = np.array([match_events(detect_onsets(c.audio, c.sample_rate), r.meta["events"], FRAME_TOL)
                       for c, r in zip(clips, reals, strict=True)])  # fmt: skip
        out[name] = {
            "onsets within a frame of a contact (share)": float(np.nanmean(pr[:, 0])),
            "contacts that got an onset (share)": float(np.nanmean(pr[:, 1])),
            "sound class correct (share)": float(np.mean([detect_sounds(c.audio, c.sample_rate)
                                                          == attributes_from_meta(r.meta)["sound"]
                                                          for c, r in zip(clips, reals, strict=True)])),
            "AV-Align": float(np.mean([av_align(c) for c in clips])),
        }  # fmt: skip
    return out, gens[:2]


def cross_modal(pipe: AVGenPipeline, args: argparse.Namespace) -> tuple[dict, list[AVClip]]:
    """The dependence probe (avgen.metrics.dependence) on args.probe_clips held-out clips per family."""
    from avgen.data.avworld.vocab import FAMILIES
    from avgen.evaluation import probes_from_clips
    from avgen.metrics.dependence import probe

    clips = []
    for family in FAMILIES:
        world = held_out(pipe, args, [family])
        clips += [world[i] for i in range(args.probe_clips)]
    layout = pipe.layout(pipe.duration)
    with torch.no_grad():
        probes = probes_from_clips(clips, pipe.video_ae, pipe.audio_ae, pipe.text, layout)
    return probe(pipe.dit, probes, layout), []


def scripts(pipe: AVGenPipeline, args: argparse.Namespace) -> tuple[dict, list[AVClip]]:
    """Script control (avgen.evaluation.script_rows) on args.scripts held-out timed clips: the model given each
    clip's script, and given it as one plain prompt (Script.prompt(): the untimed baseline), with the same seeds."""
    from avgen.evaluation import script_rows
    from avgen.script import Script

    world = AVWorld(args.world_seed, duration=pipe.duration, fps=pipe.fps, size=pipe.size,
                    sample_rate=pipe.sample_rate, families=TIMED_FAMILIES)  # fmt: skip
    reals = [world[i] for i in range(args.scripts)]
    lines = [Script.coerce(c.meta["script"]) for c in reals]
    timed = [pipe(script=s, seed=args.seed + i, **args.sampler) for i, s in enumerate(lines)]
    untimed = [pipe(s.prompt(), seed=args.seed + i, **args.sampler) for i, s in enumerate(lines)]
    return script_rows(reals, {"scripted": timed, "untimed prompt": untimed}), timed[:1]


# ----------------------------------------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a model directory (AVGenPipeline.from_pretrained)")
    ap.add_argument("--count", type=int, default=32, help="held-out avworld captions to generate from (>= 2)")
    ap.add_argument("--novel", type=int, default=len(NOVEL), help=f"novel captions to use (of {len(NOVEL)})")
    ap.add_argument("--task-count", type=int, default=None, help="clips per A2V / V2A row (default count // 2)")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    ap.add_argument("--cfg-sync", type=float, default=None, help="sync guidance (default: the model's)")
    ap.add_argument("--probe-clips", type=int, default=16, help="held-out clips per family for the dependence probe")
    ap.add_argument("--scripts", type=int, default=20, help="held-out dialogue/scripted clips for script control "
                    "(0 skips)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0, help="sampling seed (clip i uses seed + i)")
    ap.add_argument("--world-seed", type=int, default=HELD_OUT_SEED, help="avworld seed of the held-out scenes "
                    "(a selection uses another, e.g. 778: the reported scenes are not the picked-on ones)")  # fmt: skip
    ap.add_argument("--v2a-prompt", choices=("caption", "empty"), default="caption")
    ap.add_argument("--latents", default=None, help="training latent shards, to check held-out-ness")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="outputs/eval")
    args = ap.parse_args(argv)
    if args.count < 2 or args.scripts == 1 or args.scripts < 0:
        ap.error("--count must be at least 2, --scripts 0 or at least 2")
    args.task_count = args.task_count or max(2, args.count // 2)
    args.sampler = {k: v for k, v in (("steps", args.steps), ("cfg_sync", args.cfg_sync)) if v is not None}
    try:
        pipe = AVGenPipeline.from_pretrained(args.model, device=args.device)
        pipe.settings(**args.sampler)  # refuses settings that cannot work (--steps, --cfg-sync) before any work
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out, start = Path(args.out), time.time()
    out.mkdir(parents=True, exist_ok=True)
    res = {"overlap": training_overlap(args.latents, [held_out(pipe, args)[i].caption for i in range(args.count)])}
    timing, shown = {}, []
    sections = (("dependence", cross_modal), ("t2av", text_to_av), ("a2v", audio_to_video), ("v2a", video_to_audio))
    sections += (("scripts", scripts),) if args.scripts > 0 else ()
    for name, section in sections:
        t = time.time()
        res[name], clips = section(pipe, args)
        shown += clips
        timing[name] = time.time() - t
        print(f"[evaluate] {name} done in {timing[name]:.0f} s", file=sys.stderr, flush=True)
    res["timing"] = {**timing, "total": time.time() - start}
    paths = {k: portable_path(getattr(args, k)) for k in ("model", "latents", "out")}  # nothing machine-specific
    res["config"] = {
        **vars(args),
        **paths,
        "held_out_seed": args.world_seed,
        "model_hash": pipe.model_hash,
        "steps": args.steps or pipe.sampler.steps,
        "cfg_sync": pipe.settings(**args.sampler).cfg_sync,
    }
    (out / "eval.md").write_text(markdown(res) + "\n")
    (out / "eval.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    plots(res, shown, out)
    print(markdown(res))
    print(f"wrote {out}/eval.md, eval.json, bars.png, samples.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
