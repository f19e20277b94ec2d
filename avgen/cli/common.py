"""What every entry point shares: user errors (avgen.errors.UserError, configuration mistakes) become one line and
exit code 2 instead of a traceback; anything else is a bug and raises."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from avgen.errors import UserError

# avgen/conf/ ships inside the package (package data), so checkouts, editable and wheel installs find the same files
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def load_autoencoder(group, part: str, device: str = "cpu"):
    """The autoencoder that a video_ae / audio_ae config group names, in eval mode: a class to build (`_target_`, such
    as encodec24k with its checkpoint file, or wan with its directory and fps) or a directory (`path`; null: `part`/
    of the default model) that avgen.autoencoders.load reads at the group's `fps` (video_ae.fps: a diffusers video
    VAE's frame rate; null: its class's default, or the rate an avgen save records)."""
    from hydra.utils import instantiate

    from avgen.autoencoders import load
    from avgen.paths import default_ae_dir

    if "_target_" in group:
        return instantiate(group).to(device).eval()
    return load(default_ae_dir(part, group.get("path")), device, fps=group.get("fps"))


# settings a rerun may change and still resume (logged); any other difference stops it
RESUMABLE = ("trainer.steps", "trainer.log_every", "trainer.ckpt_every", "trainer.val_every", "trainer.keep",
             "trainer.progress", "trainer.device", "trainer.compile", "trainer.workers", "out_dir",
             "validation.probe_clips", "validation.probe_seed", "validation.clips", "validation.seed",
             "export.reference", "export.root")  # fmt: skip


def run_dir(cfg) -> Path:
    """Where a run keeps checkpoints: out_dir, and under Hydra multirun (-m) out_dir/<job number>, so that sweep jobs
    never resume from each other's checkpoints."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.out_dir)


def _flatten(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    return {k: v for key, sub in tree.items() for k, v in _flatten(sub, f"{prefix}{key}.").items()}


def run_config(cfg) -> dict:
    """The run's settings as flat `key: value` pairs (resolved), as run_config.json records them."""
    from omegaconf import OmegaConf

    return _flatten(OmegaConf.to_container(cfg, resolve=True))


def check_resume(cfg, out: Path) -> None:
    """A rerun that resumes must be the same run: stop naming the keys that differ from the recorded config
    (out/run_config.json, see record_run_config), except the RESUMABLE ones, which are logged. An option added to
    avgen since the run started, left empty, is no difference."""
    from avgen.errors import InputError

    flat, record = run_config(cfg), out / "run_config.json"
    if not (record.is_file() and any((out / "checkpoints").glob("step_*.pt"))):
        return
    old = json.loads(record.read_text())
    # a key the run did not record (an option added since), set to nothing (null, [], {}), is the same run
    differ = sorted(k for k in set(old) | set(flat) if old.get(k) != flat.get(k)
                    and not (k not in old and flat.get(k) in (None, [], {})))  # fmt: skip
    fixed = [k for k in differ if k not in RESUMABLE]
    if fixed:
        said = ", ".join(f"{k}={flat.get(k)!r} (the run has {old.get(k)!r})" for k in fixed[:4])
        raise InputError(f"{out} holds a run with other settings: {said}; resume with the run's settings or choose "
                         f"another out_dir")  # fmt: skip
    for k in differ:
        print(f"resuming with {k} changed: {old.get(k)!r} -> {flat.get(k)!r}", file=sys.stderr)


def record_run_config(cfg, out: Path) -> None:
    """Write out/run_config.json once every start-up check has passed (rank 0 only)."""
    from avgen._atomic import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "run_config.json") as tmp:
        tmp.write_text(json.dumps(run_config(cfg), indent=1, sort_keys=True, default=str) + "\n")


def user_message(e: BaseException) -> str | None:
    """The one-line message for a user error, or None when `e` is not one (a bug)."""
    if isinstance(e, InstantiationException) and e.__cause__ is not None:  # raised inside a config's _target_
        return user_message(e.__cause__)
    if isinstance(e, MissingMandatoryValue):
        return f"{e.full_key} is required: add {e.full_key}=... to the command line"
    if isinstance(e, UserError):
        return (str(e).strip().splitlines() or [type(e).__name__])[0]
    if isinstance(e, OmegaConfBaseException):
        return f"configuration: {str(e).splitlines()[0]}"
    return None


def friendly_errors(fn):
    """Print `error: <message>` and exit 2 for errors caused by the user's input; real bugs still raise."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            print("interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
            sys.exit(130)
        except Exception as e:
            message = user_message(e)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)

    return wrapper
