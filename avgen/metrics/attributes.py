"""Attribute detectors for avworld-like clips: what a clip shows and how it sounds, read from pixels and samples only.

    read_attributes(clip) -> {"family", "colour", "shape", "sound", "voice", "pitch"}

From pixels: the scene family (moving objects / a large static face / a static blinking lamp), the named colours of the
objects (background removed), and their shapes (fill ratio of each object's mask in its bounding box: square ~1,
circle ~pi/4, triangle ~1/2). From audio: the voice (median pitch by autocorrelation: low / high), the sound class of
impacts (the lowest strong frequency of what each onset adds: wooden / metallic / glassy) and the beep pitch (low /
middle / high). Objects and sounds are sets (a scene may hold two objects), given as sorted tuples.

The detectors never read captions or `clip.meta`. `attributes_from_meta` turns avworld ground truth into the same
form, for scoring (`score`), and is never called by a detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from avgen.data.avworld.vocab import COLOURS, PITCHES, SHAPE_SOUNDS, TIMED_FAMILIES, VOICES
from avgen.media import AVClip
from avgen.metrics.onsets import detect_onsets, mono

ATTRIBUTES = ("family", "colour", "shape", "sound", "voice", "pitch")
COLOUR_NAMES = tuple(COLOURS)
_PALETTE = np.array([COLOURS[c] for c in COLOUR_NAMES], np.float32)  # (k, 3)

FG_DIFF = 0.1  # RGB distance from the background (in [0, 1] units) above which a pixel is foreground
FACE_AREA = 0.2  # a round static foreground region covering more than this share of the frame is a face
MOVING_PX = 0.6  # median foreground-centroid speed (pixels per frame) above which the objects move
BG_GAIN = 1.2  # the background may look this much brighter than its estimate (noise, grading)
COVERED = 0.6  # a pixel belongs to a colour when the fit gives the colour at least this coverage
MIN_BLOB = 12  # pixels: smaller colour blobs are noise
IMPACT_SPLITS_HZ = (300.0, 1050.0)  # wooden | metallic | glassy: impacts' peak frequencies (see classify_impact)
TONAL = 30.0  # a beep's peak stands this many times above the median power of its band (real beeps: > 1000)
VOICE_SPLIT_HZ = float(np.sqrt(VOICES["low"][1] * VOICES["high"][0]))  # between the two pitch ranges


# ----------------------------------------------------------------------------------------------------------------------
# pixels
# ----------------------------------------------------------------------------------------------------------------------
def background_rows(frames: np.ndarray, border: int = 3) -> np.ndarray:
    """Per-row background colour (H, 3): median over time of the leftmost and rightmost `border` columns.

    avworld backgrounds are plain or graded from top to bottom, and objects seldom sit on the side borders.
    """
    edges = np.concatenate([frames[:, :, :border], frames[:, :, -border:]], axis=2)  # (t, h, 2b, 3)
    return np.median(edges.transpose(1, 0, 2, 3).reshape(frames.shape[1], -1, 3), axis=1)


def _unmix(pix: np.ndarray, bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fit each pixel as a * colour + b * background (a >= 0, 0 <= b <= BG_GAIN) for every named colour.

    pix, bg: (n, 3). Returns (residual (n, k), a (n, k)). Antialiased edges, a lamp's halo and a dimmed lamp all fit
    exactly with the right colour; `a` is the colour's coverage (1 inside an object). A box-constrained least-squares
    in two unknowns: the optimum is the free solution when feasible, else the best one on an edge of the box.
    """
    c = _PALETTE[None, :, :]  # (1, k, 3)
    p, b = pix[:, None, :], bg[:, None, :]  # (n, 1, 3)
    cc, bb, cb = (c * c).sum(-1), np.maximum((b * b).sum(-1), 1e-9), (c * b).sum(-1)  # (1, k), (n, 1), (n, k)
    cp, bp = (c * p).sum(-1), (b * p).sum(-1)  # (n, k), (n, 1)
    det = cc * bb - cb * cb
    safe = np.where(det > 1e-6 * cc * bb, det, np.inf)
    free = ((bb * cp - cb * bp) / safe, (cc * bp - cb * cp) / safe)
    candidates = [
        free,
        (np.maximum(cp / cc, 0.0), np.zeros_like(cp)),  # the colour alone
        (np.maximum((cp - BG_GAIN * cb) / cc, 0.0), np.full_like(cp, BG_GAIN)),  # the brightest background
        (np.zeros_like(cp), np.broadcast_to(np.clip(bp / bb, 0.0, BG_GAIN), cp.shape)),  # the background alone
    ]
    best_res, best_a = np.full(cp.shape, np.inf), np.zeros(cp.shape)
    for a, g in candidates:
        feasible = (a >= 0) & (g >= 0) & (g <= BG_GAIN) & np.isfinite(a)
        res = np.linalg.norm(p - np.nan_to_num(a)[..., None] * c - g[..., None] * b, axis=-1)
        better = feasible & (res < best_res)
        best_res, best_a = np.where(better, res, best_res), np.where(better, a, best_a)
    return best_res, best_a


def _pixels(video: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames (t, h, w, 3) in [0, 1], background (t, h, w, 3), distance from the background (t, h, w))."""
    v = video.detach().cpu().numpy() if isinstance(video, torch.Tensor) else np.asarray(video)
    frames = v.astype(np.float32) / 255.0
    bg = np.broadcast_to(background_rows(frames)[None, :, None, :], frames.shape)
    return frames, bg, np.linalg.norm(frames - bg, axis=-1)


def largest_region(mask: np.ndarray) -> dict | None:
    """The largest 8-connected region of a (h, w) mask: {"area", "fill" (share of its bounding box), "centre"}."""
    regions, n = ndimage.label(mask, np.ones((3, 3), bool))
    if n == 0:
        return None
    sizes = np.bincount(regions.ravel())[1:]
    ys, xs = np.nonzero(regions == int(np.argmax(sizes)) + 1)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    return {"area": len(ys), "fill": len(ys) / box, "centre": (float(xs.mean()), float(ys.mean()))}


def colour_blobs(video: torch.Tensor | np.ndarray) -> list[list[dict]]:
    """Per frame, one entry per named colour seen as a blob: {"colour", "area", "fill", "centre"}.

    A pixel belongs to a colour when the colour + background fit is best for it, fits well and gives the colour a
    coverage of at least COVERED; each colour's largest 8-connected region of such pixels (>= MIN_BLOB) is its blob.
    """
    frames, bg, diff = _pixels(video)
    fg = diff > FG_DIFF
    label = np.full(diff.shape, -1, np.int64)
    if fg.any():
        res, alpha = _unmix(frames[fg], bg[fg])
        k = res.argmin(1)
        rows = np.arange(len(k))
        good = (alpha[rows, k] >= COVERED) & (res[rows, k] <= 0.12 + 0.25 * diff[fg])
        label[fg] = np.where(good, k, -1)
    out = []
    for frame in label:
        seen = []
        for k in np.unique(frame[frame >= 0]):
            blob = largest_region(frame == k)
            if blob is not None and blob["area"] >= MIN_BLOB:
                seen.append({"colour": COLOUR_NAMES[k], **blob})
        out.append(seen)
    return out


def _loose_object(video: torch.Tensor | np.ndarray) -> list[tuple[str, str]]:
    """When no clean colour blob exists (blurred or dim generated frames): one object, its colour the named colour
    that fits the foreground best (votes weighted by contrast), its shape from the most salient region per frame."""
    frames, bg, diff = _pixels(video)
    fg = diff > FG_DIFF
    if fg.sum() < MIN_BLOB:
        return []
    res, _ = _unmix(frames[fg], bg[fg])
    votes = np.bincount(res.argmin(1), weights=diff[fg], minlength=len(COLOUR_NAMES))
    blobs = [largest_region(d > max(FG_DIFF, 0.5 * d.max())) for d in diff if d.max() > 2 * FG_DIFF]
    blobs = [b for b in blobs if b is not None and b["area"] >= MIN_BLOB]
    if not blobs:
        return []
    areas = np.array([b["area"] for b in blobs])
    fill = float(np.median([b["fill"] for b in blobs if b["area"] >= 0.8 * areas.max()]))
    return [(COLOUR_NAMES[int(votes.argmax())], classify_fill(fill))]


def detect_family(video: torch.Tensor | np.ndarray) -> str | None:
    """'talk' (a large, round foreground region that stays put: a face), 'bounce' (the foreground moves) or 'blink'
    (a static one); None when nothing stands out from the background."""
    _, _, diff = _pixels(video)
    fg = diff > FG_DIFF  # (t, h, w)
    mass = fg.sum((1, 2))
    if (mass > 0).sum() < 3:
        return None
    face = largest_region(fg.mean(0) >= 0.8)  # where the foreground is nearly always
    if face is not None and face["area"] > FACE_AREA * fg[0].size and 0.64 <= face["fill"] < 0.9:
        return "talk"
    ys, xs = np.mgrid[: fg.shape[1], : fg.shape[2]]
    has = mass > 0
    cx = (fg * xs).sum((1, 2))[has] / mass[has]
    cy = (fg * ys).sum((1, 2))[has] / mass[has]
    speed = np.hypot(np.diff(cx), np.diff(cy))
    return "bounce" if np.median(speed) > MOVING_PX else "blink"


def classify_fill(fill: float) -> str:
    """Share of the bounding box an object covers -> shape (square 1, circle pi/4, triangle 1/2)."""
    if fill >= 0.9:
        return "square"
    return "circle" if fill >= 0.64 else "triangle"


def detect_objects(video: torch.Tensor | np.ndarray, min_frames: float = 0.1) -> list[tuple[str, str]]:
    """[(colour, shape)] of the objects, largest first: colours seen as a blob in at least `min_frames` of the frames
    (and in a third as many frames as the most frequent colour). Shape from the median fill ratio over the frames
    where the blob is near its largest (unoccluded, lit). Without any clean blob, `_loose_object`."""
    blobs = colour_blobs(video)
    seen: dict[str, list[dict]] = {}
    for frame in blobs:
        for b in frame:
            seen.setdefault(b["colour"], []).append(b)
    if not seen:
        return _loose_object(video)
    most = max(len(v) for v in seen.values())
    objects = []
    for colour, obs in seen.items():
        if len(obs) < max(min_frames * len(blobs), most / 3):
            continue
        areas = np.array([o["area"] for o in obs])
        fills = np.array([o["fill"] for o in obs])[areas >= 0.8 * areas.max()]
        objects.append((float(np.median(areas)), colour, classify_fill(float(np.median(fills)))))
    return [(c, s) for _, c, s in sorted(objects, reverse=True)]


# ----------------------------------------------------------------------------------------------------------------------
# audio
# ----------------------------------------------------------------------------------------------------------------------
def estimate_pitch(audio: torch.Tensor | np.ndarray, sr: int, fmin: float = 70.0, fmax: float = 400.0) -> float:
    """Median fundamental frequency (Hz) over voiced frames (normalised autocorrelation >= 0.5); 0 when unvoiced."""
    x = mono(audio).astype(np.float64)
    win, hop = int(0.04 * sr), int(0.01 * sr)
    if len(x) < win:
        return 0.0
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]
    energy = (frames**2).mean(1)
    frames = frames[energy > 0.1 * energy.max()]
    lo, hi = int(sr / fmax), min(int(sr / fmin), win - 1)
    f0s = []
    for f in frames:
        f = f - f.mean()
        spec = np.fft.rfft(f, 2 * win)
        ac = np.fft.irfft(np.abs(spec) ** 2)[:win]
        if ac[0] <= 0:
            continue
        nac = ac[lo : hi + 1] / ac[0]
        best = float(nac.max())
        if best < 0.5:
            continue
        lag = lo + int(np.flatnonzero(nac >= 0.9 * best)[0])  # the shortest strong period: no octave-down errors
        f0s.append(sr / lag)
    return float(np.median(f0s)) if f0s else 0.0


def detect_voice(audio: torch.Tensor | np.ndarray, sr: int) -> str | None:
    """'low' / 'high' from the median pitch (split between the avworld's two pitch ranges); None when unvoiced."""
    f0 = estimate_pitch(audio, sr)
    if f0 <= 0:
        return None
    return "low" if f0 < VOICE_SPLIT_HZ else "high"


def impact_peaks(audio: torch.Tensor | np.ndarray, sr: int) -> list[float]:
    """Per audio onset, the lowest strong frequency (Hz; at least half the peak) of the energy the onset adds: the
    spectrum of the 60 ms after it minus that of the 30 ms before it (so a ringing earlier impact does not count)."""
    x = mono(audio).astype(np.float64)
    n_pre, n_post, n_fft = int(0.03 * sr), int(0.06 * sr), 4096
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    band = (freqs >= 80) & (freqs <= 6000)
    spec = lambda seg: np.abs(np.fft.rfft(seg * np.hanning(len(seg)), n_fft)) / np.sqrt(len(seg))
    out = []
    for t in detect_onsets(audio, sr):
        s = int(round(t * sr))
        post, pre = x[s : s + n_post], x[max(0, s - n_pre) : s]
        if len(post) < n_post // 2:
            continue
        added = spec(post) - (spec(pre) if len(pre) > 8 else 0.0)
        added = ndimage.uniform_filter1d(np.clip(added, 0, None), 5)
        a = added[band]
        out.append(float(freqs[band][np.flatnonzero(a >= 0.5 * a.max())[0]]))  # the lowest strong peak
    return out


def classify_impact(peak_hz: float) -> str:
    """One impact -> 'wooden knocks', 'metallic clangs' or 'glassy pings' by `impact_peaks`' frequency. On avworld
    impacts (both sizes) that frequency spans 140-260 Hz for wood, 355-650 Hz for metal, 1.2-2.2 kHz for glass."""
    if peak_hz < IMPACT_SPLITS_HZ[0]:
        return SHAPE_SOUNDS["circle"]
    return SHAPE_SOUNDS["square"] if peak_hz < IMPACT_SPLITS_HZ[1] else SHAPE_SOUNDS["triangle"]


def detect_sounds(audio: torch.Tensor | np.ndarray, sr: int, min_share: float = 0.2) -> tuple[str, ...]:
    """The impact sound classes heard, as a sorted tuple: classes of at least `min_share` of the onsets."""
    votes = [classify_impact(f) for f in impact_peaks(audio, sr)]
    if not votes:
        return ()
    names, counts = np.unique(votes, return_counts=True)
    return tuple(sorted(str(n) for n, c in zip(names, counts, strict=True) if c >= min_share * len(votes)))


def detect_beep_pitch(audio: torch.Tensor | np.ndarray, sr: int) -> str | None:
    """'low' / 'middle' / 'high': the named beep pitch nearest (in octaves) to the loudest tone in 150-3000 Hz;
    None when no tone stands TONAL times above the band's median power (silence, noise)."""
    x = mono(audio).astype(np.float64)
    if len(x) < 2048:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(x, 2048)[::512] * np.hanning(2048)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(0)
    freqs = np.fft.rfftfreq(2048, 1 / sr)
    band = (freqs >= 150) & (freqs <= 3000)
    if power[band].max() < TONAL * np.median(power[band]) or power[band].max() <= 0:
        return None
    peak = float(freqs[band][np.argmax(power[band])])
    names = list(PITCHES)
    return names[int(np.argmin([abs(np.log2(peak / PITCHES[n])) for n in names]))]


# ----------------------------------------------------------------------------------------------------------------------
# all together, and scoring
# ----------------------------------------------------------------------------------------------------------------------
def read_attributes(clip: AVClip) -> dict[str, Any]:
    """Every attribute, each detector run whatever the family (scoring picks the ones a caption states)."""
    objects = detect_objects(clip.video) if clip.video.shape[0] else []
    return {
        "family": detect_family(clip.video) if clip.video.shape[0] else None,
        "colour": tuple(sorted({c for c, _ in objects})),
        "shape": tuple(sorted({s for _, s in objects})),
        "sound": detect_sounds(clip.audio, clip.sample_rate),
        "voice": detect_voice(clip.audio, clip.sample_rate),
        "pitch": detect_beep_pitch(clip.audio, clip.sample_rate),
    }


def attributes_from_meta(meta: dict) -> dict[str, Any]:
    """avworld ground truth (`clip.meta`) -> the attributes its caption states, in `read_attributes`' form; {} for
    the families with timelines (dialogue, scripted), which the detectors cannot read (they assume one object, lamp
    or face per scene: skin and hair read as colours, syllables as impacts): scoring skips them."""
    family, a = meta["family"], meta["attributes"]
    if family in TIMED_FAMILIES:
        return {}
    if family == "bounce":
        objs = a["objects"]
        return {
            "family": family,
            "colour": tuple(sorted({o["colour"] for o in objs})),
            "shape": tuple(sorted({o["shape"] for o in objs})),
            "sound": tuple(sorted({SHAPE_SOUNDS[o["shape"]] for o in objs})),
        }
    if family == "talk":
        return {"family": family, "voice": a["voice"]}
    return {"family": family, "colour": (a["colour"],), "shape": (a["shape"],), "pitch": a["pitch"]}


def score(pred: dict[str, Any], truth: dict[str, Any]) -> dict[str, bool]:
    """{attribute: correct} for the attributes `truth` states."""
    return {k: pred.get(k) == v for k, v in truth.items()}


def accuracy(preds: Sequence[dict], truths: Sequence[dict]) -> dict[str, float]:
    """Per attribute, the share of clips (that state it) whose reading matches; plus "all" over every statement."""
    hits: dict[str, list[bool]] = {}
    for p, t in zip(preds, truths, strict=True):
        for k, ok in score(p, t).items():
            hits.setdefault(k, []).append(ok)
    out = {k: float(np.mean(hits[k])) for k in ATTRIBUTES if k in hits}
    out["all"] = float(np.mean([x for v in hits.values() for x in v])) if hits else float("nan")
    return out


def mismatched_accuracy(preds: Sequence[dict], truths: Sequence[dict]) -> dict[str, float]:
    """Chance level: clip i's reading scored against the truth of another clip that states the same attribute
    (the next such clip, cyclically)."""
    hits: dict[str, list[bool]] = {}
    for k in ATTRIBUTES:
        idx = [i for i, t in enumerate(truths) if k in t]
        for n, i in enumerate(idx):
            if len(idx) > 1:
                j = idx[(n + 1) % len(idx)]
                hits.setdefault(k, []).append(preds[i].get(k) == truths[j][k])
    out = {k: float(np.mean(v)) for k, v in hits.items()}
    out["all"] = float(np.mean([x for v in hits.values() for x in v])) if hits else float("nan")
    return out
