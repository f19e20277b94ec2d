"""Contacts seen in a video: the moments moving objects reverse direction (a bounce off a wall), from pixels only.

Foreground is whatever differs from the clip's per-pixel median (the static background). Each frame's connected
foreground blobs are linked into tracks by position and colour. A contact is a sign change of a track's x or y
velocity while its blob keeps its size, timed where the straight flights before and after it meet. Reads frames only
(no meta), so it scores decoded and generated frames alike: the video AE's target is stated against it.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

FOREGROUND = 0.12  # colour distance from the median frame (0..sqrt(3) on [0, 1] RGB) that counts as foreground
MIN_AREA = 4  # pixels: smaller blobs are noise
MIN_SPEED = 0.25  # pixels a frame, along the reversing axis, before and after a reversal


def blobs(video: torch.Tensor | np.ndarray) -> list[list[tuple[float, float, int, np.ndarray]]]:
    """Per frame, the (x, y, area, mean RGB) of each foreground blob of uint8 (t, h, w, 3) frames."""
    v = np.asarray(video, dtype=np.float32) / 255.0
    background = np.median(v, axis=0)
    fg = np.sqrt(((v - background) ** 2).sum(-1)) > FOREGROUND  # (t, h, w)
    out = []
    for frame, mask in zip(v, fg, strict=True):
        labels, n = ndimage.label(mask)
        found = []
        for k in range(1, n + 1):
            sel = labels == k
            area = int(sel.sum())
            if area >= MIN_AREA:
                ys, xs = np.nonzero(sel)
                found.append((float(xs.mean()), float(ys.mean()), area, frame[sel].mean(0)))
        out.append(found)
    return out


def tracks(frames, max_jump: float = 12.0, colour_weight: float = 30.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Blobs linked frame to frame by position and colour (objects keep their colour, so crossing objects keep their
    tracks): each track is (positions (t, 2), areas (t,)), NaN where it is not seen."""
    t = len(frames)
    found: list[tuple[np.ndarray, np.ndarray]] = []
    last: list[tuple[int, tuple]] = []  # (track id, its last blob)
    for k, blobs_k in enumerate(frames):
        free = list(range(len(blobs_k)))
        next_last = []
        for tid, prev in last:
            if not free:
                break
            cost = [np.hypot(blobs_k[j][0] - prev[0], blobs_k[j][1] - prev[1])
                    + colour_weight * float(np.abs(blobs_k[j][3] - prev[3]).mean()) for j in free]  # fmt: skip
            j = free[int(np.argmin(cost))]
            if np.hypot(blobs_k[j][0] - prev[0], blobs_k[j][1] - prev[1]) <= max_jump:
                found[tid][0][k], found[tid][1][k] = blobs_k[j][:2], blobs_k[j][2]
                next_last.append((tid, blobs_k[j]))
                free.remove(j)
        for j in free:  # a new track
            found.append((np.full((t, 2), np.nan), np.full(t, np.nan)))
            found[-1][0][k], found[-1][1][k] = blobs_k[j][:2], blobs_k[j][2]
            next_last.append((len(found) - 1, blobs_k[j]))
        last = next_last
    return found


def reversals(track: tuple[np.ndarray, np.ndarray], fps: float) -> list[float]:
    """Contact times (s) of one track: sign changes of vx or vy with both flights faster than MIN_SPEED, while the
    blob keeps its size (a blob that merges with another or splits moves its centroid without turning)."""
    pos, area = track
    out = []
    v = np.diff(pos, axis=0)  # (t - 1, 2): v[k] between frames k and k + 1
    for k in range(1, len(v)):
        around = area[max(0, k - 1) : k + 2]
        if not np.isfinite(around).all() or around.max() > 1.6 * around.min():
            continue
        for axis in (0, 1):
            before, after = v[k - 1, axis], v[k, axis]
            if not (np.isfinite(before) and np.isfinite(after)) or before * after >= 0:
                continue
            if min(abs(before), abs(after)) < MIN_SPEED and not _fast_around(v[:, axis], k):
                continue
            out.append(_meet(pos[:, axis], v[:, axis], k) / fps)
            break
    return out


def _fast_around(v: np.ndarray, k: int) -> bool:
    """A slow frame at the turn is fine when the flights one frame further out are fast and opposite."""
    if k < 2 or k + 1 >= len(v):
        return False
    a, b = v[k - 2], v[k + 1]
    return bool(np.isfinite(a) and np.isfinite(b) and a * b < 0 and min(abs(a), abs(b)) >= MIN_SPEED)


def _meet(x: np.ndarray, v: np.ndarray, k: int) -> float:
    """Frame time where the flight into frame k and the flight out of it, as straight lines, meet."""
    vb, va = v[k - 1], v[k]
    t0, t1 = k - 1, k + 1  # the line before passes (k-1, x[k-1]) with slope vb, the one after (k+1, x[k+1]) with va
    if abs(vb - va) < 1e-9 or not (np.isfinite(x[t0]) and np.isfinite(x[t1])):
        return float(k)
    t = ((x[t1] - va * t1) - (x[t0] - vb * t0)) / (vb - va)
    return float(np.clip(t, t0, t1))


def video_contacts(video: torch.Tensor | np.ndarray, fps: float) -> list[float]:
    """Contact times (s) in uint8 (t, h, w, 3) frames, sorted."""
    return sorted(c for track in tracks(blobs(video)) for c in reversals(track, fps))
