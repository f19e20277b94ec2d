"""Benchmark: the trainers as users run them, beside their bare steps.

Each trainer is built by its console script's own code (avgen.cli.train.prepare, avgen.cli.train_ae.prepare) from the
shipped configs: the DiT with experiment=default_cpu on a small latent cache made here with the shipped AEs, the AEs
with ae=video_tiny / audio_tiny on avworld clips rendered as they train. The trainer runs in blocks of BLOCK steps;
its validation hook (every BLOCK steps) runs the bare step BLOCK times in between: the same model's fwd + bwd +
optimizer step on one fixed batch, no data, EMA, clipping, logging or checkpoints. So trainer and bare step are timed
interleaved, block by block, and their ratio is the median of the per-block ratios, which holds on a busy machine.
A trainer block includes everything a step of a user's run does at the config's cadence (data, text states, the
objective, EMA, clipping, logging, checkpoints every trainer.ckpt_every steps); validation passes are excluded and
one is timed on its own. The first block (warm-up, and the compile with trainer.compile=true) is not counted.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from avgen.cli.common import CONFIG_DIR
from tools.benchmarks.common import threads_note, train_step_fn

SECTION = "trainers"
NOTES = ["Trainers: median of interleaved blocks (trainer block, then the bare step as often), min and max beside; "
         "steps/s of the trainer end to end, and its time per step over the bare step's."]  # fmt: skip


def row(metric: str, value, unit: str, note: str) -> dict:
    return {"section": SECTION, "metric": metric, "value": value, "unit": unit, "note": note}


class Interleave:
    """A validation hook that times the trainer's blocks and runs `bare` as many steps in between."""

    def __init__(self, bare, block: int) -> None:
        self.bare, self.block = bare, block
        self.trainer: list[float] = []  # seconds per step, per block
        self.bare_times: list[float] = []
        self.mark: float | None = None

    def __call__(self, model, step: int) -> dict:
        now = time.perf_counter()
        if self.mark is not None:
            self.trainer.append((now - self.mark) / self.block)
        t0 = time.perf_counter()
        for _ in range(self.block):
            self.bare()
        self.bare_times.append((time.perf_counter() - t0) / self.block)
        self.mark = time.perf_counter()
        return {}

    def rows(self, name: str, unit_note: str, extra: str) -> list[dict]:
        trainer = self.trainer  # blocks 2.. (the first, with warm-up and compile, ends before the first call)
        bare = self.bare_times[1 : len(trainer) + 1]  # the bare block after each (the first bare one warms up)
        ratios = [t / b for t, b in zip(trainer, bare, strict=True)]
        med = statistics.median(trainer)
        n = len(ratios)
        return [
            row(f"{name} trainer end to end", 1 / med, "steps/s", f"median of {n} blocks of {self.block} steps "
                f"(min {1 / max(trainer):.3g}, max {1 / min(trainer):.3g}); {unit_note}; {extra}"),
            row(f"{name} bare step", 1 / statistics.median(bare), "steps/s", "fwd + bwd + optimizer on one fixed "
                "batch, interleaved with the trainer's blocks"),
            row(f"{name} trainer / bare step time", statistics.median(ratios), "x", f"median over {n} blocks (min "
                f"{min(ratios):.3f}, max {max(ratios):.3f}); target <= 1.10 for the DiT"),
        ]  # fmt: skip


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(name, overrides=overrides)


def dit_rows(quick: bool, compiled: bool, work: Path, latents: Path) -> list[dict]:
    from avgen.cli.train import prepare
    from avgen.train.loop import train_dit
    from tools.benchmarks.common import dit_batch

    block, blocks = (5, 3) if quick else (20, 7)
    out = work / f"dit_{'compiled' if compiled else 'eager'}"
    cfg = _compose("train", ["experiment=default_cpu", f"latents={latents}", f"out_dir={out}",
                             f"trainer.steps={block * blocks}", f"trainer.val_every={block}", "trainer.progress=false",
                             f"trainer.compile={str(compiled).lower()}", "validation.probe_clips=0"])  # fmt: skip
    r = prepare(cfg)
    layout = r.batcher.layout
    batch = dit_batch(layout, r.trainer.batch_size)
    bare_model = _copy_trained(r.model, compiled)
    opt = r.optimizer(bare_model.parameters())

    def forward() -> torch.Tensor:
        vv, va = bare_model(batch["xv"], batch["xa"], batch["tv"], batch["ta"], batch["text"], batch["mask"], layout)
        return (vv - batch["xv"]).square().mean() + (va - batch["xa"]).square().mean()

    hook = Interleave(train_step_fn(forward, opt), block)
    train_dit(r.model, r.objective, r.batcher, len(r.batcher), r.trainer, r.out, validate=hook, info=r.info,
              optimizer=r.optimizer)  # fmt: skip
    mode = "torch.compile" if compiled else "eager"
    extra = f"{mode}, experiment=default_cpu, batch {r.trainer.batch_size}, {threads_note()}"
    return hook.rows(f"DiT ({mode})", f"{layout.l} tokens", extra)


def _copy_trained(model: torch.nn.Module, compiled: bool) -> torch.nn.Module:
    import copy

    bare = copy.deepcopy(model).train()
    if compiled:
        bare.compile()
    return bare


def validation_row(work: Path, latents: Path) -> dict:
    """One validation pass of the default recipe (probe and validation prompts), timed on its own."""
    from avgen.cli.train import prepare
    from avgen.train.ema import EMA

    cfg = _compose("train", ["experiment=default_cpu", f"latents={latents}", f"out_dir={work / 'val'}",
                             "trainer.progress=false"])  # fmt: skip
    r = prepare(cfg)
    ema = EMA(r.model)
    t0 = time.perf_counter()
    r.validator(ema.model, 0)
    return row("DiT validation pass", time.perf_counter() - t0, "s", f"every trainer.val_every="
               f"{r.trainer.val_every} steps: the dependence probe ({cfg.validation.probe_clips} clips a family) "
               "and the validation prompts")  # fmt: skip


def ae_rows(name: str, quick: bool, compiled: bool, work: Path, workers: int | None = None) -> list[dict]:
    """One AE trainer as configured (workers=None: the config's trainer.workers), beside its bare step."""
    from avgen.cli.train_ae import prepare
    from avgen.train.ae_loop import make_batch, train_autoencoder

    block, blocks = (3, 3) if quick else (10, 7)
    out = work / f"{name}_{'compiled' if compiled else 'eager'}_{workers}"
    more = [] if workers is None else [f"trainer.workers={workers}"]
    cfg = _compose("train_ae", [f"ae={name}", f"out_dir={out}", f"trainer.steps={block * blocks}",
                                f"trainer.val_every={block}", "trainer.progress=false", "validation.clips=0",
                                f"trainer.compile={str(compiled).lower()}", *more])  # fmt: skip
    torch._dynamo.reset()  # each AE compiles afresh (the two AEs share Autoencoder.forward)
    r = prepare(cfg)
    x = make_batch(r.data, r.ae.modality, 0, r.trainer, r.ae.geometry)
    bare_ae = instantiate(cfg.ae.model).train()  # a twin (weight-normed convolutions cannot be deep-copied)
    bare_ae.load_state_dict(r.ae.state_dict())
    if compiled:
        bare_ae.compile(dynamic=False)
    opt = r.optimizer(bare_ae.parameters())
    hook = Interleave(train_step_fn(lambda: r.loss_fn(bare_ae, x)["loss"], opt), block)
    train_autoencoder(r.ae, r.loss_fn, r.data, r.trainer, r.out, optimizer=r.optimizer, validate=hook)
    mode = ("torch.compile" if compiled else "eager") + f", workers={r.trainer.workers}"
    extra = f"{mode}, batch {r.trainer.batch_size}, {threads_note()}"
    rows = hook.rows(f"{name} ({mode})", f"crops {tuple(x.shape[1:])}, clips rendered by the avworld", extra)
    rows.insert(1, row(f"{name} ({mode}) trainer clips/s", rows[0]["value"] * r.trainer.batch_size, "clips/s",
                       "the end-to-end rate x batch"))  # fmt: skip
    return rows


def make_latents(directory: Path, count: int) -> Path:
    from avgen.paths import default_ae_dir
    from tools.cache_latents import main as cache_latents

    code = cache_latents(["--video-ae", str(default_ae_dir("video_ae")), "--audio-ae", str(default_ae_dir("audio_ae")),
                          "--out", str(directory), "--count", str(count)])  # fmt: skip
    if code:
        raise RuntimeError("tools/cache_latents.py failed")
    return directory


def run(quick: bool = False) -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="avgen_bench_trainers_") as tmp:
        work = Path(tmp)
        latents = make_latents(work / "latents", 32 if quick else 64)
        for compiled in (False, True):
            rows += dit_rows(quick, compiled, work, latents)
        if not quick:
            rows.append(validation_row(work, latents))
        for name in ("video_tiny", "audio_tiny"):
            rows += ae_speedups(name, quick, work)
    return rows


def ae_speedups(name: str, quick: bool, work: Path) -> list[dict]:
    """The AE trainer rendering in its own process (workers=0, the trainer before issue 17), as configured, and as
    configured with torch.compile; clips/s of the last two over the first."""
    runs = [
        ae_rows(name, quick, False, work, workers=0),
        ae_rows(name, quick, False, work),
        ae_rows(name, quick, True, work),
    ]
    base = runs[0][1]["value"]
    rows = [r for run in runs for r in run]
    for run in runs[1:]:
        rows.append(row(f"{run[1]['metric']} / workers=0 eager", run[1]["value"] / base, "x", "issue 17's target "
                        ">= 1.5x (the same batches: a batch is a function of the step)"))  # fmt: skip
    return rows


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
