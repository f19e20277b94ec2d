"""The Gradio page: inputs on the left, the result (video with sound, picture, metrics, download) on the right.

Import this module only after GRADIO_TEMP_DIR is set (avgen.app.cli does it): Gradio reads it at import time.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

import gradio as gr

from avgen.app.core import PREVIEW_CODECS, TASK_LABELS, TEXT_TASKS, AppCore, AppError, Request, example_prompts
from avgen.tasks import MAX_LENGTH_FACTOR, TASKS

# Runs in the browser when the page loads: "mp4" where it plays H.264/AAC, else "webm". ?preview=webm forces one.
PREVIEW_JS = f"""() => {{
  const asked = new URLSearchParams(window.location.search).get("preview");
  if (asked === "mp4" || asked === "webm") return asked;
  return document.createElement("video").canPlayType('{PREVIEW_CODECS}') ? "mp4" : "webm";
}}"""

CSS = """
#result-video video { image-rendering: pixelated; }
#figure img { image-rendering: pixelated; }
"""

INTRO = """# avgen: video with synchronized sound
Type a prompt (or click an example), pick a task, press **Generate**. One generation runs at a time; others wait in
a queue. The mp4 download is H.264 + AAC with the prompt, seed and model hash in its metadata. A script (who says
what, and when) replaces the prompt when it is not empty."""

SCRIPT_EXAMPLE = """a kitchen, two people at a table
0.2-1.1 left: says 'apple seven'
1.5 a knock"""


def run_request(
    core: AppCore, req: Request, progress: Callable | None = None
) -> tuple[str, str | None, str | None, str | None]:
    """The click handler's body: (status markdown, preview video, figure, download); a message instead on errors."""
    say = (lambda frac, desc: progress(frac, desc=desc)) if progress is not None else None
    try:
        result = core.generate(req, say)
    except (AppError, ValueError) as e:  # bad request, or a pipeline check (MediaError is a ValueError)
        return f"**Could not generate:** {e}", None, None, None
    except Exception as e:  # keep serving: report, log the trace for the operator
        traceback.print_exc(file=sys.stderr)
        return f"**Generation failed:** {type(e).__name__}: {e}", None, None, None
    return result.summary, str(result.preview), str(result.figure), str(result.download)


def task_updates(task: str, core: AppCore) -> tuple:
    """Which upload is shown and what the duration slider means, for a task: (audio, video, clip, duration)."""
    longest = core.pipe.duration * MAX_LENGTH_FACTOR
    if task in TEXT_TASKS:
        duration = gr.update(visible=True, label="Duration (s)", maximum=longest, value=core.pipe.duration)
    elif TASKS[task].given == "prefix":
        duration = gr.update(visible=True, label="Seconds to add", maximum=core.limits.max_extend_seconds, value=1.0)
    else:  # a2v / v2a: as long as the upload
        duration = gr.update(visible=False)
    return (
        gr.update(visible=TASKS[task].input == "audio"),
        gr.update(visible=TASKS[task].input == "video"),
        gr.update(visible=TASKS[task].input == "clip"),
        duration,
    )


def _inputs(core: AppCore) -> dict:
    pipe, lim = core.pipe, core.limits
    with gr.Column(scale=1):
        prompt = gr.Textbox(label="Prompt", lines=2, max_length=lim.max_prompt_chars, elem_id="prompt")
        script = gr.Textbox(label="Script (optional, replaces the prompt): one line per event, [START[-END]] "
                            "[SPEAKER:] TEXT in seconds; untimed lines are about the whole clip", lines=3,
                            max_length=lim.max_script_chars, placeholder=SCRIPT_EXAMPLE, elem_id="script")  # fmt: skip
        task = gr.Radio(
            [(label, key) for key, label in TASK_LABELS.items()], value="t2av", label="Task", elem_id="task"
        )
        upload_note = f"up to {min(lim.max_upload_seconds, core.longest):g} s, {lim.max_upload_mb:g} MB"
        audio = gr.Audio(
            sources=["upload", "microphone"],
            type="filepath",
            label=f"Sound for a2v: upload or record ({upload_note})",
            visible=False,
            elem_id="audio-input",
        )
        video = gr.Video(
            sources=["upload"], label=f"Video for v2a ({upload_note})", visible=False, elem_id="video-input"
        )
        clip = gr.Video(
            sources=["upload"],
            include_audio=True,
            label=f"Clip to extend (up to {lim.max_upload_seconds:g} s, {lim.max_upload_mb:g} MB)",
            visible=False,
            elem_id="clip-input",
        )
        duration = gr.Slider(
            0.25, core.longest, value=pipe.duration, step=0.25, label="Duration (s)", elem_id="duration"
        )
        with gr.Row():
            seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="seed")
            steps = gr.Slider(1, lim.max_steps, value=pipe.sampler.steps, step=1, label="Steps", elem_id="steps")
        with gr.Row():
            cfg_v = gr.Slider(0, lim.max_cfg, value=pipe.sampler.cfg_video, step=0.5, label="Guidance: video")
            cfg_a = gr.Slider(0, lim.max_cfg, value=pipe.sampler.cfg_audio, step=0.5, label="Guidance: sound")
            cfg_s = gr.Slider(0, lim.max_cfg, value=pipe.sampler.cfg_sync, step=0.5,
                              label="Guidance: sync (sound follows picture)")  # fmt: skip
        go = gr.Button("Generate", variant="primary", elem_id="generate")
        gr.Examples([[p] for p in example_prompts()], inputs=[prompt], label="Examples (the avworld vocabulary)")
    return dict(prompt=prompt, script=script, task=task, seed=seed, steps=steps, duration=duration, cfg_video=cfg_v,
                cfg_audio=cfg_a, cfg_sync=cfg_s, audio=audio, video=video, clip=clip, go=go)  # fmt: skip


def build(core: AppCore) -> gr.Blocks:
    """The page for one loaded model. Queue it (one generation at a time) and launch it: see avgen.app.cli."""
    with gr.Blocks(title="avgen", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            ins = _inputs(core)
            with gr.Column(scale=1):
                status = gr.Markdown("Results appear here.", elem_id="status")
                video_out = gr.Video(label="Result", interactive=False, height=360, elem_id="result-video")
                figure = gr.Image(label="Frames and spectrogram", type="filepath", interactive=False, elem_id="figure")
                download = gr.File(label="Download", interactive=False, elem_id="download")
        preview = gr.Textbox(value="mp4", visible="hidden", elem_id="preview-format")
        demo.load(None, None, preview, js=PREVIEW_JS)
        ins["task"].change(
            lambda t: task_updates(t, core), ins["task"], [ins["audio"], ins["video"], ins["clip"], ins["duration"]]
        )
        names = [
            "prompt",
            "task",
            "seed",
            "steps",
            "duration",
            "cfg_video",
            "cfg_audio",
            "cfg_sync",
            "audio",
            "video",
            "clip",
            "script",
        ]

        # Gradio finds the Progress by its default and its position: keep the parameters spelled out (not *args)
        def on_generate(
            prompt, task, seed, steps, duration, cfg_video, cfg_audio, cfg_sync, audio, video, clip, script, preview,
            progress=gr.Progress(track_tqdm=True),  # noqa: B008 (Gradio's way)
        ):  # fmt: skip
            req = Request(prompt, task, seed, steps, duration, cfg_video, cfg_audio, cfg_sync, audio, video, clip,
                          preview, script)  # fmt: skip
            return run_request(core, req, progress)

        ins["go"].click(
            on_generate,
            [ins[n] for n in names] + [preview],
            [status, video_out, figure, download],
            concurrency_limit=1,
            api_name="generate",
        )
    return demo
