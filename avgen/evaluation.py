"""Evaluation against the world's ground truth: the one place that reads `clip.meta` (avgen.metrics never does).

- What an autoencoder round trip keeps of what generation needs: colours, shapes and contacts in the frames;
  impacts, beeps and voices in the sound (tools/eval_ae.py and the AE trainer's validation pass).
- The dependence probe's clips, with their families and event times (tools/evaluate.py and the DiT trainer's
  validation pass; the probe itself is avgen.metrics.dependence).
- Script control of the timed families (dialogue, scripted): clips made from real clips' scripts, scored against
  them (`script_rows`; the metrics are avgen.metrics.script, which read the script as input, not meta).

The detectors read decoded frames and samples only; object masks, contact times and the caption's attributes are the
ground truth they are scored against.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np
import torch

from avgen.data.avworld.vocab import SHAPE_SOUNDS
from avgen.media import AVClip
from avgen.metrics.attributes import accuracy, attributes_from_meta, read_attributes
from avgen.metrics.contacts import video_contacts
from avgen.metrics.onsets import detect_onsets, match_events
from avgen.metrics.recon import bands_energy_kept, object_fidelity, psnr, si_sdr, ssim

VANISHED = 0.25  # an object keeping under a quarter of its contrast has melted into the background


@torch.no_grad()
def decode_video(clips: list[AVClip], video_ae) -> list[torch.Tensor]:
    """Each clip's frames through the video AE: uint8 (t, h, w, 3)."""
    from avgen.data import collate_clips, video_from_model

    dev = next(video_ae.parameters()).device
    out = []
    for c in clips:
        x = collate_clips([dataclasses.replace(c, meta={})])["video"].to(dev)
        out.append(video_from_model(video_ae.decode(video_ae.encode(x)).clamp(-1, 1)[0].cpu())[: c.video.shape[0]])
    return out


@torch.no_grad()
def decode_audio(clips: list[AVClip], audio_ae) -> list[torch.Tensor]:
    """Each clip's waveform through the audio AE: (c, n)."""
    dev = next(audio_ae.parameters()).device
    return [audio_ae.decode(audio_ae.encode(c.audio[None].to(dev))).clamp(-1, 1)[0, :, : c.audio.shape[1]].cpu()
            for c in clips]  # fmt: skip


def video_report(clips: list[AVClip], decoded: list[torch.Tensor], masks: list[list[tuple[dict, np.ndarray]]],
                 frame: float) -> dict[str, float]:  # fmt: skip
    """PSNR/SSIM, per-object colour error and contrast (from `masks`: AVWorld.object_masks), the video attributes
    the detectors read back, and the contacts the video contact detector finds on real frames that it finds again."""
    rows: dict[str, list] = defaultdict(list)
    for clip, dec, objects in zip(clips, decoded, masks, strict=True):
        rows["video PSNR (dB)"].append(psnr(clip.video, dec))
        rows["video SSIM"].append(ssim(clip.video, dec))
        for attrs, coverage in objects:
            fid = object_fidelity(clip.video, dec, coverage)
            rows["object colour error"].append(fid["colour error"])
            rows["object contrast kept"].append(fid["contrast kept"])
            if attrs.get("size") == "small":
                rows["small objects: contrast kept"].append(fid["contrast kept"])
            rows["objects vanished (count)"].append(float(fid["contrast kept"] < VANISHED))
        if clip.meta.get("family") == "bounce":
            real = video_contacts(clip.video, clip.fps)
            again = video_contacts(dec, clip.fps)
            rows["contacts seen again (video detector)"] += [len(again) > 0 and np.abs(np.array(again) - t).min()
                                                             <= frame for t in real]  # fmt: skip
            rows["contact detector recall on real frames"].append(match_events(real, clip.meta["events"], frame)[1])
    out = {k: float(np.nansum(v)) if "count" in k else _mean(v) for k, v in rows.items()}
    with_video = [dataclasses.replace(c, video=d, meta={}) for c, d in zip(clips, decoded, strict=True)]
    out |= _attributes(clips, with_video, ("family", "colour", "shape"))
    return out


def audio_report(clips: list[AVClip], decoded: list[torch.Tensor], frame: float,
                 real_speech: dict | None = None) -> dict[str, float]:  # fmt: skip
    """Log-mel L1, SI-SDR and the energy kept below and above 1 kHz, onsets against the true contacts (within a
    frame), and what the detectors hear back: per impact timbre (single-shape bounce clips), per beep pitch, the
    voice, and the words (speech WER of the real talk clips and of their round trip). real_speech: the real clips'
    speech_rows(clips, {"real": clips}), when the caller already has it (the same clips at every validation)."""
    from avgen.autoencoders.losses import log_mel_l1

    rows: dict[str, list] = defaultdict(list)
    for clip, dec in zip(clips, decoded, strict=True):
        rows["audio log-mel L1"].append(float(log_mel_l1(clip.audio[None], dec[None], clip.sample_rate)))
        rows["audio SI-SDR (dB)"].append(si_sdr(clip.audio, dec))
        below, above = bands_energy_kept(clip.audio, dec, clip.sample_rate, [(0, 1000), (1000, None)])
        rows["audio energy kept < 1 kHz (dB)"].append(below)
        rows["audio energy kept > 1 kHz (dB)"].append(above)
        if clip.meta.get("family") == "bounce":
            p, r = match_events(detect_onsets(dec, clip.sample_rate), clip.meta["events"], frame)
            rows["onsets at a contact (precision)"].append(p)
            rows["contacts with an onset (recall)"].append(r)
    out = {k: _mean(v) for k, v in rows.items()}
    with_audio = [dataclasses.replace(c, audio=d, meta={}) for c, d in zip(clips, decoded, strict=True)]
    out |= _attributes(clips, with_audio, ("sound", "pitch", "voice"))
    out |= _per_class(clips, with_audio)
    real = real_speech if real_speech is not None else speech_rows(clips, {"real": clips})
    for name, row in (real | speech_rows(clips, {"round trip": with_audio})).items():
        out[f"speech WER, {name} (talk clips)"] = row["WER"]
    return out


@torch.no_grad()
def palette_report(video_ae, size: int = 64, frames: int = 16) -> dict[str, float]:
    """Each avworld colour as a static square on the grey background, large (3/4 of the frame) and small (1/8),
    through the round trip: the mean and worst per-colour RGB error (0..1) inside the square's interior (1 px in
    from its edge). The simplest form of the colour loss: a green square coming back grey reads ~0.3 here."""
    from avgen.data.avworld.vocab import BACKGROUNDS, COLOURS

    t = video_ae.geometry.input_length(max(1, frames // video_ae.geometry.time_stride))  # frames the AE accepts
    dev = next(video_ae.parameters()).device
    out = {}
    for name, side in (("large", size * 3 // 4), ("small", size // 8)):
        lo = (size - side) // 2
        errors = []
        for rgb in COLOURS.values():
            x = torch.tensor(BACKGROUNDS["grey"]).view(3, 1, 1, 1).repeat(1, t, size, size)  # (3, t, h, w) in 0..1
            x[:, :, lo : lo + side, lo : lo + side] = torch.tensor(rgb).view(3, 1, 1, 1)
            y = video_ae.decode(video_ae.encode(x[None].to(dev) * 2 - 1)).clamp(-1, 1)[0].cpu() / 2 + 0.5
            inner = (slice(None), slice(None), slice(lo + 1, lo + side - 1), slice(lo + 1, lo + side - 1))
            errors.append(float((y[inner] - x[inner]).abs().mean()))
        out[f"static {name} squares: colour error (mean)"] = float(np.mean(errors))
        out[f"static {name} squares: colour error (worst)"] = float(np.max(errors))
    return out


def speech_rows(reals: list[AVClip], sets: dict[str, list[AVClip]]) -> dict[str, dict]:
    """WER of the talking heads (PocketSphinx restricted to avworld's words) per set, against the words each clip's
    caption quotes and against another clip's (the chance level of the restricted vocabulary); {} with under 2."""
    from avgen.data.avworld.vocab import WORDS
    from avgen.metrics.speech import intelligibility

    talk = [i for i, c in enumerate(reals) if c.meta.get("family") == "talk"]
    if len(talk) < 2:
        return {}
    words = [reals[i].meta["attributes"]["words"] for i in talk]  # what the caption says (ground truth)
    return {name: intelligibility([clips[i] for i in talk], words, WORDS) | {"clips": len(talk)}
            for name, clips in sets.items()}  # fmt: skip


def script_rows(reals: list[AVClip], sets: dict[str, list[AVClip]]) -> dict:
    """Script control (avgen.metrics.script) of timed avworld clips (dialogue, scripted). `sets`: clips made from
    the real clips' scripts (clip i from real clip i's meta["script"], the input), each scored against that script;
    beside them the real clips, and the real clips against another clip's script (chance: the next clip of the same
    family, cyclically; of any family for a family of one). Returns {"clips", "counts" (lines, mouths, events scored
    per clip set), "columns": {set: {row: value}}}, the rows of avgen.metrics.script.ROWS plus generated / real ratios
    of mouth_sync and WER."""
    from avgen.metrics.script import counts, score_script, summarise

    scripts, families = [c.meta["script"] for c in reals], [c.meta["family"] for c in reals]
    other = [_next_of(families, i) for i in range(len(reals))]
    jobs = {**{name: [(c, i) for i, c in enumerate(clips)] for name, clips in sets.items()},
            "real": [(c, i) for i, c in enumerate(reals)],
            "real vs another clip's script": [(c, other[i]) for i, c in enumerate(reals)]}  # fmt: skip
    scores = {name: [score_script(dataclasses.replace(c, meta={}), scripts[i], families[i]) for c, i in job]
              for name, job in jobs.items()}  # fmt: skip
    columns = {name: summarise(s) for name, s in scores.items()}
    for row in ("mouth_sync in span", "per-line WER"):
        for col in columns.values():
            col[f"{row} ÷ real"] = col[row] / columns["real"][row] if columns["real"][row] else float("nan")
    return {"clips": len(reals), "families": {f: families.count(f) for f in sorted(set(families))},
            "counts": counts(scores["real"]), "columns": columns}  # fmt: skip


def _next_of(families: list[str], i: int) -> int:
    """The next clip after i (cyclically) of i's family; of any family when i's family has no other clip."""
    n = len(families)
    same = [j for j in range(i + 1, i + n) if families[j % n] == families[i]]
    return (same[0] if same else i + 1) % n


def _mean(values) -> float:
    """Mean of the finite values; nan when there are none."""
    a = np.asarray(values, float)
    return float(a[np.isfinite(a)].mean()) if np.isfinite(a).any() else float("nan")


def _attributes(clips, trips, names) -> dict[str, float]:
    """Per attribute in `names`, the share of (avworld) clips whose round trip reads back their caption's value."""
    keep = [i for i, c in enumerate(clips) if "family" in c.meta and attributes_from_meta(c.meta)]  # none: timed
    if not keep:
        return {}
    truths = [attributes_from_meta(clips[i].meta) for i in keep]
    got = accuracy([read_attributes(trips[i]) for i in keep], truths)
    return {f"{k} kept": v for k, v in got.items() if k in names}


def _per_class(clips, trips) -> dict[str, float]:
    """Sound class kept per impact timbre (single-object bounce clips) and beep pitch kept per pitch."""
    from avgen.metrics.attributes import detect_beep_pitch, detect_sounds

    hits: dict[str, list[bool]] = defaultdict(list)
    for clip, trip in zip(clips, trips, strict=True):
        a = clip.meta.get("attributes", {})
        if clip.meta.get("family") == "bounce" and len(a["objects"]) == 1:
            sound = SHAPE_SOUNDS[a["objects"][0]["shape"]]
            hits[f"{sound} kept"].append(detect_sounds(trip.audio, trip.sample_rate) == (sound,))
        elif clip.meta.get("family") == "blink":
            hits[f"{a['pitch']} beep kept"].append(detect_beep_pitch(trip.audio, trip.sample_rate) == a["pitch"])
    return {k: float(np.mean(v)) for k, v in sorted(hits.items())}


@torch.no_grad()
def probes_from_clips(clips, video_ae, audio_ae, text_encoder, layout, seed: int = 0):
    """AVClips (with meta "family" and "events" where known) -> an avgen.metrics.dependence.ProbeSet at the layout's
    format; a clip without a family counts as family "all" and one without events has no event tokens."""
    from avgen.data import collate_clips
    from avgen.metrics.dependence import make_probe_set

    batch = collate_clips(clips)
    dev = next(video_ae.parameters()).device
    frames, samples = layout.media_lengths(video_ae.geometry, audio_ae.geometry)
    zv = video_ae.normalize(video_ae.encode(batch["video"][:, :, :frames].to(dev))).cpu()  # (n, c, t, h, w)
    za = audio_ae.normalize(audio_ae.encode(batch["audio"][..., :samples].to(dev))).cpu()  # (n, c, m)
    xv, xa = layout.patchify(zv, za)  # (n, lv, pv), (n, la, pa)
    text, mask = text_encoder([c.caption for c in clips])
    families = [c.meta.get("family", "all") for c in clips]
    events = [c.meta.get("events", []) for c in clips]
    return make_probe_set(xv, xa, text.cpu(), mask.cpu(), families, layout, events, 1.0 / clips[0].fps, seed)
