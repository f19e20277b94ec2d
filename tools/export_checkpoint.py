#!/usr/bin/env python
"""Export a DiT training checkpoint (its EMA weights by default) as a model directory AVGenPipeline loads.

python tools/export_checkpoint.py runs/dit_default --out assets/default --half
    # the newest checkpoint of the run; the run's .hydra/config.yaml says which AEs, clip format and sampler
python tools/export_checkpoint.py runs/dit_scripts --out assets/scripts --half --reference video,audio
    # the AEs as references (reference.json) to the directories the run loaded them from, instead of copies
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from avgen.autoencoders.reference import check_parts
from avgen.cli.common import load_autoencoder
from avgen.errors import InputError
from avgen.model_dir import export_model, model_config
from avgen.models.dit import build_dit
from avgen.tokens import ClipFormat
from avgen.train.checkpoint import latest_checkpoint, load_checkpoint


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="an avgen-train out_dir (with checkpoints/ and .hydra/config.yaml)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--checkpoint", default=None, help="a step_XXXXXXXX.pt (default: the newest)")
    ap.add_argument("--raw", action="store_true", help="export the raw weights instead of the EMA")
    ap.add_argument("--half", action="store_true", help="store the DiT in fp16 (loads back as fp32)")
    ap.add_argument("--reference", default="", help="video,audio (or one of them): write a reference.json to the "
                    "directory the run's AE loads from instead of a copy (avgen.autoencoders.reference)")  # fmt: skip
    args = ap.parse_args(argv)
    run = Path(args.run)
    cfg_path = run / ".hydra" / "config.yaml"
    ckpt = Path(args.checkpoint) if args.checkpoint else latest_checkpoint(run / "checkpoints")
    if not cfg_path.is_file() or ckpt is None:
        print(f"error: {run} has no .hydra/config.yaml or no checkpoints/step_*.pt", file=sys.stderr)
        return 2
    try:
        check_parts([p for p in args.reference.split(",") if p])
    except InputError as e:
        print(f"error: --reference {args.reference}: {e}", file=sys.stderr)
        return 2
    cfg = OmegaConf.load(cfg_path)
    video_ae, audio_ae = load_autoencoder(cfg.video_ae, "video_ae"), load_autoencoder(cfg.audio_ae, "audio_ae")
    fmt = ClipFormat.derive(video_ae, audio_ae, cfg.clip, cfg.tokens)
    layout = fmt.layout(video_ae, audio_ae)
    model_cfg = OmegaConf.to_container(cfg.model)
    state = load_checkpoint(ckpt)
    text_dim = state["model"]["null_text"].shape[-1]  # the text encoder's width, as the run trained with it
    preset = model_cfg.pop("preset")
    model = build_dit(preset, layout.pv, layout.pa, layout.per_window, **{"text_dim": text_dim, **model_cfg})
    model.load_state_dict(state["model"] if args.raw else state["ema"]["model"])
    extra = model_config(OmegaConf.to_container(cfg, resolve=True), fmt)
    extra["checkpoint"] = {"file": ckpt.name, "step": int(state["step"])}
    parts = [p for p in args.reference.split(",") if p]
    export_model(model, args.out, extra, video_ae, audio_ae, half=args.half, reference=parts)
    print(f"exported step {int(state['step'])} ({'raw' if args.raw else 'EMA'} weights) of {run} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
