"""avgen-app: serve the Gradio page for one model directory.

    avgen-app                                  # $AVGEN_MODEL or ./assets/default, http://127.0.0.1:7860
    avgen-app --model runs/dit/export --port 8000
    avgen-app --host 0.0.0.0                   # reachable from the network (or --share for a Gradio link)

Every file the app writes (uploads, results, Gradio's cache) lies under one temporary directory, removed on exit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from avgen.app.core import Limits


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="avgen-app", description="A web page for every avgen generation task.")
    p.add_argument(
        "--model", type=Path, default=None, help="model directory (default: $AVGEN_MODEL, else ./assets/default)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes the app on the network)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link (needs internet)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--queue-size", type=int, default=16, help="requests that may wait for the one running")
    p.add_argument("--max-upload-mb", type=float, default=Limits.max_upload_mb)
    p.add_argument("--max-upload-seconds", type=float, default=Limits.max_upload_seconds)
    return p.parse_args(argv)


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt  # Gradio's launch() closes the server on it; main's finally removes the work directory


def serve(args: argparse.Namespace, workdir: Path) -> None:
    import torch

    from avgen.app.core import AppCore
    from avgen.pipeline import AVGenPipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = AVGenPipeline.from_pretrained(args.model, device=args.device)
    limits = Limits(max_upload_mb=args.max_upload_mb, max_upload_seconds=args.max_upload_seconds)
    core = AppCore(pipe, workdir, limits)
    try:
        import gradio as gr

        from avgen.app.ui import CSS, build
    except ImportError as e:
        raise SystemExit(f"avgen-app: Gradio is missing ({e}); install the app extra: pip install -e '.[app]'") from e
    demo = build(core).queue(default_concurrency_limit=1, max_size=args.queue_size)
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    print(f"[avgen-app] model {args.model} ({pipe.model_hash}); work directory {workdir}", file=sys.stderr, flush=True)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        max_file_size=f"{args.max_upload_mb:g}mb",
        allowed_paths=[str(workdir)],
        ssr_mode=False,
        theme=theme,
        css=CSS,
    )


def main(argv: list[str] | None = None) -> None:
    from avgen.paths import default_model_dir

    args = parse_args(argv)
    try:
        args.model = default_model_dir(args.model)
    except FileNotFoundError as e:
        sys.exit(f"avgen-app: {e}")
    if not (args.model / "dit").is_dir():
        sys.exit(f"avgen-app: no trained model in {args.model} (dit/ is missing): pass --model DIR")
    workdir = Path(tempfile.mkdtemp(prefix="avgen-app-"))
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "gradio")  # before Gradio is imported: it reads this at import
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    signal.signal(signal.SIGTERM, _stop)
    try:
        serve(args, workdir)
    except KeyboardInterrupt:
        pass
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"[avgen-app] stopped; removed {workdir}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
