"""What defines the image: versions, wheels, requirements, base image, bake target, name.

Every field here goes into the image (the inputs hash, the bake variables, the
rendered requirements or the tag). Pure: imports no pyinfra.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .check import IMAGE_REF, MISSING, NAME, Checker, unknown_reason
from .wheels import Wheel, check_wheels

_PYTHON_VERSION = re.compile(r"3\.(0|[1-9][0-9]*)")
# (pattern, what a value must be) per key checked against a pattern.
_GIT_REF = (
    re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*"),
    "a git ref matching [A-Za-z0-9][A-Za-z0-9._/-]*",
)
_BAKE_TARGET = (NAME, "a name matching [A-Za-z0-9][A-Za-z0-9._-]*")
_IMAGE_LABEL = (NAME, "a tag matching [A-Za-z0-9][A-Za-z0-9._-]*")
_BASE_IMAGE = (
    IMAGE_REF,
    "a Docker image reference like 'nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04'",
)
_REGISTRY = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*")

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
    "registry_url",
    "image_label",
    "base_image",
)


@dataclass(frozen=True)
class GitContext:
    """Build context taken from a git checkout (``build_context = {"git": ..., "ref": ...}``)."""

    git: str
    ref: str


@dataclass(frozen=True)
class ImagePins:
    """What the image is built from.

    ``build_context`` is ``None`` (this project's services/ + docker-bake.hcl), a tuple of
    relative local paths, or a ``GitContext``.
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
    build_context: None | tuple[str, ...] | GitContext
    registry_url: str
    image_label: str
    base_image: str

    @property
    def ref(self) -> str:
        """The image's reference: ``{registry_url}/comfyui-docker/{bake_target}:{label}``."""
        return f"{self.registry_url}/comfyui-docker/{self.bake_target}:{self.image_label}"

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
                    "url": w.url,
                }
                for w in self.wheels
            ],
            "extra_requirements": list(self.extra_requirements),
        }

    def bake_variables(self) -> dict[str, str]:
        """Bake variables that define the image (all go into the inputs hash)."""
        return {
            "REGISTRY_URL": self.registry_url,
            "IMAGE_LABEL": self.image_label,
            "BASE_IMAGE": self.base_image,
            "TORCH_VERSION": self.torch_version,
            "TORCH_INDEX_URL": self.torch_index_url,
        }


def check_image(c: Checker, data: Mapping[str, object]) -> ImagePins:
    """The image's keys, in the order of group_data/all.py."""
    # Checked first because the URL rules depend on it.
    local_wheelhouse = c.boolean("local_wheelhouse", data["local_wheelhouse"])

    python_version = c.string("python_version", data["python_version"])
    minor = _PYTHON_VERSION.fullmatch(python_version)
    if not minor:
        c.fail("python_version", python_version, "must be '3.N', e.g. '3.12'")
    torch_version = c.version("torch_version", data["torch_version"])
    cuda_version = c.version("cuda_version", data["cuda_version"])
    torch_index_url = c.url("torch_index_url", data["torch_index_url"], local_wheelhouse)
    wheels = check_wheels(c, data, minor.group(1), local_wheelhouse)
    require_sageattn3 = c.boolean("require_sageattn3", data["require_sageattn3"])
    if require_sageattn3 and not any(w.name == "sageattn3" for w in wheels):
        c.fail("require_sageattn3", True, "requires a 'sageattn3' entry in sage_wheels")
    extra_requirements = _requirements(c, data["extra_requirements"], wheels)

    bake_target = c.matching("bake_target", data["bake_target"], *_BAKE_TARGET)
    if bake_target != bake_target.lower():
        # It becomes a path component of the image reference, which Docker wants lowercase.
        c.fail("bake_target", bake_target, "must be lowercase (it names the image repository)")
    bake_files = c.string_list("bake_files", data["bake_files"])
    if not bake_files:
        c.fail("bake_files", data["bake_files"], "must name at least one bake file")
    for i, path in enumerate(bake_files):
        c.rel_path(f"bake_files[{i}]", path)
    build_context = _build_context(c, data.get("build_context"), local_wheelhouse)

    registry_url = c.string("registry_url", data["registry_url"])
    c.no_meta("registry_url", registry_url)
    if "://" in registry_url:
        c.fail("registry_url", registry_url, "must not have a scheme (e.g. 'ghcr.io/pixeloven')")
    if registry_url != registry_url.lower():
        c.fail("registry_url", registry_url, "must be lowercase")
    if not _REGISTRY.fullmatch(registry_url):
        c.fail("registry_url", registry_url, "not a registry/namespace like 'ghcr.io/pixeloven'")
    image_label = c.matching("image_label", data["image_label"], *_IMAGE_LABEL)
    if len(image_label) > 128:
        c.fail("image_label", image_label, "a Docker tag has at most 128 characters")
    base_image = c.matching("base_image", data["base_image"], *_BASE_IMAGE)
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
        registry_url=registry_url,
        image_label=image_label,
        base_image=base_image,
    )


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
        if req.url:
            c.fail(key, text, "URL requirements are refused; pin a version with ==")
        if req.marker is not None:
            c.fail(key, text, "environment markers are not supported; the image has one platform")
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or specs[0].version.endswith(".*"):
            c.fail(key, text, "must be pinned exactly with one == (e.g. 'triton==3.5.0')")
        name = canonicalize_name(req.name)
        if name in wheel_names:
            c.fail(key, text, f"{name} is pinned in sage_wheels already")
        if name == "torch":
            c.fail(key, text, "torch is pinned by torch_version already")
        if name in seen:
            c.fail(key, text, f"{name} is pinned twice (also extra_requirements[{seen[name]}])")
        seen[name] = i
        result.append(str(req))
    return tuple(result)


def _build_context(
    c: Checker, value: object, local_wheelhouse: bool
) -> None | tuple[str, ...] | GitContext:
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
            "must be None, a list of relative paths, or {'git': URL, 'ref': REF}",
        )
    for sub, sub_value in value.items():
        if sub not in ("git", "ref"):
            c.fail(
                f"build_context.{sub}",
                sub_value,
                unknown_reason(str(sub), ("git", "ref"), "expected git, ref"),
            )
    for sub in ("git", "ref"):
        if sub not in value:
            c.fail(f"build_context.{sub}", MISSING, "required key is missing")
    url = c.url("build_context.git", value["git"], local_wheelhouse)
    ref = c.matching("build_context.ref", value["ref"], *_GIT_REF)
    if ".." in ref or ref.endswith(("/", ".", ".lock")) or "//" in ref:
        c.fail("build_context.ref", ref, "not a valid git ref name")
    return GitContext(url, ref)
