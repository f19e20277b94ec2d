"""avgen-app with a tiny random-weight model: the handlers without a browser (checks, uploads, every task's files,
messages instead of crashes), then the page in a real headless Chromium (Debian's, through Playwright): type a
prompt, click, and the <video>'s duration; an a2v speech upload with a WebM preview; clean shutdown.

AVGEN_APP_MODEL=DIR runs the browser tests on a trained model; AVGEN_SCREENSHOT=1 saves assets/app_screenshot.png.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import av
import pytest
import soundfile as sf
import torch

from avgen.app.core import TASK_LABELS, AppCore, AppError, Limits, Request, example_prompts
from avgen.data.avworld import AVWorld
from avgen.media import read_clip, read_metadata
from avgen.pipeline import AVGenPipeline
from tests.core_fixtures import tiny_model_dir
from tests.media_factory import flash_click_clip

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
VIDEO_READY = "() => { const v = document.querySelector('#result-video video'); return v && v.readyState >= 1; }"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("model") / "m")


@pytest.fixture(scope="module")
def pipe(model_dir):
    return AVGenPipeline.from_pretrained(model_dir)


@pytest.fixture
def core(pipe, tmp_path):
    return AppCore(pipe, tmp_path / "work", Limits(max_upload_seconds=10.0))


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """speech.wav (1.75 s of avworld speech), long.wav (5 s), flash.mp4 (2 s, 64x64), silent.mp4, garbage.mp4."""
    d = tmp_path_factory.mktemp("media")
    talk = AVWorld(seed=3, duration=1.75, families=["talk"])[0]
    sf.write(d / "speech.wav", talk.audio[0].numpy(), 16000)
    sf.write(d / "long.wav", torch.zeros(16000 * 5).numpy(), 16000)
    flash_click_clip(duration=2.0, fps=16, sr=16000, size=64).save(d / "flash.mp4")
    with av.open(str(d / "silent.mp4"), "w") as out:  # pictures without a sound track
        vs = out.add_stream("libx264", rate=16)
        vs.width, vs.height, vs.pix_fmt = 64, 64, "yuv420p"
        for i in range(16):
            frame = av.VideoFrame.from_ndarray(torch.full((64, 64, 3), 16 * i, dtype=torch.uint8).numpy(), "rgb24")
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    (d / "garbage.mp4").write_bytes(b"this is not a video" * 100)
    return {p.stem: p for p in d.iterdir()}


# ----------------------------------------------------------------------------------------------------------------------
# handlers
# ----------------------------------------------------------------------------------------------------------------------
def test_examples_come_from_the_avworld_vocabulary():
    prompts = example_prompts()
    assert len(prompts) == 7 and prompts == example_prompts()  # deterministic
    for word in ("circle", "says", "blinks", "square", "pings"):
        assert any(word in p for p in prompts), word


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"prompt": "  "}, "type a prompt"),
        ({"task": "dance"}, "unknown task"),
        ({"steps": 0}, "steps must be a whole number from 1 to 100"),
        ({"steps": 2.5}, "whole number"),
        ({"seed": None}, "seed is empty"),
        ({"seed": "abc"}, "seed must be a number"),
        ({"duration": 9}, "duration (s) must be a number from 0.0625 to 4"),
        ({"cfg_video": -1}, "video guidance"),
        ({"cfg_sync": -1}, "sync guidance"),
        ({"prompt": "x" * 400}, "keep it under 300"),
        ({"preview": "gif"}, "preview must be"),
        ({"task": "a2v"}, "upload the audio first"),
        ({"task": "extend", "duration": 20}, "seconds to add"),
        ({"script": "a\n1.5-1.2 a knock"}, "the script line 2 ('1.5-1.2 a knock'): the end 1.2 s is before the start"),
        ({"script": "0.5-3 a knock", "duration": 2.0}, "3 s is past the end of the 2 s clip"),
        ({"script": "0.5 a knock", "task": "extend", "duration": 1.0}, "clear the script"),
        ({"script": "x" * 2100}, "keep it under 2000"),
    ],
)
def test_bad_fields_give_a_message(core, fields, message):
    with pytest.raises(AppError) as err:
        core.generate(Request(**{"prompt": "a small red circle bounces around", **fields}))
    assert message in str(err.value)


def test_bad_uploads_give_a_message(core, media, tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    cases = [
        ({"task": "a2v", "audio": str(media["garbage"])}, "garbage.mp4) cannot be read as audio or video"),
        ({"task": "a2v", "audio": str(tmp_path / "empty.wav")}, "empty (0 bytes)"),
        ({"task": "a2v", "audio": str(tmp_path / "gone.wav")}, "was not received"),
        ({"task": "a2v", "audio": str(media["silent"])}, "has no audio track"),
        ({"task": "a2v", "audio": str(media["long"])}, "is 5.00 s; the limit here is 4 s"),
        ({"task": "v2a", "video": str(media["speech"])}, "has no video track"),
        ({"task": "extend", "clip": str(media["speech"])}, "has no video track"),
    ]
    for fields, message in cases:
        with pytest.raises(AppError) as err:
            core.generate(Request(**fields))
        assert message in str(err.value), (fields, str(err.value))
        assert str(tmp_path) not in str(err.value) and "/tmp/" not in str(err.value)  # names the file, not the path
    small = AppCore(core.pipe, core.workdir, Limits(max_upload_mb=0.01))
    with pytest.raises(AppError, match=r"MB; uploads are limited to 0.01 MB"):
        small.generate(Request(task="a2v", audio=str(media["speech"])))


def _duration(path: Path) -> float:
    with av.open(str(path)) as c:
        return c.duration / av.time_base


def test_t2av_writes_mp4_download_webm_preview_figure_and_metrics(core, pipe):
    steps: list[str] = []
    req = Request("a man says 'hello river'", "t2av", seed=4, steps=2, duration=1.5, preview="webm")
    r = core.generate(req, lambda frac, desc: steps.append(desc))
    assert "sampling" in steps and r.seconds > 0
    for p in (r.preview, r.download, r.figure):
        assert p.is_file() and core.workdir in p.parents
    clip = read_clip(r.download)
    assert clip.video.shape[0] == 24 and abs(clip.audio.shape[1] / clip.sample_rate - 1.5) < 1 / 16
    assert read_metadata(r.download)["prompt"] == "a man says 'hello river'"
    with av.open(str(r.preview)) as c:
        assert c.format.name.startswith("matroska") and [s.codec_context.name for s in c.streams] == ["vp9", "opus"]
    assert abs(_duration(r.preview) - 1.5) < 1 / 16 and r.preview.suffix == ".webm"
    assert set(r.metrics) == {"offset", "AV-Align", "mouth_sync"}  # "says": speech, so mouth_sync applies
    assert "time taken" in r.summary and "AV-Align" in r.summary and pipe.model_hash in r.summary


def test_t2a_and_t2v(core):
    r = core.generate(Request("a yellow circle lamp blinks with a high beep", "t2a", steps=2, duration=1.0))
    assert r.download.suffix == ".wav" and sf.info(str(r.download)).duration == pytest.approx(1.0)
    shown = read_clip(r.preview)  # the player shows the spectrogram with a moving playhead
    assert shown.video.shape[0] == 16 and "no pictures" in r.metrics["sync"]
    r = core.generate(Request("a large blue square bounces around", "t2v", steps=2, duration=1.0))
    assert read_clip(r.download).video.shape[0] == 16 and "no sound" in r.metrics["sync"]
    assert "mouth_sync" not in r.metrics


def test_a2v_v2a_extend_from_uploads(core, media):
    r = core.generate(Request("", "a2v", steps=2, audio=str(media["speech"])))
    assert r.duration == pytest.approx(1.75) and "mouth_sync" in r.metrics
    r = core.generate(Request("", "v2a", steps=2, video=str(media["flash"])))
    assert read_clip(r.download).video.shape[0] == 32
    r = core.generate(Request("", "extend", steps=2, duration=1.0, clip=str(media["flash"])))
    assert read_clip(r.download).video.shape[0] == 48


def test_a_script_replaces_the_prompt(core):
    script = "a kitchen\n0.2-0.6 left: says 'hello river'"
    r = core.generate(Request("a red ball", "t2av", steps=1, duration=1.0, script=script))
    meta = read_metadata(r.download)
    assert meta["prompt"] == "a kitchen; left: says 'hello river'" and json.loads(meta["script"])[1]["start"] == 0.2
    assert read_clip(r.download).video.shape[0] == 16 and "mouth_sync" in r.metrics  # "says": speech


def test_old_results_are_removed(pipe, tmp_path):
    core = AppCore(pipe, tmp_path, Limits(keep_results=2))
    for seed in range(4):
        core.generate(Request("a small red circle bounces around", steps=1, duration=0.5, seed=seed))
    assert len(list((tmp_path / "results").iterdir())) == 2


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """avgen.app.ui, with Gradio's temp directory (read at import) under pytest's, not /tmp/gradio."""
    if importlib.util.find_spec("gradio") is None:
        pytest.skip("gradio is not installed (the app extra: pip install -e '.[app]')")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        import avgen.app.ui

        yield avgen.app.ui


def test_click_handler_answers_with_messages_never_raises(core, ui):
    run_request, task_updates = ui.run_request, ui.task_updates
    status, video, figure, download = run_request(core, Request(""))
    assert status.startswith("**Could not generate:**") and "type a prompt" in status and video is None

    class Broken:
        def generate(self, req, progress):
            raise RuntimeError("out of memory")

    status, *files = run_request(Broken(), Request("x"))
    assert "Generation failed" in status and "out of memory" in status and files == [None, None, None]
    seen = []
    status, video, figure, download = run_request(core, Request("x", steps=1), lambda f, desc: seen.append(desc))
    assert video.endswith(".mp4") and download == video and figure.endswith(".png") and "sampling" in seen
    audio, vid, clip, duration = task_updates("a2v", core)
    assert audio["visible"] and not vid["visible"] and not clip["visible"] and not duration["visible"]
    assert task_updates("extend", core)[3]["label"] == "Seconds to add"


def test_page_wiring(core, ui):
    demo = ui.build(core)
    fn = next(f for f in demo.fns.values() if f.api_name == "generate")
    assert fn.concurrency_limit == 1  # one generation at a time; the rest wait in the queue
    params = list(inspect.signature(fn.fn).parameters.values())
    assert all(p.kind != p.VAR_POSITIONAL for p in params)  # Gradio only finds a Progress among named parameters
    assert isinstance(params[-1].default, ui.gr.Progress) and params[-1].default.track_tqdm  # the sampler's steps


def test_cli_without_a_model_says_so(tmp_path):
    from avgen.app.cli import main

    with pytest.raises(SystemExit, match="no trained model"):
        main(["--model", str(tmp_path)])


# ----------------------------------------------------------------------------------------------------------------------
# the page in a real browser
# ----------------------------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    if importlib.util.find_spec("gradio") is None:
        pytest.skip("gradio is not installed (the app extra: pip install -e '.[app]')")
    model, port = os.environ.get("AVGEN_APP_MODEL") or str(model_dir), _free_port()
    url, log = f"http://127.0.0.1:{port}/", tmp_path_factory.mktemp("server") / "server.log"
    cmd = [sys.executable, "-m", "avgen.app", "--model", model, "--port", str(port), "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    deadline = time.time() + 240
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"avgen-app did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
    workdir = Path(log.read_text().split("work directory ")[1].split()[0])
    yield {"url": url, "proc": proc, "workdir": workdir, "log": log}
    if proc.poll() is None:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (the app extra: pip install -e '.[app]')")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (tools/_setup.sh does it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _video_duration(page, timeout_s: float = 300) -> float:
    page.wait_for_function(VIDEO_READY, timeout=timeout_s * 1000)
    return page.evaluate("document.querySelector('#result-video video').duration")


def test_browser_t2av_plays_a_video_of_the_requested_duration(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(server["url"])
    page.click("#generate")  # no prompt yet: a message in the page, and the server goes on
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('type a prompt')")
    page.fill("#prompt textarea", "a small red circle bounces off the walls with wooden knocks")
    page.fill("#duration input[type=number]", "1.5")
    page.press("#duration input[type=number]", "Enter")
    t0 = time.perf_counter()
    page.click("#generate")
    duration = _video_duration(page)
    click_to_video = time.perf_counter() - t0
    fps = 16.0
    assert abs(duration - 1.5) <= 1 / fps, duration
    status = page.inner_text("#status")
    assert "AV-Align" in status and "1.50 s" in status, status
    assert page.get_attribute("#download a", "href").endswith(".mp4")
    assert page.evaluate("document.querySelector('#preview-format textarea').value") in ("mp4", "webm")
    print(f"\nclick to video: {click_to_video:.1f} s (model {os.environ.get('AVGEN_APP_MODEL') or 'tiny random'})")
    if os.environ.get("AVGEN_SCREENSHOT") == "1":
        page.screenshot(path=str(ROOT / "assets" / "app_screenshot.png"), full_page=True)
    page.close()


def test_browser_a2v_speech_upload_with_webm_preview(server, browser, media):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(server["url"] + "?preview=webm")  # as a browser without H.264/AAC would get it
    page.get_by_label(TASK_LABELS["a2v"]).check()
    page.set_input_files("#audio-input input[type=file]", str(media["speech"]))
    page.wait_for_selector("#audio-input a[data-testid=download-link]", state="attached", timeout=60_000)
    page.click("#generate")
    duration = _video_duration(page)
    assert abs(duration - 1.75) <= 1 / 16.0, duration
    assert page.evaluate("document.querySelector('#result-video video').currentSrc").endswith(".webm")
    assert page.get_attribute("#download a", "href").endswith(".mp4")  # the download stays H.264 + AAC
    assert "mouth_sync" in page.inner_text("#status")
    page.close()


def test_server_stops_and_removes_its_files(server):
    assert server["workdir"].is_dir()
    server["proc"].send_signal(signal.SIGTERM)
    assert server["proc"].wait(timeout=60) == 0, server["log"].read_text()[-2000:]
    assert not server["workdir"].exists()
