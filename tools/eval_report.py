"""tools/evaluate.py's report: the markdown table (eval.md) and the pictures (bars.png, samples.png)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avgen.media import AVClip
from avgen.metrics.attributes import ATTRIBUTES

COLUMNS = ("generated", "real", "AE round trip", "audio-shuffled")


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _table(head: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"] + [
        "| " + " | ".join(_fmt(x) for x in r) + " |" for r in rows
    ]


def markdown(res: dict) -> str:
    t2av, cfg = res["t2av"], res["config"]
    ov = res["overlap"]
    lines = [f"# Evaluation of `{cfg['model']}` (DiT {cfg['model_hash']})", "",
             f"{cfg['count']} held-out avworld scenes (seed {cfg['held_out_seed']}) + {cfg['novel']} novel captions, "
             f"{cfg['steps']} sampling steps, {cfg['task_count']} clips per A2V/V2A row; "
             f"{res['timing']['total']:.0f} s in all.", "", "Held-out check against the training set:",
             *(f"- {k}: {v}" for k, v in ov.items()), "", "## Text → audio + video", ""]  # fmt: skip
    sync_fd = {k: {**t2av["sync"][k], **t2av["fd"][k]} for k in COLUMNS}
    metrics = list(sync_fd["real"])
    lines += _table(["metric", *COLUMNS], [[m, *(sync_fd[k][m] for k in COLUMNS)] for m in metrics])
    lines += ["", "FD: against a disjoint set of real held-out clips; the `real` column is the noise floor.", ""]
    a = t2av["attributes"]
    cols = [("generated", "accuracy"), ("generated", "other captions"), ("generated, novel captions", "accuracy"),
            ("real", "accuracy"), ("real", "other captions"), ("AE round trip", "accuracy"),
            ("audio-shuffled", "accuracy")]  # fmt: skip
    head = ["attribute accuracy", *(n if k == "accuracy" else f"{n} vs other captions" for n, k in cols)]
    lines += _table(head, [[attr, *(a[n][k].get(attr) for n, k in cols)] for attr in (*ATTRIBUTES, "all")])
    lines += ["", "`vs other captions`: readings scored against another clip's caption (chance level).", ""]
    if t2av.get("intelligibility"):
        lines += ["Talking heads' words (PocketSphinx restricted to avworld's vocabulary):", ""]
        rows = [[k, v["WER"], v["WER vs other transcripts"], v["clips"]] for k, v in t2av["intelligibility"].items()]
        lines += _table(["set", "WER", "WER vs another clip's words (chance)", "clips"], rows) + [""]
    lines += ["## Audio → video (mouth_sync)", ""]
    a2v_cols = ["generated", "generated video, other audio", "real", "audio-shuffled",
                "generated video looks like a talking head (share)", "clips"]  # fmt: skip
    rows = [[k, *(v.get(c) for c in a2v_cols)] for k, v in res["a2v"].items() if isinstance(v, dict)]
    lines += _table(["input", *a2v_cols], rows) + ["", f"Recorded speech: {res['a2v']['recorded speech source']}.", ""]
    lines += ["## Video → audio (silent bounce videos; onsets vs true contact times, one frame = 62.5 ms)", ""]
    v2a = res["v2a"]
    lines += _table(["metric", *COLUMNS], [[m, *(v2a[k][m] for k in COLUMNS)] for m in v2a["real"]])
    lines += ["", "## Cross-modal dependence (avgen.metrics.dependence: loss with the own vs another clip's other "
              "modality)", ""]  # fmt: skip
    head = ["family", "direction", "L(own)", "L(other)", "gap", "L(own), event tokens", "L(other), event tokens",
            "gap, event tokens", "gap at pure noise"]  # fmt: skip
    dep = res["dependence"]
    lines += _table(head, [[fam, d, r["own"], r["other"], r["gap"], r["own_events"], r["other_events"], r["gap_events"],
                            r.get("gap_at_noise")] for fam, dirs in dep.items() for d, r in dirs.items()])  # fmt: skip
    lines += ["", f"Generation real-time factor (t2av, s per clip second): {t2av['real-time factor']:.3f}; "
              f"sync guidance {cfg['cfg_sync']:g}.", ""]  # fmt: skip
    lines += _scripts(res["scripts"]) if "scripts" in res else []
    lines += ["", "## Time (s)", "", *(f"- {k}: {v:.1f}" for k, v in res["timing"].items()), ""]
    return "\n".join(lines)


def _scripts(sc: dict) -> list[str]:
    """The Scripts section: ROWS (avgen.metrics.script) per clip set, with their targets and definitions."""
    from avgen.metrics.script import ROWS

    cols = list(sc["columns"])
    families = ", ".join(f"{n} {f}" for f, n in sc["families"].items())
    count = ", ".join(f"{k}: {v}" for k, v in sc["counts"].items())
    lines = ["", f"## Scripts (timed lines; {sc['clips']} held-out clips: {families}; {count})", ""]
    rows = [[row, ROWS[row][0], *(sc["columns"][c][row] for c in cols)] for row in ROWS]
    ratios = ("mouth_sync in span ÷ real", "per-line WER ÷ real")
    rows += [[r, "", *(sc["columns"][c][r] for c in cols)] for r in ratios]
    lines += _table(["metric", "target", *cols], rows) + [""]
    lines += [
        "`scripted`: the model given the clip's script; `untimed prompt`: the same lines as one plain prompt; "
        "`real vs another clip's script`: the real clip scored against the next clip's script (chance).",
        "",
    ]
    return lines + [f"- {row}: {definition}." for row, (_, definition) in ROWS.items()] + [""]


def bar_chart(groups: list[tuple[str, dict[str, float]]], path: Path) -> None:
    """One row of bars per metric (each scaled to its own largest value, the value written beside)."""
    from PIL import Image, ImageDraw

    colours = {"generated": (214, 96, 77), "real": (67, 147, 195), "AE round trip": (120, 120, 120),
               "audio-shuffled": (230, 171, 2)}  # fmt: skip
    bar, gap, left, width = 12, 14, 300, 320
    height = sum(len(v) * bar + gap + 14 for _, v in groups) + 30
    img = Image.new("RGB", (left + width + 80, height), "white")
    d = ImageDraw.Draw(img)
    for i, (name, col) in enumerate(colours.items()):
        d.rectangle([8 + 150 * i, 8, 18 + 150 * i, 18], fill=col)
        d.text((22 + 150 * i, 7), name, fill="black")
    y = 30
    for metric, values in groups:
        d.text((8, y), metric[:48], fill="black")
        top = max([abs(v) for v in values.values() if np.isfinite(v)] + [1e-9])
        y += 14
        for name, v in values.items():
            w = 0 if not np.isfinite(v) else int(width * abs(v) / top)
            d.rectangle([left, y, left + w, y + bar - 2], fill=colours.get(name, (0, 0, 0)))
            d.text((left + w + 4, y), _fmt(v), fill="black")
            d.text((left - 110, y), name[:18], fill=(90, 90, 90))
            y += bar
        y += gap
    img.save(path)


def plots(res: dict, shown: list[AVClip], out: Path) -> None:
    from avgen.viz import clip_figure

    t2av = res["t2av"]
    groups = [(m, {k: t2av["sync"][k][m] for k in COLUMNS}) for m in t2av["sync"]["real"]]
    groups += [(m, {k: t2av["fd"][k][m] for k in COLUMNS}) for m in t2av["fd"]["real"]]
    groups += [(f"{attr} accuracy", {k: t2av["attributes"][k]["accuracy"].get(attr, np.nan) for k in COLUMNS})
               for attr in (*ATTRIBUTES, "all")]  # fmt: skip
    groups += [(f"V2A: {m}", {k: res["v2a"][k][m] for k in COLUMNS}) for m in res["v2a"]["real"]]
    bar_chart(groups, out / "bars.png")
    titles = [f"{c.meta.get('task', '')}: {c.caption or '(no prompt)'}"[:100] for c in shown]
    clip_figure(shown, out / "samples.png", titles=titles, columns=2)
