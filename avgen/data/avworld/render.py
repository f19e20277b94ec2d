"""Vectorised rasterisation of the avworld's shapes: all frames of a clip at once, soft (antialiased) edges.

Coordinates are in pixels of an (H, W) frame; x to the right, y down. `centres` are (T, 2) arrays of (x, y) per frame.
Coverage masks are float32 (T, H, W) in [0, 1].
"""

from __future__ import annotations

import numpy as np


def grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: ys (1, H, 1), xs (1, 1, W)."""
    ys = (np.arange(h, dtype=np.float32) + 0.5)[None, :, None]
    xs = (np.arange(w, dtype=np.float32) + 0.5)[None, None, :]
    return ys, xs


def coverage(signed_distance: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside, in pixels) -> coverage with a one-pixel soft edge."""
    return np.clip(0.5 - signed_distance, 0.0, 1.0)


def shape_mask(shape: str, centres: np.ndarray, radius: np.ndarray | float, h: int, w: int) -> np.ndarray:
    """Coverage of a circle, square or triangle of `radius` (half-size) centred per frame; (T, H, W)."""
    ys, xs = grid(h, w)
    dx = xs - centres[:, 0, None, None].astype(np.float32)  # (T, 1, W)
    dy = ys - centres[:, 1, None, None].astype(np.float32)  # (T, H, 1)
    r = np.asarray(radius, dtype=np.float32).reshape(-1, 1, 1)
    if shape == "circle":
        d = np.sqrt(dx * dx + dy * dy) - r
    elif shape == "square":
        d = np.maximum(np.abs(dx), np.abs(dy)) - r * 0.85
    elif shape == "triangle":
        # upward triangle: three half-planes through the vertices of an equilateral triangle of circumradius r
        k = np.float32(0.5)
        c = np.float32(np.sqrt(3.0) / 2.0)
        d = np.maximum(np.maximum(c * dx - k * dy, -c * dx - k * dy), dy) - r * k
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return coverage(d)


def ellipse_mask(cx: float, cy: float, rx: np.ndarray, ry: np.ndarray, h: int, w: int) -> np.ndarray:
    """Coverage of axis-aligned ellipses with per-frame radii rx, ry (T,) at a fixed centre; (T, H, W)."""
    ys, xs = grid(h, w)
    rx = np.maximum(np.asarray(rx, np.float32).reshape(-1, 1, 1), 1e-3)
    ry = np.maximum(np.asarray(ry, np.float32).reshape(-1, 1, 1), 1e-3)
    nx = (xs - cx) / rx
    ny = (ys - cy) / ry
    rho = np.sqrt(nx * nx + ny * ny)
    # distance in pixels, approximately, using the smaller radius as the local scale
    return coverage((rho - 1.0) * np.minimum(rx, ry))


def paint(canvas: np.ndarray, mask: np.ndarray, colour) -> None:
    """Alpha-blend `colour` (3,) or (T, 3) into canvas (T, H, W, 3) with coverage mask (T, H, W), in place."""
    col = np.asarray(colour, dtype=np.float32)
    if col.ndim == 2:
        col = col[:, None, None, :]
    m = mask[..., None]
    canvas *= 1.0 - m
    canvas += m * col


def background(t: int, h: int, w: int, colour, gradient: float) -> np.ndarray:
    """A plain or vertically graded background, (T, H, W, 3) float32."""
    col = np.asarray(colour, dtype=np.float32)
    ramp = 1.0 + gradient * (np.linspace(-0.5, 0.5, h, dtype=np.float32))[:, None, None]
    frame = np.clip(ramp * col[None, None, :], 0.0, 1.0) * np.ones((1, w, 1), np.float32)
    return np.broadcast_to(frame, (t, h, w, 3)).copy()


def to_uint8(canvas: np.ndarray) -> np.ndarray:
    return (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
