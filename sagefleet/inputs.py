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

from .pins import GitContext, Pins
from .project import PROJECT_ROOT

TEMPLATE = PROJECT_ROOT / "templates" / "extra-requirements.txt.j2"
REQUIREMENTS_PATH = "services/comfy/complete/extra-requirements.txt"
DEFAULT_CONTEXT = ("services", "docker-bake.hcl")
# Jinja settings for the requirements template (also handed to files.template).
JINJA_KWARGS = {"trim_blocks": True, "lstrip_blocks": True}
_SKIP_PARTS = {"__pycache__", ".git", ".pytest_cache"}


@dataclass(frozen=True)
class ContextTarball:
    """A tarball of local files and its digest."""

    tar: bytes
    digest: str
    files: tuple[str, ...]


def context_files(paths: Iterable[str], root: Path = PROJECT_ROOT) -> list[tuple[str, Path]]:
    """Relative names and paths of every file under paths, sorted; the rendered
    requirements file is left out (the template owns it)."""
    out: dict[str, Path] = {}
    for rel in paths:
        base = root / rel
        if not base.exists():
            raise FileNotFoundError(f"build context path {rel!r} does not exist under {root}")
        candidates = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in candidates:
            name = path.relative_to(root).as_posix()
            if _SKIP_PARTS & set(path.parts) or name.endswith(".pyc") or name == REQUIREMENTS_PATH:
                continue
            out[name] = path
    return sorted(out.items())


def context_tarball(paths: Iterable[str], root: Path = PROJECT_ROOT) -> ContextTarball:
    """A reproducible tarball (fixed owner, mode and mtime) of the context files."""
    buf = io.BytesIO()
    names = []
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in context_files(paths, root):
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            info.mtime = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
            names.append(name)
    data = buf.getvalue()
    return ContextTarball(tar=data, digest=hashlib.sha256(data).hexdigest(), files=tuple(names))


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
) -> str:
    """The digest stamped on the image: changes exactly when a build input changes."""
    doc = json.dumps(
        {
            "context": context_digest,
            "requirements": hashlib.sha256(requirements.encode()).hexdigest(),
            "bake_files": list(bake_files),
            "target": target,
            "variables": dict(sorted(variables.items())),
        },
        sort_keys=True,
    )
    return "sha256:" + hashlib.sha256(doc.encode()).hexdigest()


@functools.lru_cache(maxsize=8)
def _tarball(paths: tuple[str, ...], root: Path) -> ContextTarball:
    """The context tarball, made once per pyinfra run rather than once per host."""
    return context_tarball(paths, root)


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


def build_inputs(pins: Pins, root: Path = PROJECT_ROOT) -> BuildInputs:
    """The rendered requirements, context digest, bake variables and inputs hash."""
    image = pins.image
    requirements = render_requirements(image.template_vars())
    git = image.build_context if isinstance(image.build_context, GitContext) else None
    tarball = None if git else _tarball(tuple(image.build_context or DEFAULT_CONTEXT), root)
    context_digest = f"git:{git.git}@{git.ref}" if git else tarball.digest
    variables = image.bake_variables()
    return BuildInputs(
        git=git,
        tarball=tarball,
        context_digest=context_digest,
        requirements=requirements,
        variables=variables,
        inputs=inputs_hash(
            context_digest, requirements, image.bake_files, image.bake_target, variables
        ),
        ca_path=f"{pins.build.build_dir}/secrets/pip-ca.pem" if pins.build.pip_ca_bundle else None,
    )
