"""Ask bake, on the control machine, what a host's bake will build.

`docker buildx bake --print TARGET` runs here, in the local copy of the build
context, with exactly the host's bake variables (and nothing else from this
machine's environment). Why here and not on the build host: sagefleet needs the
answer (the image reference to check, where the requirements go) while it plans,
before the context is on the host, and before any host is contacted (a fresh
build host has no context yet; a wrong variable must stop the run before it
touches anything). The files are the same bytes the host gets (the context
tarball is made from them), and bake evaluates them without an engine
(``--print`` needs the docker CLI and the buildx plugin, not a daemon).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from .bake import BakeDefinition, BakeError, parse_print, print_argv
from .cache import CACHE_ROOT, store

_HCL_VARIABLE = re.compile(r'^\s*variable\s+"([A-Za-z_][A-Za-z0-9_]*)"\s*\{', re.M)
# Environment bake may need to find its plugin and configuration, and nothing else:
# a variable exported in the operator's shell must not change what a host builds.
_PASS_ENV = ("PATH", "HOME", "DOCKER_CONFIG", "XDG_RUNTIME_DIR")
PRINT_TIMEOUT_S = 120


def declared_variables(root: Path, bake_files: Sequence[str]) -> set[str] | None:
    """Variable names the bake files declare; None when a file's format is not one
    sagefleet reads (compose files): then no name check is possible."""
    names: set[str] = set()
    for rel in bake_files:
        path = root / rel
        try:
            text = path.read_text()
        except OSError as exc:
            raise BakeError(f"bake file {rel!r} cannot be read under {root}: {exc}") from None
        if rel.endswith(".hcl"):
            names.update(_HCL_VARIABLE.findall(text))
        elif rel.endswith(".json"):
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as exc:
                raise BakeError(f"bake file {rel!r} is not valid JSON: {exc}") from None
            names.update((doc.get("variable") or {}) if isinstance(doc, dict) else {})
        else:
            return None
    return names


def check_variables(root: Path, bake_files: Sequence[str], variables: Mapping[str, str]) -> None:
    """Every bake_variables name must be declared by a bake file: bake silently
    ignores others, so a misspelt name would build with the file's default."""
    declared = declared_variables(root, bake_files)
    if declared is None:
        return
    unknown = sorted(set(variables) - declared)
    if unknown:
        have = ", ".join(sorted(declared)) or "none"
        raise BakeError(
            f"bake_variables {', '.join(unknown)}: not declared by {', '.join(bake_files)} "
            f"(it declares: {have}); bake would ignore {'them' if len(unknown) > 1 else 'it'}"
        )


def resolve(
    root: Path,
    bake_files: Sequence[str],
    target: str,
    variables: Mapping[str, str],
    docker: str = "docker",
) -> BakeDefinition:
    """bake's resolved definition of target (and the targets it builds) in root."""
    root = Path(root)
    check_variables(root, bake_files, variables)
    digest = hashlib.sha256()
    for rel in bake_files:
        digest.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return _resolve(
        str(root), tuple(bake_files), target, tuple(sorted(variables.items())),
        digest.hexdigest(), docker,
    )  # fmt: skip


# bake --print answers, one file per question (see _resolve); safe to delete.
PRINT_CACHE = CACHE_ROOT / "bake-print"
_PLUGIN_DIRS = (
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)


def _tools(docker: str) -> list[list]:
    """The docker CLI and buildx plugin files that would answer (path, size, mtime):
    an upgraded buildx asks bake again."""
    config = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    paths = [shutil.which(docker) or docker]
    paths += [f"{d}/docker-buildx" for d in (f"{config}/cli-plugins", *_PLUGIN_DIRS)]
    found = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        found.append([path, st.st_size, st.st_mtime_ns])
    return found


@functools.lru_cache(maxsize=64)
def _resolve(
    root: str,
    bake_files: tuple[str, ...],
    target: str,
    variables: tuple[tuple[str, str], ...],
    files_digest: str,  # part of the cache key: an edited bake file is read again
    docker: str,
) -> BakeDefinition:
    """bake's answer, from PRINT_CACHE when the same question (root, files and their
    bytes, target, variables, docker and buildx binaries) was answered before: each
    host with its own variables costs a `bake --print` (two Go processes) once, not
    on every run."""
    key = json.dumps([root, bake_files, target, variables, files_digest, _tools(docker)])
    cached = PRINT_CACHE / f"{hashlib.sha256(key.encode()).hexdigest()}.json"
    try:
        return parse_print(cached.read_text())
    except (OSError, ValueError):
        pass  # not asked before, or unreadable: ask bake
    text = _print(root, bake_files, target, variables, docker)
    definition = parse_print(text)
    store(cached, text)
    return definition


def _print(
    root: str,
    bake_files: tuple[str, ...],
    target: str,
    variables: tuple[tuple[str, str], ...],
    docker: str,
) -> str:
    argv = print_argv(bake_files, target)
    argv[0] = docker
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    env.update(dict(variables))
    try:
        proc = subprocess.run(
            argv, cwd=root, env=env, capture_output=True, text=True, timeout=PRINT_TIMEOUT_S
        )
    except FileNotFoundError:
        raise BakeError(
            f"{docker!r} not found: sagefleet asks `docker buildx bake --print` on the control "
            "machine what each host builds; install the docker CLI and the buildx plugin "
            "here (no engine needed)"
        ) from None
    except subprocess.TimeoutExpired:
        raise BakeError(f"`{' '.join(argv)}` in {root} ran past {PRINT_TIMEOUT_S}s") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise BakeError(f"`{' '.join(argv)}` in {root} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


CACHE_DIR = CACHE_ROOT / "git"


@functools.lru_cache(maxsize=16)
def git_checkout(url: str, ref: str, cache_dir: Path | None = None) -> Path:
    """A local checkout of url at ref, for bake --print (the build host makes its own).

    Kept under ~/.cache/sagefleet/git/<sha256(url)>; fetched once per run and ref."""
    base = Path(cache_dir or CACHE_DIR) / hashlib.sha256(url.encode()).hexdigest()[:24]
    base.mkdir(parents=True, exist_ok=True)

    def git(*args: str) -> None:
        proc = subprocess.run(
            ["git", "-C", str(base), *args], capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0:
            raise BakeError(
                f"git {args[0]} of build_context {url} @ {ref} failed on the control machine: "
                + proc.stderr.strip()[-500:]
            )

    if not (base / ".git").exists():
        git("init", "-q")
    git("fetch", "-q", "--depth", "1", url, ref)
    git("checkout", "-q", "--force", "FETCH_HEAD")
    git("clean", "-q", "-fdx")
    return base
