"""A build's inputs, computed on the control machine: the build context (which files,
their tarball), the rendered requirements, and the inputs hash that decides whether a
bake is needed.

Everything here is computed locally and deterministically, so a no-change run
needs no remote reads beyond one fact.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .bake import BakeDefinition, BakeError
from .bakeproject import git_checkout, resolve
from .commands import content_mtime
from .manifest import format_manifest
from .pins import GitContext, LocalDir, Pins
from .pins.agreement import platform_refusal
from .project import PROJECT_ROOT

TEMPLATE = PROJECT_ROOT / "templates" / "extra-requirements.txt.j2"
# Where our own layout's requirements go (bake's answer for complete-cuda; tests use it).
REQUIREMENTS_PATH = "services/comfy/complete/extra-requirements.txt"
DEFAULT_CONTEXT = ("services", "docker-bake.hcl")
# Jinja settings for the requirements template (also handed to files.template).
JINJA_KWARGS = {"trim_blocks": True, "lstrip_blocks": True}
_SKIP_PARTS = {"__pycache__", ".git", ".pytest_cache"}


@dataclass(frozen=True)
class ContextTarball:
    """A tarball of local files, its digest, and its manifest (sha256 + mode per file)."""

    tar: bytes
    digest: str
    files: tuple[str, ...]
    manifest: str = ""


def context_files(
    paths: Iterable[str], root: Path = PROJECT_ROOT, exclude: str = REQUIREMENTS_PATH
) -> list[tuple[str, Path]]:
    """Relative names and paths of every file under paths, sorted; the rendered
    requirements file (exclude) is left out (the template owns it)."""
    out: dict[str, Path] = {}
    for rel in paths:
        base = root / rel
        if not base.exists():
            raise FileNotFoundError(f"build context path {rel!r} does not exist under {root}")
        candidates = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in candidates:
            name = path.relative_to(root).as_posix()
            parts = set(Path(name).parts)
            if _SKIP_PARTS & parts or name.endswith(".pyc") or name == exclude:
                continue
            out[name] = path
    return sorted(out.items())


def context_tarball(
    paths: Iterable[str], root: Path = PROJECT_ROOT, exclude: str = REQUIREMENTS_PATH
) -> ContextTarball:
    """A reproducible tarball (fixed owner, mode and mtime) of the context files."""
    buf = io.BytesIO()
    names = []
    entries = []
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in context_files(paths, root, exclude):
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            # From the content, not 0: BuildKit re-sends a context file only when its
            # size or mtime changed, so a constant would hide a same-size edit.
            info.mtime = content_mtime(data)
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
            names.append(name)
            entries.append((name, hashlib.sha256(data).hexdigest(), f"{info.mode:o}"))
    data = buf.getvalue()
    return ContextTarball(
        tar=data,
        digest=hashlib.sha256(data).hexdigest(),
        files=tuple(names),
        manifest=format_manifest(entries),
    )


def render_requirements(template_vars: Mapping[str, object], template: Path = TEMPLATE) -> str:
    """Render the requirements exactly as files.template will on the host."""
    from pyinfra.api.util import get_template

    return get_template(str(template), dict(JINJA_KWARGS)).render(dict(template_vars))


def inputs_hash(
    context_digest: str,
    requirements: str,
    bake_files: Iterable[str],
    target: str,
    variables: Mapping[str, str],
    requirements_path: str = REQUIREMENTS_PATH,
) -> str:
    """The digest stamped on the image: changes exactly when a build input changes."""
    doc = {
        "context": context_digest,
        "requirements": hashlib.sha256(requirements.encode()).hexdigest(),
        "bake_files": list(bake_files),
        "target": target,
        "variables": dict(sorted(variables.items())),
    }
    if requirements_path != REQUIREMENTS_PATH:
        # Only where it differs: our own layout's hashes stay what they were.
        doc["requirements_path"] = requirements_path
    doc = json.dumps(doc, sort_keys=True)
    return "sha256:" + hashlib.sha256(doc.encode()).hexdigest()


@functools.lru_cache(maxsize=8)
def _tarball(paths: tuple[str, ...], root: Path, exclude: str) -> ContextTarball:
    """The context tarball, made once per pyinfra run rather than once per host."""
    return context_tarball(paths, root, exclude)


@dataclass(frozen=True)
class BuildInputs:
    """Everything a bake of one host depends on, computed locally once."""

    git: GitContext | None
    tarball: ContextTarball | None  # None for a git context
    context_digest: str
    requirements: str
    variables: dict[str, str]
    inputs: str
    ca_path: str | None  # where the CA bundle for pip goes on the host
    bake: BakeDefinition  # bake's own answer (--print) for this host's variables
    image_ref: str  # the target's first tag, or image_tag
    requirements_path: str  # relative to the build context
    targets: tuple[str, ...]  # what one bake of the target builds, dependencies first


def context_root(pins: Pins, root: Path = PROJECT_ROOT) -> tuple[Path, tuple[str, ...]]:
    """(local directory that is the context root, paths under it that make the context)."""
    ctx = pins.image.build_context
    if isinstance(ctx, GitContext):
        return git_checkout(ctx.git, ctx.ref), (".",)
    if isinstance(ctx, LocalDir):
        path = Path(ctx.dir)
        path = path if path.is_absolute() else root / path
        if not path.is_dir():
            raise FileNotFoundError(f"build_context.dir {ctx.dir!r}: no such directory ({path})")
        return path, (".",)
    return root, tuple(ctx or DEFAULT_CONTEXT)


def check_platforms(pins: Pins, bake: BakeDefinition) -> None:
    """The wheels must install on every platform bake builds the target chain for
    (pins and bake file agree before anything reaches a host)."""
    wheels = pins.image.wheels
    if not wheels:
        return
    for name in bake.chain(pins.image.bake_target):
        platforms = bake.target(name).platforms
        if reason := platform_refusal(wheels[0].platform, platforms):
            raise BakeError(
                f"sage_wheel_platform = {wheels[0].platform!r}: {reason} "
                f"(bake target {name!r} builds for {', '.join(platforms)})"
            )


def build_inputs(pins: Pins, root: Path = PROJECT_ROOT) -> BuildInputs:
    """bake's answer for the host's variables, the rendered requirements, the context
    digest and the inputs hash."""
    image = pins.image
    requirements = render_requirements(image.template_vars())
    git = image.build_context if isinstance(image.build_context, GitContext) else None
    ctx_root, paths = context_root(pins, root)
    variables = dict(image.bake_variables)
    bake = resolve(ctx_root, image.bake_files, image.bake_target, variables)
    check_platforms(pins, bake)
    image_ref = bake.image_ref(image.bake_target, image.image_tag)
    req_path = bake.requirements_path(image.bake_target, image.requirements_path)
    tarball = None if git else _tarball(paths, ctx_root, req_path)
    context_digest = f"git:{git.git}@{git.ref}" if git else tarball.digest
    return BuildInputs(
        git=git,
        tarball=tarball,
        context_digest=context_digest,
        requirements=requirements,
        variables=variables,
        inputs=inputs_hash(
            context_digest,
            requirements,
            image.bake_files,
            image.bake_target,
            variables,
            req_path,
        ),
        ca_path=f"{pins.build.build_dir}/secrets/pip-ca.pem" if pins.build.pip_ca_bundle else None,
        bake=bake,
        image_ref=image_ref,
        requirements_path=req_path,
        targets=bake.chain(image.bake_target),
    )
