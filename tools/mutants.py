"""Mutation check: apply each known way of breaking the model to a copy of the tree and run the tests that should
notice. Every mutant must be killed (its tests fail); a surviving mutant is a claim the suite does not back.

    .venv/bin/python tools/mutants.py            # all mutants, a table at the end; exit 1 if any survives
    .venv/bin/python tools/mutants.py rope cfg   # only mutants whose name contains one of these words
    .venv/bin/python tools/mutants.py --no-control   # skip the first pass that runs the chosen tests unmutated

Not part of tools/test.sh (a few minutes on 2 cores). Each mutant is one exact text replacement, checked to apply.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]  # pytest arguments: files, node ids, -k expressions
    count: int = 1  # how many times `old` occurs (all are replaced)


LOOP_BACKWARD = '(terms["loss"] * (micro / local)).backward()'
MUTANTS = [
    Mutant("a2v_video_ignores_audio", "avgen/tasks.py", '        elif given == "audio":\n            ga[i] = True',
           '        elif given == "audio":\n            pass', ("tests/test_conditioning.py", "-k", "a2v")),
    Mutant("v2a_audio_ignores_video", "avgen/tasks.py", '        if given == "video":\n            gv[i] = True',
           '        if given == "video":\n            pass', ("tests/test_conditioning.py", "-k", "v2a")),
    Mutant("extend_mask_inverted", "avgen/tasks.py",
           "gv[i], ga[i] = layout.token_mask_before(float(prefix_seconds[i]))",
           "gv[i], ga[i] = (~m for m in layout.token_mask_before(float(prefix_seconds[i])))",
           ("tests/test_conditioning.py", "-k", "extend")),
    Mutant("extend_prefix_halved", "avgen/pipeline.py", "prefix=context)", "prefix=context / 2)",
           ("tests/test_conditioning.py", "-k", "extend")),
    Mutant("gather_mods_level0_for_all", "avgen/models/dit.py", "c.index_select(0, index)",
           "c.index_select(0, torch.zeros_like(index))", ("tests/test_dit.py",)),
    Mutant("gather_mods_drops_one_plus_scale", "avgen/models/dit.py", "c + 1 if i in scales else c.contiguous()",
           "c.contiguous()", ("tests/test_dit.py",)),
    Mutant("rope_off", "avgen/models/dit.py",
           "    x1, x2 = x.chunk(2, dim=-1)\n    return x * cos2 + torch.cat([x2, x1], dim=-1) * sin2", "    return x",
           ("tests/test_dit.py",)),
    Mutant("rope_off_seen_by_memorisation", "avgen/models/dit.py",
           "    x1, x2 = x.chunk(2, dim=-1)\n    return x * cos2 + torch.cat([x2, x1], dim=-1) * sin2", "    return x",
           ("tests/test_sampling.py::test_tiny_dit_memorises_one_latent_pair",)),
    Mutant("given_tokens_not_held", "avgen/sampling.py", "torch.where(m[..., None].to(x.device), v.to(x), x)", "x",
           ("tests/test_conditioning.py",)),
    Mutant("cfg_scales_swapped", "avgen/pipeline.py", "(s.cfg_video, s.cfg_audio)", "(s.cfg_audio, s.cfg_video)",
           ("tests/test_conditioning.py", "-k", "guidance")),
    Mutant("video_decoder_ignores_latents", "avgen/autoencoders/video.py", "x = self.decoder(z)",
           "x = self.decoder(z * 0)", ("tests/test_autoencoders.py", "-k", "mean_clip or learn_one")),
    Mutant("audio_decoder_ignores_latents", "avgen/autoencoders/audio.py", "fit_length(self.decoder(z), n)",
           "fit_length(self.decoder(z * 0), n)", ("tests/test_autoencoders.py", "-k", "mean_clip or learn_one")),
    Mutant("av_align_within_3_frames", "avgen/metrics/sync.py", " - f) <= 1))", " - f) <= 3))",
           ("tests/test_metric_values.py",), count=2),
    Mutant("av_align_one_sided_recall", "avgen/metrics/sync.py",
           "return float(matches / (len(audio_frames) + len(video_frames) - matches))",
           "return float(matched_audio / max(len(audio_frames), 1))", ("tests/test_metric_values.py",)),
    Mutant("psnr_wrong_peak", "avgen/metrics/recon.py", "255.0**2 / mse", "1.0 / mse",
           ("tests/test_metric_values.py",)),
    Mutant("ssim_luminance_halved", "avgen/metrics/recon.py", "((2 * mx * my + c1)", "((mx * my + c1)",
           ("tests/test_metric_values.py",)),
    Mutant("si_sdr_not_scale_invariant", "avgen/metrics/recon.py", "target = (e @ r) / (r @ r + 1e-12) * r",
           "target = r", ("tests/test_metric_values.py",)),
    Mutant("onset_recall_3x_tolerance", "avgen/metrics/recon.py", "<= tolerance for t in ref",
           "<= 3 * tolerance for t in ref", ("tests/test_metric_values.py",)),
    Mutant("ddp_gradients_scaled_by_world_size", "avgen/train/loop.py", LOOP_BACKWARD,
           '(terms["loss"] * (micro / local) * info.world_size).backward()',
           ("tests/test_train_robust.py", "-k", "two_rank_ddp")),
    Mutant("grad_accum_not_averaged", "avgen/train/loop.py", LOOP_BACKWARD, 'terms["loss"].backward()',
           ("tests/test_train_robust.py", "-k", "two_rank_ddp")),
    Mutant("validation_never_runs", "avgen/train/loop.py",
           "if validate is not None and cfg.val_every and step % cfg.val_every == 0:", "if False:",
           ("tests/test_train_dit.py", "-k", "validation")),
    Mutant("non_finite_gradient_unguarded", "avgen/train/skeleton.py",
           'stop_if_not_finite(norm, "gradient", step, out, device)', "pass",
           ("tests/test_train_dit.py", "-k", "non_finite")),
    Mutant("init_from_loads_into_a_copy", "avgen/cli/train.py", "        model.load_state_dict(state)\n",
           "        type(model)(**model.config).load_state_dict(state)\n", ("tests/test_train_dit.py", "-k", "cli")),
    Mutant("export_checkpoint_raw_for_ema", "tools/export_checkpoint.py",
           'state["model"] if args.raw else state["ema"]["model"]',
           'state["ema"]["model"] if args.raw else state["model"]',
           ("tests/test_train_dit.py", "-k", "cli")),
]  # fmt: skip


def copy_tree(dest: Path) -> None:
    """The working tree as git sees it (tracked and untracked, not ignored): what CI would test."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def pytest_in(tree: Path, tests: tuple[str, ...]) -> subprocess.CompletedProcess:
    """Run tests in the copy; PYTHONPATH makes subprocesses (the CLI, torchrun workers) import the copy too."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("AVGEN_NO_SKIPS", None)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    return subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=900)


def run_mutant(m: Mutant, tree: Path) -> tuple[bool, float]:
    """(killed, seconds): apply `m` to the copy, run its tests there, put the file back."""
    target = tree / m.path
    original = target.read_text()
    found = original.count(m.old)
    if found != m.count:
        raise SystemExit(f"error: mutant {m.name}: {m.path} has {found} copies of its text, expected {m.count}")
    target.write_text(original.replace(m.old, m.new))
    start = time.time()
    try:
        done = pytest_in(tree, m.tests)
    finally:
        target.write_text(original)
    if done.returncode not in (0, 1):  # 2-5: the tests could not run at all (collection, usage): not a kill
        raise SystemExit(f"error: mutant {m.name}: pytest exited {done.returncode}:\n{done.stdout[-2000:]}")
    return done.returncode == 1, time.time() - start


def main(argv: list[str]) -> int:
    control = "--no-control" not in argv
    words = [a for a in argv if not a.startswith("--")]
    chosen = [m for m in MUTANTS if not words or any(word in m.name for word in words)]
    rows, survivors = [], 0
    with tempfile.TemporaryDirectory(prefix="avgen-mutants-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        for tests in dict.fromkeys(m.tests for m in chosen) if control else ():  # a kill must not be a broken test
            done = pytest_in(tree, tests)
            if done.returncode != 0:
                raise SystemExit(f"error: unmutated tree fails {' '.join(tests)}:\n{done.stdout[-2000:]}")
            print(f"[control] unmutated: {' '.join(tests)} pass", flush=True)
        for m in chosen:
            killed, seconds = run_mutant(m, tree)
            survivors += not killed
            rows.append(f"| {m.name} | `{m.path}` | {' '.join(m.tests)} | {'killed' if killed else '**SURVIVED**'} "
                        f"| {seconds:.0f} s |")  # fmt: skip
            print(rows[-1], flush=True)
    print("\n| mutant | file | tests | result | time |\n|---|---|---|---|---|\n" + "\n".join(rows))
    print(f"\n{len(chosen) - survivors} of {len(chosen)} mutants killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
