"""The environment and the package as a user gets them: locks that agree with pyproject, a wheel that runs outside
the checkout, and nothing machine-specific in what we ship."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import lock

ROOT = Path(__file__).resolve().parents[1]


def _check(pyproject: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "tools" / "lock.py"), "--check", "--pyproject", str(pyproject)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)


def test_locks_agree_with_pyproject():
    res = _check(ROOT / "pyproject.toml")
    assert res.returncode == 0, res.stderr
    for name in lock.LOCKS:
        pins, _ = lock.read_pins(ROOT / "locks" / f"{name}.txt")
        assert pins["torch"] == ["2.11.0"] and pins["torchaudio"] == ["2.11.0"]  # the matched pair, exact
        assert "setuptools" in pins  # the build backend is locked too


def test_edited_pyproject_fails_the_check_with_the_refresh_command(tmp_path):
    edited = tmp_path / "pyproject.toml"
    edited.write_text((ROOT / "pyproject.toml").read_text().replace('"einops>=0.8"', '"einops>=0.9"'))
    res = _check(edited)
    assert res.returncode == 1
    assert "dependency tables" in res.stderr and "python tools/lock.py" in res.stderr
    assert "einops==0.8.2 does not meet 'einops>=0.9'" in res.stderr  # the unmet pin is named, not only the hash


def test_check_sees_an_unmet_or_missing_pin_even_when_the_hash_matches(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[build-system]\nrequires = ["setuptools>=77"]\n[project]\nname = "x"\ndependencies = ["torch==2.11.0"]\n'
        '[project.optional-dependencies]\ndev = ["pytest>=8"]\n'
    )
    header = f"{lock.EXTRAS_KEY} dev\n{lock.HASH_KEY} {lock.dependency_hash(pyproject)}\n"
    good = tmp_path / "good.txt"
    good.write_text(header + "setuptools==81.0.0 \\\n    --hash=sha256:00\ntorch==2.11.0 ; sys_platform == 'linux'\n"
                    "pytest==9.2.0\n")  # fmt: skip
    assert lock.check_lock(pyproject, good, ("dev",)) == []
    bad = tmp_path / "bad.txt"
    bad.write_text(header + "setuptools==65.5.0\ntorch==2.11.1\n")
    problems = " | ".join(lock.check_lock(pyproject, bad, ("dev",)))
    assert "setuptools==65.5.0 does not meet" in problems and "torch==2.11.1 does not meet" in problems
    assert "pytest is required" in problems


ABSOLUTE = re.compile(r"""(?:^|[\s"'(`=\[,])(/[A-Za-z0-9_.~-]+/[^\s"'`)\],]*|[A-Za-z]:\\[^\s"']+)""")


def test_no_machine_paths_in_shipped_text_files():
    found = []
    for path in sorted((ROOT / "assets").rglob("*")):
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # weights and pictures
        found += [f"{path.relative_to(ROOT)}: {m.group(1)[:60]}" for m in ABSOLUTE.finditer(text)]
    assert not found, found
    assert ABSOLUTE.search('"latents": "/work/runs/latents"') and not ABSOLUTE.search("5/5 and runs/latents")


def _venv_with_wheel(tmp_path: Path) -> Path:
    """A throwaway venv holding only the avgen wheel; the already installed dependencies are borrowed read-only."""
    wheels, src = tmp_path / "wheels", tmp_path / "src"  # built from a copy: setuptools writes build/ into the tree
    skip = shutil.ignore_patterns(".*", "build", "outputs", "runs", "assets", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, src, ignore=skip)
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels)]
    subprocess.run([*build, str(src)], check=True, capture_output=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "_borrowed_deps.pth").write_text("\n".join(deps) + "\n")  # plain paths: their .pth (editable avgen) unread
    install = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps"]
    subprocess.run([*install, str(next(wheels.glob("avgen-*.whl")))], check=True, capture_output=True)
    return venv


@pytest.mark.slow
def test_wheel_runs_its_console_scripts_outside_the_checkout(tmp_path):
    from tests.core_fixtures import tiny_model_dir

    venv = _venv_with_wheel(tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AVGEN_MODEL", "VIRTUAL_ENV")}
    env |= {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    def run(*args, **extra):
        res = subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=work, env=env | extra,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        return res

    where = run("python", "-c", "import avgen, avgen.cli.common as c; print(avgen.__file__); print(c.CONFIG_DIR)")
    assert where.returncode == 0 and str(ROOT) not in where.stdout and str(venv) in where.stdout, where
    assert run("avgen-generate", "--help").returncode == 0
    missing = run("avgen-generate", "prompt=a red ball")  # no model named, none in ./assets/default
    assert missing.returncode == 2 and "AVGEN_MODEL" in missing.stderr and "Traceback" not in missing.stderr
    train = run("avgen-train", "debug=cpu_tiny", "trainer.steps=2", "trainer.val_every=0", "out_dir=run",
                AVGEN_MODEL=str(ROOT / "assets" / "default"))  # fmt: skip
    assert train.returncode == 0, train.stderr[-2000:]
    assert (work / "run" / "export" / "dit" / "model.safetensors").is_file()
    model = tiny_model_dir(tmp_path / "model")
    gen = run("avgen-generate", "prompt=a red ball bounces", "out=clip.mp4", AVGEN_MODEL=str(model))
    assert gen.returncode == 0, gen.stderr[-2000:]
    assert (work / "clip.mp4").stat().st_size > 1000


def test_default_model_lookup_order(tmp_path, monkeypatch):
    from avgen.paths import default_ae_dir, default_model_dir

    env_model, checkout = tmp_path / "env_model", tmp_path / "checkout"
    for d in (env_model / "dit", env_model / "video_ae", checkout / "assets" / "default" / "dit"):
        d.mkdir(parents=True)
    monkeypatch.chdir(checkout)
    monkeypatch.delenv("AVGEN_MODEL", raising=False)
    assert default_model_dir() == Path("assets/default")  # ./assets/default of a checkout
    assert default_model_dir("mine") == Path("mine")  # explicit wins
    monkeypatch.setenv("AVGEN_MODEL", str(env_model))
    assert default_model_dir() == env_model and default_ae_dir("video_ae") == env_model / "video_ae"
    with pytest.raises(FileNotFoundError, match=r"searched AVGEN_MODEL=.*env_model, \./assets/default"):
        default_ae_dir("audio_ae")  # neither place has audio_ae/: one line naming both


def test_smoke_import_names_the_package_that_fails(tmp_path):
    fake = tmp_path / "encodec"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('libfoo.so: undefined symbol: bar')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "smoke_import.py")], capture_output=True, text=True,
                         env=env, timeout=300)  # fmt: skip
    assert res.returncode == 1
    first = res.stderr.splitlines()[0]
    assert first.startswith("error: encodec ") and "does not import" in first and "undefined symbol: bar" in first


@pytest.mark.parametrize("script", ["evaluate.py", "eval_ae.py", "cache_latents.py", "bench.py"])
def test_tools_scripts_run_as_the_readme_calls_them(script, tmp_path):
    """`python tools/X.py ...` from any folder: a script that imports tools.* must find it without PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(ROOT / "tools" / script), "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-500:]
    assert "usage:" in done.stdout


def test_the_timeline_model_loads_the_default_models_autoencoders_through_its_references():
    from avgen.autoencoders import load, weights_hash

    for part in ("video_ae", "audio_ae"):
        assert [p.name for p in (ROOT / "assets" / "scripts" / part).iterdir()] == ["reference.json"]
        referenced, default = load(ROOT / "assets" / "scripts" / part), load(ROOT / "assets" / "default" / part)
        assert weights_hash(referenced) == weights_hash(default)  # load() also checked it against reference.json
