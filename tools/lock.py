"""The locked environment: write the lock files from pyproject.toml, or check offline that they still agree.

    python tools/lock.py           # refresh every lock with uv, keeping the pins that still fit (needs the network)
    python tools/lock.py --upgrade # resolve afresh
    python tools/lock.py --check   # offline: each pyproject requirement is met by a pin, and the hash matches

One lock per extra set that the README's two commands install (LOCKS below). Each lock starts with a header that
records the extras and a hash of pyproject's dependency tables, so the check never needs to re-resolve.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# lock name -> extras installed with it; the first lock constrains the others so they pin the same versions.
LOCKS: dict[str, tuple[str, ...]] = {"dev-app": ("dev", "app", "vae"), "base": ()}
HASH_KEY = "# pyproject-dependencies-sha256:"
EXTRAS_KEY = "# extras:"
REFRESH = "python tools/lock.py  (then rerun tools/test.sh)"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?\s*$")


def _load_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads(path.read_text())


def dependency_tables(pyproject: Path) -> dict:
    """The parts of pyproject.toml that a lock is resolved from."""
    data = _load_toml(pyproject)
    project = data.get("project", {})
    return {
        "build-system.requires": data.get("build-system", {}).get("requires", []),
        "project.dependencies": project.get("dependencies", []),
        "project.optional-dependencies": project.get("optional-dependencies", {}),
        "project.requires-python": project.get("requires-python", ""),
    }


def dependency_hash(pyproject: Path) -> str:
    canonical = json.dumps(dependency_tables(pyproject), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def requirements_for(pyproject: Path, extras: tuple[str, ...]) -> list[str]:
    """Every requirement a lock with these extras must meet, the build backend included."""
    tables = dependency_tables(pyproject)
    reqs = list(tables["build-system.requires"]) + list(tables["project.dependencies"])
    for extra in extras:
        reqs += tables["project.optional-dependencies"].get(extra, [])
    return reqs


def read_pins(lock: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(canonical name -> pinned versions, header fields) of a lock file."""
    pins: dict[str, list[str]] = {}
    header: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        for key in (HASH_KEY, EXTRAS_KEY):
            if line.startswith(key):
                header[key] = line[len(key) :].strip()
        m = _PIN.match(line)
        if m:
            pins.setdefault(_canonical(m.group(1)), []).append(m.group(2))
    return pins, header


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_lock(pyproject: Path, lock: Path, extras: tuple[str, ...]) -> list[str]:
    """Problems that make `lock` disagree with `pyproject` (empty when they agree). Offline, no resolving."""
    from packaging.requirements import Requirement

    if not lock.is_file():
        return [f"{lock.name}: missing"]
    pins, header = read_pins(lock)
    problems = []
    if header.get(HASH_KEY) != dependency_hash(pyproject):
        problems.append(f"{lock.name}: the dependency tables of {pyproject.name} changed since the lock was written")
    if header.get(EXTRAS_KEY) != ",".join(extras):
        problems.append(f"{lock.name}: records extras {header.get(EXTRAS_KEY)!r}, expected {','.join(extras)!r}")
    for text in requirements_for(pyproject, extras):
        req = Requirement(text)
        versions = pins.get(_canonical(req.name), [])
        if not versions:
            problems.append(f"{lock.name}: {req.name} is required by {pyproject.name} but not pinned")
        for version in versions:
            if not req.specifier.contains(version, prereleases=True):
                problems.append(f"{lock.name}: {req.name}=={version} does not meet {text!r}")
    return problems


def write_locks(pyproject: Path, lock_dir: Path, upgrade: bool = False) -> None:
    """Resolve each lock with uv; the current pins are kept where they still fit (uv reads an existing output file
    as its preferences), so adding a dependency moves nothing else, unless upgrade."""
    uv = shutil.which("uv")
    if uv is None:
        sys.exit("error: `uv` not found; install it (pip install uv) to refresh the locks")
    digest = dependency_hash(pyproject)
    first: Path | None = None
    with tempfile.TemporaryDirectory() as tmp:
        build_in = Path(tmp) / "build-system.in"
        build_in.write_text("\n".join(dependency_tables(pyproject)["build-system.requires"]) + "\n")
        for name, extras in LOCKS.items():
            out = lock_dir / f"{name}.txt"
            if out.is_file() and not upgrade:
                shutil.copy(out, Path(tmp) / out.name)
            cmd = [uv, "pip", "compile", str(pyproject), str(build_in), "--universal", "--generate-hashes"]
            cmd += ["--quiet", "--no-header", "--python-version", "3.10", "-o", str(Path(tmp) / out.name)]
            cmd += [arg for extra in extras for arg in ("--extra", extra)]
            cmd += ["-c", str(first)] if first is not None else []
            subprocess.run(cmd, check=True, cwd=pyproject.parent)
            body = (Path(tmp) / out.name).read_text().replace(tmp + "/", "")
            head = "# Written by python tools/lock.py (uv pip compile --universal --generate-hashes). Do not edit.\n"
            out.write_text(f"{head}{EXTRAS_KEY} {','.join(extras)}\n{HASH_KEY} {digest}\n{body}")
            first = first or out
            print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="check offline that the locks agree with pyproject.toml")
    ap.add_argument("--upgrade", action="store_true", help="resolve afresh instead of keeping the current pins")
    ap.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    ap.add_argument("--locks", type=Path, default=ROOT / "locks")
    args = ap.parse_args(argv)
    if not args.check:
        write_locks(args.pyproject, args.locks, args.upgrade)
        return 0
    problems = []
    for name, extras in LOCKS.items():
        problems += check_lock(args.pyproject, args.locks / f"{name}.txt", extras)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        print(f"error: the locks are out of date; refresh them with: {REFRESH}", file=sys.stderr)
        return 1
    print(f"[lock] {len(LOCKS)} locks agree with {args.pyproject.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
