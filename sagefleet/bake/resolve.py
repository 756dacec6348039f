"""The bake project as bake itself reports it: `docker buildx bake --print` parsed
into typed targets, and the answers sagefleet needs from them (which image to
check, where the requirements go, which targets one bake builds).

Pure: imports no pyinfra and runs nothing; `print_argv` only formats the command.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# Default file name of the rendered requirements inside a target's context.
REQUIREMENTS_FILE = "extra-requirements.txt"
# Docker's reference grammar, loosely: lowercase repository path, optional tag.
_TAG_REF = re.compile(
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
)
_TARGET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


class BakeError(ValueError):
    """bake's answer cannot be used as it is (the message says what and why)."""


@dataclass(frozen=True)
class Target:
    """One resolved bake target (after variables, functions and ``inherits``)."""

    name: str
    context: str = "."
    dockerfile: str = "Dockerfile"
    contexts: Mapping[str, str] = field(default_factory=dict)
    args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    target: str | None = None  # the Dockerfile stage, when the bake file names one
    secrets: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()

    @property
    def target_dependencies(self) -> tuple[str, ...]:
        """Targets this one uses as named contexts (``contexts = {x = "target:y"}``)."""
        return tuple(
            sorted(v.split(":", 1)[1] for v in self.contexts.values() if v.startswith("target:"))
        )

    @property
    def context_is_local(self) -> bool:
        """False for a remote context (git URL, https tarball, docker-image://...)."""
        return "://" not in self.context and not self.context.startswith("git@")


@dataclass(frozen=True)
class BakeDefinition:
    """What ``docker buildx bake --print`` answered: targets and groups."""

    targets: Mapping[str, Target]
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def target(self, name: str) -> Target:
        try:
            return self.targets[name]
        except KeyError:
            known = ", ".join(sorted(self.targets)) or "none"
            raise BakeError(
                f"bake target {name!r} is not in bake's answer (targets: {known})"
            ) from None

    def chain(self, name: str) -> tuple[str, ...]:
        """name and every target it builds through ``target:`` contexts, dependencies
        first (the targets one ``bake name`` builds and tags)."""
        order: list[str] = []
        visiting: set[str] = set()

        def visit(n: str) -> None:
            if n in order:
                return
            if n in visiting:
                raise BakeError(f"bake target {n!r} depends on itself through named contexts")
            visiting.add(n)
            for dep in self.target(n).target_dependencies:
                visit(dep)
            visiting.discard(n)
            order.append(n)

        visit(name)
        return tuple(order)

    def image_ref(self, name: str, image_tag: str | None = None) -> str:
        """The image sagefleet checks for target name: its first tag, or ``image_tag``
        when given (it must be one of the target's tags)."""
        tags = self.target(name).tags
        if not tags:
            raise BakeError(
                f"bake target {name!r} has no tags: sagefleet checks the image by its tag; "
                "add tags to the target (or set them through bake_variables)"
            )
        if image_tag is None:
            return tags[0]
        if image_tag not in tags:
            raise BakeError(
                f"image_tag {image_tag!r} is not a tag of bake target {name!r} "
                f"(its tags: {', '.join(tags)})"
            )
        return image_tag

    def requirements_path(self, name: str, requirements_path: str | None = None) -> str:
        """Where the rendered requirements go, relative to the build context root:
        ``requirements_path`` when given, else ``extra-requirements.txt`` inside the
        target's own context as bake reports it."""
        if requirements_path is not None:
            return _inside_root("requirements_path", requirements_path)
        target = self.target(name)
        if not target.context_is_local:
            raise BakeError(
                f"bake target {name!r} has a remote context {target.context!r}: "
                "the rendered requirements cannot go into it; set requirements_path"
            )
        return _inside_root(
            f"context of bake target {name!r}",
            posixpath.join(target.context, REQUIREMENTS_FILE),
        )


def _inside_root(what: str, path: str) -> str:
    """A normalised relative path that stays inside the build context root."""
    if not isinstance(path, str) or not path or "\n" in path or "\0" in path:
        raise BakeError(f"{what}: {path!r} is not a relative path")
    if posixpath.isabs(path):
        raise BakeError(f"{what}: {path!r} must be relative to the build context, not absolute")
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../") or norm == ".":
        raise BakeError(f"{what}: {path!r} leaves the build context")
    return norm


def _strings(where: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BakeError(f"{where}: expected a list of strings, got {value!r}")
    return tuple(value)


def _mapping(where: str, value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BakeError(f"{where}: expected an object, got {value!r}")
    # bake prints a null value for an arg or label declared without one.
    out = {}
    for k, v in value.items():
        if v is not None and not isinstance(v, str):
            raise BakeError(f"{where}.{k}: expected a string, got {v!r}")
        out[str(k)] = "" if v is None else v
    return out


def parse_target(name: str, doc: Mapping[str, object]) -> Target:
    """One entry of ``--print``'s ``target`` object."""
    if not isinstance(doc, Mapping):
        raise BakeError(f"target {name!r}: expected an object, got {doc!r}")
    where = f"target {name!r}"
    context = doc.get("context", ".")
    dockerfile = doc.get("dockerfile", "Dockerfile")
    stage = doc.get("target")
    for key, value in (("context", context), ("dockerfile", dockerfile)):
        if not isinstance(value, str):
            raise BakeError(f"{where}.{key}: expected a string, got {value!r}")
    if stage is not None and not isinstance(stage, str):
        raise BakeError(f"{where}.target: expected a string, got {stage!r}")
    tags = _strings(f"{where}.tags", doc.get("tags"))
    for tag in tags:
        if not _TAG_REF.fullmatch(tag):
            raise BakeError(f"{where}.tags: {tag!r} is not an image reference")
    return Target(
        name=name,
        context=context,
        dockerfile=dockerfile,
        contexts=_mapping(f"{where}.contexts", doc.get("contexts")),
        args=_mapping(f"{where}.args", doc.get("args")),
        labels=_mapping(f"{where}.labels", doc.get("labels")),
        tags=tags,
        platforms=_strings(f"{where}.platforms", doc.get("platforms")),
        cache_from=_strings(f"{where}.cache-from", doc.get("cache-from")),
        cache_to=_strings(f"{where}.cache-to", doc.get("cache-to")),
        target=stage,
        secrets=_strings(f"{where}.secret", doc.get("secret")),
        outputs=_strings(f"{where}.output", doc.get("output")),
    )


def parse_print(text: str) -> BakeDefinition:
    """Parse the JSON ``docker buildx bake --print`` writes to stdout."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BakeError(f"bake --print did not answer JSON ({exc}): {text[:200]!r}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("target"), dict):
        raise BakeError(f"bake --print answered no 'target' object: {text[:200]!r}")
    targets = {name: parse_target(name, t) for name, t in doc["target"].items()}
    groups = {}
    for name, group in (doc.get("group") or {}).items():
        if not isinstance(group, dict):
            raise BakeError(f"group {name!r}: expected an object, got {group!r}")
        groups[name] = _strings(f"group {name!r}.targets", group.get("targets"))
    return BakeDefinition(targets=targets, groups=groups)


def print_argv(bake_files: Sequence[str], target: str, overrides: Sequence[str] = ()) -> list[str]:
    """``docker buildx bake -f F... [--set ...] --print TARGET`` as an argv (no shell)."""
    if not _TARGET_NAME.fullmatch(target or ""):
        raise BakeError(f"invalid bake target {target!r}")
    argv = ["docker", "buildx", "bake"]
    for f in bake_files:
        argv += ["-f", f]
    return [*argv, *overrides, "--print", target]
