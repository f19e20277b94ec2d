#!/usr/bin/env python
"""The headline numbers of several tools/evaluate.py runs side by side, as a markdown table (checkpoint selection,
a model against the one it replaces).

    python tools/compare_evals.py old=runs/eval_old/eval.json step6000=runs/c6000/eval.json --out compare.md

Ratios are (generated - shuffled) / (real - shuffled): 1 is as good as real clips, 0 is chance (another clip's audio).
The `score` row is what checkpoint selection ranks by: the mean of the capped ratios and shares that the default
model's targets name (t2av AV-Align and mouth_sync ratios, V2A onsets at a contact and contacts with an onset,
attribute accuracy held-out and novel, A2V mouth_sync ratio), each capped at 1 so one cannot buy another.
Evaluations with a scripts section add its `scripted` column's figures (script control; not in the score).

--within 0.05: the check a model that replaces another must pass (issue 19: a fine-tune ships as the default only if
every metric stays within 5 % of the model it replaces): each other column's relative change against the first, per
headline metric, in the direction that is worse for that metric (lower ratios, shares and score; higher offsets,
WER and FD), shown signed so that + is better and − worse, marked ✗ when worse by more than the fraction;
improvements always pass.
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


LOWER_IS_BETTER = ("offset", "low-confidence", "WER", "FD")
SCRIPT_ROWS = ("speech energy in its span", "speaker's mouth moves (dialogue)", "mouth moves within its own lines",
               "mouth_sync in span ÷ real", "per-line WER ÷ real", "events on time (all)")  # fmt: skip


def script_figures(res: dict) -> dict[str, float]:
    """The scripts section's `scripted` figures (script control), NaN where the evaluation ran none."""
    col = res.get("scripts", {}).get("columns", {}).get("scripted", {})
    return {f"script: {k}": col.get(k, float("nan")) for k in SCRIPT_ROWS}


def worse_by(new: float, old: float, key: str) -> float:
    """How much worse `new` is than `old`, relative to |old| (negative: better), for metric `key`."""
    sign = 1.0 if any(w in key for w in LOWER_IS_BETTER) else -1.0
    return sign * (new - old) / max(abs(old), 1e-9)


def _checked(v, ref, key: str, within: float) -> str:
    if isinstance(v, tuple):
        return " / ".join(_checked(x, r, key, within) for x, r in zip(v, ref, strict=True))
    worse = worse_by(v, ref, key)
    return f"{_cell(v)} ({0.0 - worse:+.0%}{' ✗' if worse > within else ''})"


def _cell(v) -> str:
    if isinstance(v, tuple):
        return " / ".join(_cell(x) for x in v)
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def table(named: list[tuple[str, dict]], within: float | None = None) -> str:
    """The markdown table; with `within`, each column after the first carries its change against the first, and
    a closing line counts the headline metrics worse by more than that fraction."""
    rows = [(name, headline(res)) for name, res in named]
    keys = list(rows[0][1])
    ref = rows[0][1]

    def cells(h: dict, k: str, first: bool) -> str:
        return _cell(h[k]) if within is None or first else _checked(h[k], ref[k], k, within)

    lines = ["| metric | " + " | ".join(n for n, _ in rows) + " |", "|---|" + "---|" * len(rows)]
    lines += [f"| {k} | " + " | ".join(cells(h, k, i == 0) for i, (_, h) in enumerate(rows)) + " |" for k in keys]
    if any("scripts" in res for _, res in named):
        scripts = [script_figures(res) for _, res in named]
        lines += [f"| {k} | " + " | ".join(_cell(f[k]) for f in scripts) + " |" for k in scripts[0]]
    seeds = {name: res.get("config", {}).get("seed") for name, res in named}
    text = "\n".join(lines) + f"\n\nSeeds: {', '.join(f'{n} {s}' for n, s in seeds.items())}.\n"
    if within is not None:
        for name, h in rows[1:]:
            bad = [k for k in keys if max(_flat(worse_by(*p, k) for p in _pairs(h[k], ref[k]))) > within]
            verdict = f"worse by more than {within:.0%} on {len(bad)}: {'; '.join(bad)}" if bad else "none worse"
            kept = f"{len(keys) - len(bad)} of {len(keys)} within {within:.0%}"
            text += f"{name} against {rows[0][0]}: {kept}; {verdict}.\n"
    return text


def _pairs(v, ref) -> list[tuple[float, float]]:
    return list(zip(v, ref, strict=True)) if isinstance(v, tuple) else [(v, ref)]


def _flat(values) -> list[float]:
    return [v for v in values if v == v] or [0.0]  # NaN (a section not run) counts as no change


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("evals", nargs="+", help="NAME=path/to/eval.json")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--within", type=float, default=None, help="mark changes against the first worse than this "
                    "fraction (e.g. 0.05)")  # fmt: skip
    args = ap.parse_args(argv)
    named = []
    for item in args.evals:
        name, _, path = item.rpartition("=")
        p = Path(path)
        if not p.is_file():
            raise SystemExit(f"{p} does not exist: give NAME=path/to/eval.json (written by tools/evaluate.py)")
        named.append((name or p.parent.name, json.loads(p.read_text())))
    text = table(named, args.within)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
