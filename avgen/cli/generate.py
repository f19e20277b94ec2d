"""avgen-generate: prompts or a script (and optional input media) -> mp4s with synchronized sound.
Config: avgen/conf/generate/. A script (script=FILE) says who says what, and when: avgen/script.py."""

from __future__ import annotations

import json
import math
import re
import sys
import tempfile
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from avgen._atomic import remove_leftovers
from avgen.cli.common import CONFIG_DIR, friendly_errors
from avgen.errors import InputError, MissingFileError
from avgen.media import MediaError, read_clip
from avgen.paths import default_model_dir
from avgen.script import Script
from avgen.tasks import TASKS, get_task

EXAMPLE_INPUT = {"audio": "speech.wav", "video": "silent.mp4", "clip": "clip.mp4"}  # by what a task takes
FREE_TEXT_KEYS = ("prompt", "input", "out", "model", "prompts_file", "script")


def quote_free_text(argv: list[str]) -> list[str]:
    """Let `prompt=a man says 'hi', twice` through Hydra's override grammar by quoting free-text values."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key.lstrip("+~") in FREE_TEXT_KEYS and not (value[:1] in "'\"" and value[-1:] == value[:1] != ""):
            arg = f'{key}="' + value.replace('"', '\\"').replace("${", "\\${") + '"'
        out.append(arg)
    return out


def read_text_file(key: str, value: str) -> str:
    """The UTF-8 text of the file that `key`=value names; one clear line when it is missing or not UTF-8."""
    path = Path(value)
    if not path.is_file():
        raise MissingFileError(f"{key}={path} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{key}={path} is not UTF-8 text (byte {e.start}): save it as UTF-8") from e


def script_of(cfg: DictConfig) -> Script | None:
    """script=FILE read and parsed (errors name the file and line), or None; refused beside prompt=/prompts_file=."""
    if not cfg.get("script"):
        return None
    if str(cfg.prompt or "").strip() or cfg.prompts_file:
        raise InputError("script= replaces prompt= and prompts_file=: give only one of them")
    if get_task(cfg.task).given == "prefix":
        raise InputError(f"task={cfg.task} continues a clip window by window: script= is for the other tasks")
    return Script.parse(read_text_file("script", cfg.script), source=str(cfg.script))


def prompts_of(cfg: DictConfig) -> list[str]:
    if cfg.prompts_file:
        path = Path(cfg.prompts_file)
        text = read_text_file("prompts_file", cfg.prompts_file)
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
        if not prompts:
            raise InputError(f"prompts_file={path} has no prompts (one prompt a line)")
        return prompts
    prompt = str(cfg.prompt or "").strip()
    if not prompt and get_task(cfg.task).needs_prompt:
        raise InputError(f'task {cfg.task} needs a prompt: avgen-generate prompt="a small red ball bounces around"')
    return [prompt]


def output_path(cfg: DictConfig, prompt: str, index: int, many: bool) -> Path:
    suffix = ".mp4" if get_task(cfg.task).keeps[0] else ".wav"  # sound only (t2a): a .wav
    slug = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:40] or "clip"
    name = f"{cfg.task}_{index:03d}_{slug}_s{cfg.seed}{suffix}" if many else f"{cfg.task}_{slug}_s{cfg.seed}{suffix}"
    if cfg.out is None:
        return Path("outputs/generate") / name
    out = Path(cfg.out)
    if many or out.is_dir() or str(cfg.out).endswith("/"):
        return out / name
    if out.suffix.lower() not in (".mp4", ".mov", ".m4v", ".wav", ".flac"):
        raise InputError(f"out={out}: give an .mp4 path (.wav/.flac for t2a) or a directory")
    return out


def check_clip_numbers(cfg: DictConfig) -> None:
    """Refuse non-finite or out-of-range numbers up front, naming the key (the sampler settings check themselves)."""
    for key, low in (("duration", 0.0), ("seconds", 0.0)):
        value = cfg[key]
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > low):
            raise InputError(f"{key}={value} must be a finite number > {low:g}")
    if not isinstance(cfg.seed, int):
        raise InputError(f"seed={cfg.seed} must be a whole number")


def check_writable(path: Path, key: str = "out") -> None:
    """Fail before any sampling when `path` cannot be written: a parent that is a file, or a folder we may not
    write in (tried with a temporary file, which also catches read-only file systems where root passes access())."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{key}={path}: {parent} is a file, not a directory; choose another output path")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise InputError(f"{key}={path}: cannot write in {parent} ({e.strerror}); choose another output path") from e


def task_inputs(cfg: DictConfig, pipe) -> dict:
    """Read input= for the tasks that take one (a2v, v2a, extend) at the model's rate, fps and frame size."""
    kind = get_task(cfg.task).input
    if kind is None:
        if cfg.input:
            with_input = ", ".join(t.name for t in TASKS.values() if t.input)
            raise InputError(f"input= is for task={with_input}, not task={cfg.task}")
        return {}
    if not cfg.input:
        example = EXAMPLE_INPUT[kind]
        raise InputError(f"task={cfg.task} needs an input file: avgen-generate task={cfg.task} input={example}")
    path = Path(cfg.input)
    if not path.is_file():
        raise MissingFileError(f"input={path} does not exist")
    if kind == "audio":
        clip = read_clip(path, sample_rate=pipe.sample_rate)
        if clip.audio.shape[-1] == 0:
            raise MediaError(f"{path}: has no audio samples")
        return {"audio": clip.audio}
    if kind == "video":
        clip = read_clip(path, fps=pipe.fps, size=pipe.size, sample_rate=pipe.sample_rate, missing_audio="silence")
        if clip.video.shape[0] == 0:
            raise MediaError(f"{path}: has no video frames (v2a needs a video)")
        return {"video": clip.video}
    clip = read_clip(path, fps=pipe.fps, size=pipe.size, sample_rate=pipe.sample_rate)
    return {"clip": clip, "seconds": float(cfg.seconds)}


def run(cfg: DictConfig) -> list[Path]:
    from avgen.pipeline import AVGenPipeline

    t0 = time.perf_counter()
    get_task(cfg.task)  # an unknown task stops here, naming the choices
    script = script_of(cfg)
    prompts = [script.prompt()] if script is not None else prompts_of(cfg)
    check_clip_numbers(cfg)
    if script is not None and cfg.duration is not None:
        script.check_duration(float(cfg.duration))  # before loading the model (else the pipeline checks)
    for i, prompt in enumerate(prompts):
        check_writable(output_path(cfg, prompt, i, len(prompts) > 1))
    model = default_model_dir(cfg.model)
    if not (model / "dit").is_dir():
        raise MissingFileError(
            f"no trained model in {model} (dit/ is missing): pass model=DIR (an avgen-train export directory)"
        )
    pipe = AVGenPipeline.from_pretrained(model, device=cfg.device)
    try:
        inputs = task_inputs(cfg, pipe)
    except (MediaError, ValueError) as e:
        raise type(e)(str(e) if str(cfg.input) in str(e) else f"input={cfg.input}: {e}") from e
    keys = ("steps", "cfg_video", "cfg_audio", "cfg_sync", "method", "shift")
    sampler = {k: cfg[k] for k in keys if cfg[k] is not None}
    pipe.settings(**sampler)  # refuses settings that cannot work, naming the key, before any sampling
    print(f"model {model} ({pipe.model_hash}) loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    written = []
    for i, prompt in enumerate(prompts):
        t1 = time.perf_counter()
        try:
            text = {"script": script} if script is not None else {"prompt": prompt}
            clip = pipe(task=cfg.task, seed=int(cfg.seed), duration=cfg.duration, progress=cfg.progress, **text,
                        **inputs, **sampler)  # fmt: skip
        except MediaError as e:
            raise MediaError(f"input={cfg.input}: {e}" if cfg.input else str(e)) from e
        path = output_path(cfg, prompt, i, len(prompts) > 1)
        meta = {
            "prompt": prompt,
            "seed": str(cfg.seed),
            "task": cfg.task,
            "model_hash": pipe.model_hash,
            "steps": str(pipe.settings(**sampler).steps),
            "generator": "avgen",
            **({"script": json.dumps(script.to_list())} if script is not None else {}),
        }
        remove_leftovers(path.parent, target=path.name)  # what a killed earlier run left for this file
        clip.save(path, metadata=meta)
        written.append(path)
        print(f"{path}  ({time.perf_counter() - t1:.1f} s; {time.perf_counter() - t0:.1f} s in all)")
    return written


# its own config directory: `model=DIR` must stay a plain key, not the conf/model group of avgen-train
@hydra.main(version_base="1.3", config_path=str(Path(CONFIG_DIR) / "generate"), config_name="generate")
@friendly_errors
def _hydra_main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    sys.argv = [sys.argv[0], *quote_free_text(sys.argv[1:])]
    _hydra_main()


if __name__ == "__main__":
    main()
