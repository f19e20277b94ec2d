#!/usr/bin/env python
"""Training curves from a run's metrics.jsonl: one panel per metric against the step, drawn with PIL.

    python tools/plot_curves.py runs/dit_v2/metrics.jsonl --out assets/default/curves.png
    python tools/plot_curves.py RUN/metrics.jsonl --metrics loss val/mouth_sync --smooth 0.9 --out curves.png

Training losses are noisy per step: they are drawn faint, with an exponential moving average (--smooth) over them.
Validation metrics (val/...) are drawn as points joined by lines. A marker on the x axis shows each resume (a gap of
more than --gap seconds between logged lines).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

DEFAULT = ["loss", "loss_video", "loss_audio", "lr", "val/gap_v2a/bounce", "val/gap_v2a_at_noise/bounce",
           "val/gap_v2a/blink", "val/gap_a2v/talk", "val/mouth_sync", "val/av_align"]  # fmt: skip
PANEL, PAD, LEFT = (360, 150), 12, 54


def read_metrics(path: Path) -> list[dict]:
    """The logged lines of a metrics.jsonl (a repeated step after a resume replaces the earlier line)."""
    rows: dict[tuple[int, bool], dict] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise SystemExit(f"{path} line {n} is not JSON: {e}") from e
        rows[(int(row["step"]), any(k.startswith("val/") for k in row))] = row
    return [rows[k] for k in sorted(rows)]


def series(rows: list[dict], key: str) -> list[tuple[float, float]]:
    return [(r["step"], float(r[key])) for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]


def smoothed(points: list[tuple[float, float]], beta: float) -> list[tuple[float, float]]:
    """Exponential moving average, bias-corrected (as Adam's moments) so the start is not pulled to the first value."""
    out, avg = [], 0.0
    for n, (step, v) in enumerate(points, 1):
        avg = beta * avg + (1 - beta) * v
        out.append((step, avg / (1 - beta**n)))
    return out


def resumes(rows: list[dict], gap: float) -> list[int]:
    """Steps where logging resumed after more than `gap` seconds of silence."""
    timed = [(r["step"], r["time"]) for r in rows if "time" in r]
    return [s for (_, t0), (s, t1) in zip(timed, timed[1:], strict=False) if t1 - t0 > gap]


def draw_panel(d, box: tuple[int, int], key: str, lines: list[tuple[list, tuple, int]], steps: tuple, marks: list):
    """One metric's panel at `box` (x, y): axes, min/max labels, then each (points, colour, width) line."""
    from PIL import ImageFont

    font = ImageFont.load_default()
    x0, y0 = box[0] + LEFT, box[1] + 18
    w, h = PANEL[0] - LEFT - PAD, PANEL[1] - 36
    values = [v for pts, _, _ in lines for _, v in pts]
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1e-9
    d.text((box[0] + 4, box[1] + 2), key, fill="black", font=font)
    d.rectangle([x0, y0, x0 + w, y0 + h], outline=(160, 160, 160))
    d.text((box[0] + 2, y0 - 4), f"{hi:.3g}", fill=(90, 90, 90), font=font)
    d.text((box[0] + 2, y0 + h - 8), f"{lo:.3g}", fill=(90, 90, 90), font=font)
    d.text((x0, y0 + h + 3), f"{steps[0]:g}", fill=(90, 90, 90), font=font)
    d.text((x0 + w - 30, y0 + h + 3), f"{steps[1]:g}", fill=(90, 90, 90), font=font)

    def xy(step, v):
        return x0 + w * (step - steps[0]) / max(steps[1] - steps[0], 1), y0 + h * (hi - v) / (hi - lo)

    for s in marks:
        x = xy(s, lo)[0]
        d.line([x, y0 + h - 6, x, y0 + h], fill=(200, 0, 0))
    for pts, colour, width in lines:
        coords = [xy(s, v) for s, v in pts]
        if len(coords) > 1:
            d.line(coords, fill=colour, width=width)
        if len(coords) < 40:
            for x, y in coords:
                d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)


def plot(rows: list[dict], keys: list[str], out: Path, beta: float = 0.95, gap: float = 600.0) -> list[str]:
    """Draw the panels of `keys` that the run logged into `out` (PNG); returns the keys drawn."""
    from PIL import Image, ImageDraw

    shown = [k for k in keys if len(series(rows, k)) > 0]
    if not shown:
        raise SystemExit(f"none of {keys} was logged")
    cols = 2 if len(shown) > 3 else 1
    img = Image.new("RGB", (cols * PANEL[0], math.ceil(len(shown) / cols) * PANEL[1]), "white")
    d = ImageDraw.Draw(img)
    steps = (min(r["step"] for r in rows), max(r["step"] for r in rows))
    marks = resumes(rows, gap)
    for i, key in enumerate(shown):
        pts = series(rows, key)
        noisy = not key.startswith("val/") and key != "lr" and len(pts) > 40
        lines = [(pts, (235, 190, 180), 1), (smoothed(pts, beta), (200, 60, 40), 2)] if noisy else [
            (pts, (40, 90, 180), 2)]  # fmt: skip
        draw_panel(d, ((i % cols) * PANEL[0], (i // cols) * PANEL[1]), key, lines, steps, marks)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return shown


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics", type=Path, help="a run's metrics.jsonl")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--metrics", nargs="+", default=DEFAULT, dest="keys")
    ap.add_argument("--smooth", type=float, default=0.95, help="EMA factor over the training losses")
    ap.add_argument("--gap", type=float, default=600.0, help="seconds without a log line that mark a resume")
    args = ap.parse_args(argv)
    if not args.metrics.is_file():
        raise SystemExit(f"{args.metrics} does not exist: give a run's metrics.jsonl")
    shown = plot(read_metrics(args.metrics), args.keys, args.out, args.smooth, args.gap)
    print(f"wrote {args.out}: {', '.join(shown)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
