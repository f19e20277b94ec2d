#!/usr/bin/env python
"""avgen benchmarks: every speed figure the project reports, measured in one run so ratios hold.

Speed is measured here, never in timed tests. Each section lives in tools/benchmarks/<name>.py and exposes
`run(quick: bool, **options) -> list[dict]` returning rows {"section", "metric", "value", "unit", "note"} (options
it does not take are not passed) and optionally NOTES, lines printed under the table. Workloads whose ratio is
reported (DiT vs the matmul peak, ours vs the peer) are timed interleaved, round by round, so the ratios hold on a
busy machine; absolute rates need an idle one.

    python tools/bench.py --out bench.md                  # all sections: markdown to stdout and bench.md, + bench.json
    python tools/bench.py --sections dit peer --quick     # a smoke run of two sections
    python tools/bench.py --sections generation --model runs/dit_default/export
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # sections import tools.benchmarks.common
    sys.path.insert(0, str(HERE.parent))
SECTIONS = ["avworld", "media", "autoencoders", "dit", "trainers", "data", "generation", "peer"]


def load_section(name: str):
    path = HERE / "benchmarks" / f"{name}.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"avgen_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", nargs="*", default=SECTIONS, help=f"subset of {SECTIONS}")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run, not for reporting)")
    ap.add_argument("--out", default="bench_results.md", help="markdown table written here")
    ap.add_argument("--json", default=None, help="rows as JSON here (default: --out with a .json suffix)")
    ap.add_argument("--model", default=None, help="generation: a model directory (default: a random tiny DiT)")
    args = ap.parse_args(argv)
    options = {"model": args.model}

    rows: list[dict] = []
    notes: list[str] = []
    for name in args.sections:
        module = load_section(name)
        if module is None:
            print(f"[bench] section {name!r}: tools/benchmarks/{name}.py missing", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        accepted = inspect.signature(module.run).parameters
        rows.extend(module.run(quick=args.quick, **{k: v for k, v in options.items() if k in accepted}))
        notes += [n for n in getattr(module, "NOTES", []) if n not in notes]
        print(f"[bench] {name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    header = f"Measured {time.strftime('%Y-%m-%d')} on {machine_line()}" + (" (quick run)" if args.quick else "")
    lines = [header, "", "| section | metric | value | unit | note |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['section']} | {r['metric']} | {fmt(r['value'])} | {r.get('unit', '')} | {r.get('note', '')} |"
        for r in rows
    ]
    lines += [""] + [f"- {n}" for n in notes] if notes else []
    table = "\n".join(lines)
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table + "\n")
    report = {"header": header, "quick": args.quick, "rows": rows, "notes": notes}
    Path(args.json or Path(args.out).with_suffix(".json")).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
