"""What defines the image: versions, wheels, requirements, the bake project and its variables.

Every field here goes into the image (the inputs hash, the bake variables, the
rendered requirements or the tag). Pure: imports no pyinfra.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from . import agreement
from .check import IMAGE_REF, MISSING, NAME, Checker, unknown_reason
from .wheels import Wheel, check_wheels

_PYTHON_VERSION = re.compile(r"3\.(0|[1-9][0-9]*)")
# (pattern, what a value must be) per key checked against a pattern.
_GIT_REF = (
    re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*"),
    "a git ref matching [A-Za-z0-9][A-Za-z0-9._/-]*",
)
_BAKE_TARGET = (NAME, "a name matching [A-Za-z0-9][A-Za-z0-9._-]*")
_IMAGE_TAG = (IMAGE_REF, "one of the bake target's tags, e.g. 'reg/x:tag'")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FULL_SHA = re.compile(r"[0-9a-f]{40}")
# name @ git+https://host/path@<40 hex>[#fragment]: a VCS requirement pinned to a commit.
_VCS_URL = re.compile(
    r"git\+(?P<scheme>https|http|file)://(?P<rest>[^@#\s]+)(?:@(?P<ref>[^#\s]*))?(?:#\S*)?"
)

IMAGE_KEYS = (
    "python_version",
    "torch_version",
    "cuda_version",
    "torch_index_url",
    "sage_release_base",
    "sage_wheel_python_tag",
    "sage_wheel_platform",
    "sage_wheels",
    "require_sageattn3",
    "local_wheelhouse",
    "extra_requirements",
    "bake_target",
    "bake_files",
    "build_context",
    "bake_variables",
    "requirements_path",
    "image_tag",
)


@dataclass(frozen=True)
class GitContext:
    """Build context taken from a git checkout (``build_context = {"git": ..., "ref": ...}``)."""

    git: str
    ref: str


@dataclass(frozen=True)
class LocalDir:
    """Build context from a local directory (``build_context = {"dir": PATH}``): the
    directory's files become the context root, its bake files are found there.
    A relative PATH is relative to this project."""

    dir: str


@dataclass(frozen=True)
class ImagePins:
    """What the image is built from.

    ``build_context`` is ``None`` (this project's services/ + docker-bake.hcl), a tuple of
    relative local paths, a ``LocalDir`` or a ``GitContext``. What the bake builds (tags,
    contexts, where the requirements go) is bake's answer (``sagefleet.inputs``), not a
    formula here.
    """

    python_version: str
    torch_version: str
    cuda_version: str
    torch_index_url: str
    wheels: tuple[Wheel, ...]
    require_sageattn3: bool
    extra_requirements: tuple[str, ...]
    local_wheelhouse: bool
    bake_target: str
    bake_files: tuple[str, ...]
    build_context: None | tuple[str, ...] | LocalDir | GitContext
    bake_variables: Mapping[str, str]
    requirements_path: str | None = None  # None: extra-requirements.txt in the target's context
    image_tag: str | None = None  # None: the target's first tag

    def wheel(self, name: str) -> Wheel | None:
        """The pinned wheel of that distribution (name compared canonically), or None."""
        wanted = canonicalize_name(name)
        return next((w for w in self.wheels if w.name == wanted), None)

    def template_vars(self) -> dict:
        """Plain data for templates/extra-requirements.txt.j2."""
        return {
            "python_version": self.python_version,
            "torch_version": self.torch_version,
            "cuda_version": self.cuda_version,
            "wheels": [
                {
                    "name": w.name,
                    "version": w.version,
                    "release_tag": w.release_tag,
                    "build_tag": w.build_tag,
                    "python_tag": w.python_tag,
                    "platform": w.platform,
                    "filename": w.filename,
                    "url": w.pip_url,
                    "sha256": w.sha256,
                }
                for w in self.wheels
            ],
            "extra_requirements": list(self.extra_requirements),
        }


def check_image(
    c: Checker,
    data: Mapping[str, object],
    group_layers: Sequence[tuple[str, Mapping[str, object]]] = (),
    bake_platforms: Iterable[str] = (),
) -> ImagePins:
    """The image's keys, in the order of group_data/all.py, and their agreement
    (sagefleet.pins.agreement): build tags and the torch index with torch/CUDA, the
    wheel platform with the bake platforms, group requirements, name collisions."""
    # Checked first because the URL rules depend on it.
    local_wheelhouse = c.boolean("local_wheelhouse", data["local_wheelhouse"])

    python_version = c.string("python_version", data["python_version"])
    minor = _PYTHON_VERSION.fullmatch(python_version)
    if not minor:
        c.fail("python_version", python_version, "must be '3.N', e.g. '3.12'")
    torch_version = c.version("torch_version", data["torch_version"])
    cuda_version = c.version("cuda_version", data["cuda_version"])
    torch_index_url = c.url("torch_index_url", data["torch_index_url"], local_wheelhouse)
    if reason := agreement.index_refusal(torch_index_url, cuda_version):
        c.fail("torch_index_url", torch_index_url, reason)
    wheels = check_wheels(c, data, minor.group(1), local_wheelhouse)
    if wheels and (reason := agreement.platform_refusal(wheels[0].platform, bake_platforms)):
        c.fail("sage_wheel_platform", wheels[0].platform, reason)
    for w in wheels:
        if reason := agreement.build_tag_refusal(w.build_tag, torch_version, cuda_version):
            c.fail(f"sage_wheels.{w.name}.build_tag", w.build_tag, reason)
    require_sageattn3 = c.boolean("require_sageattn3", data["require_sageattn3"])
    if require_sageattn3 and not any(w.name == "sageattn3" for w in wheels):
        c.fail("require_sageattn3", True, "requires a 'sageattn3' entry in sage_wheels")
    if locked := agreement.locked_refusal(data, group_layers):
        c.fail(locked[0], data[locked[0]], locked[1])
    extra_requirements = _requirements(c, data["extra_requirements"], wheels)

    bake_target = c.matching("bake_target", data["bake_target"], *_BAKE_TARGET)
    bake_files = c.string_list("bake_files", data["bake_files"])
    if not bake_files:
        c.fail("bake_files", data["bake_files"], "must name at least one bake file")
    for i, path in enumerate(bake_files):
        c.rel_path(f"bake_files[{i}]", path)
    build_context = _build_context(c, data.get("build_context"), local_wheelhouse)

    bake_variables = _bake_variables(c, data["bake_variables"], torch_version)
    requirements_path = data.get("requirements_path")
    if requirements_path is not None:
        requirements_path = c.rel_path("requirements_path", requirements_path)
    image_tag = data.get("image_tag")
    if image_tag is not None:
        image_tag = c.matching("image_tag", image_tag, *_IMAGE_TAG)
    return ImagePins(
        python_version=python_version,
        torch_version=torch_version,
        cuda_version=cuda_version,
        torch_index_url=torch_index_url,
        wheels=wheels,
        require_sageattn3=require_sageattn3,
        extra_requirements=extra_requirements,
        local_wheelhouse=local_wheelhouse,
        bake_target=bake_target,
        bake_files=bake_files,
        build_context=build_context,
        bake_variables=bake_variables,
        requirements_path=requirements_path,
        image_tag=image_tag,
    )


def _bake_variables(c: Checker, value: object, torch_version: str) -> dict[str, str]:
    """Variables the bake file declares, as data: identifier names, one-line values
    without whitespace, quotes or shell metacharacters (as every other pin)."""
    if not isinstance(value, Mapping):
        c.fail("bake_variables", value, "must be a dict of NAME -> value")
    out = {}
    for name, val in value.items():
        if not isinstance(name, str) or not _VARIABLE.fullmatch(name):
            c.fail(
                "bake_variables",
                name,
                "a variable name must be an identifier ([A-Za-z_][A-Za-z0-9_]*)",
            )
        key = f"bake_variables.{name}"
        text = c.string(key, val)
        c.no_meta(key, text)
        out[name] = text
    if "TORCH_VERSION" in out and out["TORCH_VERSION"] != torch_version:
        c.fail(
            "bake_variables.TORCH_VERSION",
            out["TORCH_VERSION"],
            f"differs from torch_version {torch_version!r} (the gate checks the image's torch against torch_version)",
        )
    return dict(sorted(out.items()))


def _requirements(c: Checker, value: object, wheels: tuple[Wheel, ...]) -> tuple[str, ...]:
    items = c.string_list("extra_requirements", value)
    seen: dict[str, int] = {}
    wheel_names = {w.name for w in wheels}
    result = []
    for i, text in enumerate(items):
        key = f"extra_requirements[{i}]"
        if "\n" in text or "\r" in text:
            c.fail(key, text, "must be one line")
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            reason = str(exc).splitlines()[0]
            c.fail(key, text, f"not a PEP 508 requirement ({reason})")
        if req.marker is not None:
            c.fail(key, text, "environment markers are not supported; the image has one platform")
        if req.url:
            _vcs_requirement(c, key, text, req.url)
        else:
            specs = list(req.specifier)
            if len(specs) != 1 or specs[0].operator != "==" or specs[0].version.endswith(".*"):
                c.fail(
                    key,
                    text,
                    "must be pinned exactly with one == (e.g. 'triton==3.5.0'): a range lets pip "
                    "pick another version on the next bake, so the same pins could build a "
                    "different image (idempotence needs one exact version)",
                )
        name = canonicalize_name(req.name)
        if name in wheel_names:
            c.fail(key, text, f"{name} is pinned in sage_wheels already")
        if name == "torch":
            c.fail(key, text, "torch is pinned by torch_version already")
        if name in seen:
            c.fail(key, text, f"{name} is pinned twice (also extra_requirements[{seen[name]}])")
        seen[name] = i
        result.append(str(req))
    names = [(f"sage_wheels.{w.name}", w.name) for w in wheels] + [("torch_version", "torch")]
    written = {f"extra_requirements[{i}]": text for i, text in enumerate(items)}
    names += [(f"extra_requirements[{i}]", Requirement(r).name) for i, r in enumerate(result)]
    if clash := agreement.name_collision(names):
        where, name, other_where, other = clash
        c.fail(
            where,
            written.get(where, name),
            f"{name!r} differs from {other!r} ({other_where}) only by separators: "
            "the same package misspelt, or another one",
        )
    return tuple(result)


def _vcs_requirement(c: Checker, key: str, text: str, url: str) -> None:
    """``name @ git+https://host/repo@<40 hex>``: the only URL requirement accepted."""
    m = _VCS_URL.fullmatch(url)
    if not m or m["scheme"] != "https":
        c.fail(
            key,
            text,
            "a URL requirement must be 'name @ git+https://host/repo@<40-hex commit>' "
            "(other URLs can serve other bytes later; pin a version with == instead)",
        )
    if not m["ref"] or not _FULL_SHA.fullmatch(m["ref"]):
        what = f"ref {m['ref']!r}" if m["ref"] else "no ref"
        c.fail(
            key,
            text,
            f"{what} is not a full 40-hex commit: a branch, tag or short ref can move, so the "
            "same pins could build a different image (idempotence needs the commit SHA)",
        )


def _build_context(
    c: Checker, value: object, local_wheelhouse: bool
) -> None | tuple[str, ...] | LocalDir | GitContext:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        paths = c.string_list("build_context", value)
        if not paths:
            c.fail("build_context", value, "must name at least one path (or be None)")
        return tuple(c.rel_path(f"build_context[{i}]", p) for i, p in enumerate(paths))
    if not isinstance(value, Mapping):
        c.fail(
            "build_context",
            value,
            "must be None, a list of relative paths, {'dir': PATH} or {'git': URL, 'ref': REF}",
        )
    if set(value) == {"dir"}:
        path = c.string("build_context.dir", value["dir"])
        if "\n" in path or "\0" in path or not path:
            c.fail("build_context.dir", path, "must be a directory path on one line")
        return LocalDir(path)
    for sub, sub_value in value.items():
        if sub not in ("git", "ref"):
            c.fail(
                f"build_context.{sub}",
                sub_value,
                unknown_reason(str(sub), ("git", "ref", "dir"), "expected dir, or git and ref"),
            )
    for sub in ("git", "ref"):
        if sub not in value:
            c.fail(f"build_context.{sub}", MISSING, "required key is missing")
    url = c.url("build_context.git", value["git"], local_wheelhouse)
    ref = c.matching("build_context.ref", value["ref"], *_GIT_REF)
    if ".." in ref or ref.endswith(("/", ".", ".lock")) or "//" in ref:
        c.fail("build_context.ref", ref, "not a valid git ref name")
    return GitContext(url, ref)
