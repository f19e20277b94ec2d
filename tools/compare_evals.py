#!/usr/bin/env python
"""The headline numbers of several tools/evaluate.py runs side by side, as a markdown table (checkpoint selection,
a model against the one it replaces).

    python tools/compare_evals.py old=runs/eval_old/eval.json step6000=runs/c6000/eval.json --out compare.md

Ratios are (generated - shuffled) / (real - shuffled): 1 is as good as real clips, 0 is chance (another clip's audio).
The `score` row is what checkpoint selection ranks by: the mean of the capped ratios and shares that the default
model's targets name (t2av AV-Align and mouth_sync ratios, V2A onsets at a contact and contacts with an onset,
attribute accuracy held-out and novel, A2V mouth_sync ratio), each capped at 1 so one cannot buy another.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _ratio(gen: float, real: float, shuffled: float) -> float:
    return (gen - shuffled) / (real - shuffled) if real != shuffled else float("nan")


def headline(res: dict) -> dict[str, float]:
    """The numbers the default model's targets name, from one eval.json."""
    sync = res["t2av"]["sync"]
    gen, real, shuf = sync["generated"], sync["real"], sync["audio-shuffled"]
    attrs = res["t2av"]["attributes"]
    a2v, v2a = res["a2v"], res["v2a"]["generated"]
    speech = res["t2av"].get("intelligibility", {})
    out = {
        "t2av AV-Align ratio": _ratio(gen["AV-Align"], real["AV-Align"], shuf["AV-Align"]),
        "t2av mouth_sync ratio": _ratio(*(c["mouth_sync (talking heads)"] for c in (gen, real, shuf))),
        "t2av median A/V offset, absolute (ms)": gen["median |A/V offset| (ms)"],
        "t2av low-confidence offsets": gen["low-confidence offsets (share)"],
        "V2A onsets within a frame of a contact": v2a["onsets within a frame of a contact (share)"],
        "V2A contacts that got an onset": v2a["contacts that got an onset (share)"],
        "V2A sound class correct": v2a["sound class correct (share)"],
        "attribute accuracy, held-out": attrs["generated"]["accuracy"]["all"],
        "attribute accuracy, novel captions": attrs["generated, novel captions"]["accuracy"]["all"],
        "A2V mouth_sync ratio, avworld": _ratio(*(a2v["avworld speech"][k] for k in ("generated", "real",
                                                                                      "audio-shuffled"))),
        "A2V mouth_sync, recorded speech": a2v["recorded speech"]["generated"],
        "generated dialogue WER / real WER": speech["generated"]["WER"] / max(speech["real"]["WER"], 1e-9)
        if speech else float("nan"),
        "FD video / audio": (res["t2av"]["fd"]["generated"]["FD video (AE features)"],
                             res["t2av"]["fd"]["generated"]["FD audio (AE features)"]),
        "gap_v2a bounce (at pure noise)": (res["dependence"]["bounce"]["v2a"]["gap"],
                                           res["dependence"]["bounce"]["v2a"].get("gap_at_noise", float("nan"))),
    }  # fmt: skip
    capped = ["t2av AV-Align ratio", "t2av mouth_sync ratio", "V2A onsets within a frame of a contact",
              "V2A contacts that got an onset", "attribute accuracy, held-out", "attribute accuracy, novel captions",
              "A2V mouth_sync ratio, avworld"]  # fmt: skip
    out["score"] = sum(min(out[k], 1.0) for k in capped) / len(capped)
    return out


def _cell(v) -> str:
    if isinstance(v, tuple):
        return " / ".join(_cell(x) for x in v)
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def table(named: list[tuple[str, dict]]) -> str:
    rows = [(name, headline(res)) for name, res in named]
    keys = list(rows[0][1])
    lines = ["| metric | " + " | ".join(n for n, _ in rows) + " |", "|---|" + "---|" * len(rows)]
    lines += [f"| {k} | " + " | ".join(_cell(h[k]) for _, h in rows) + " |" for k in keys]
    seeds = {name: res.get("config", {}).get("seed") for name, res in named}
    return "\n".join(lines) + f"\n\nSeeds: {', '.join(f'{n} {s}' for n, s in seeds.items())}.\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("evals", nargs="+", help="NAME=path/to/eval.json")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    named = []
    for item in args.evals:
        name, _, path = item.rpartition("=")
        p = Path(path)
        if not p.is_file():
            raise SystemExit(f"{p} does not exist: give NAME=path/to/eval.json (written by tools/evaluate.py)")
        named.append((name or p.parent.name, json.loads(p.read_text())))
    text = table(named)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
