"""The build context on the control machine: which files, their tarball, the rendered
requirements, and the inputs hash that decides whether a bake is needed.

Everything here is computed locally and deterministically, so a no-change run
needs no remote reads beyond one marker and one image label.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The pyinfra CLI of the interpreter running sagefleet (its virtualenv's).
PYINFRA_CLI = str(Path(sys.executable).with_name("pyinfra"))
TEMPLATE = PROJECT_ROOT / "templates" / "extra-requirements.txt.j2"
REQUIREMENTS_PATH = "services/comfy/complete/extra-requirements.txt"
DEFAULT_CONTEXT = ("services", "docker-bake.hcl")
# Jinja settings for the requirements template (also handed to files.template).
JINJA_KWARGS = {"trim_blocks": True, "lstrip_blocks": True}
_SKIP_PARTS = {"__pycache__", ".git", ".pytest_cache"}


@dataclass(frozen=True)
class BuildContext:
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


def build_context(paths: Iterable[str], root: Path = PROJECT_ROOT) -> BuildContext:
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
    return BuildContext(tar=data, digest=hashlib.sha256(data).hexdigest(), files=tuple(names))


def render_requirements(template_context: Mapping[str, object], template: Path = TEMPLATE) -> str:
    """Render the requirements exactly as files.template will on the host."""
    from pyinfra.api.util import get_template

    return get_template(str(template), dict(JINJA_KWARGS)).render(dict(template_context))


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
