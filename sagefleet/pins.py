"""Validation of group_data pins, before any host is contacted.

pyinfra merges group_data into one flat dict per host (``--data`` > host > group > all).
``validate`` checks that dict and returns ``Pins``: typed, frozen, with wheel file names and
URLs derived. Every value that later reaches a shell command or a URL is either refused here
or is a plain identifier/path from a narrow charset, so no quoting mistake downstream can turn
a pin into a command.

This module imports no pyinfra: it runs (and is tested) alone.
"""

from __future__ import annotations

import difflib
import math
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidName,
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

__all__ = [
    "KNOWN_KEYS",
    "MISSING",
    "GitContext",
    "PinError",
    "Pins",
    "Wheel",
    "validate",
]


class _Missing:
    """The value of a required key that no source supplied."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


class PinError(ValueError):
    """A pin that cannot be used; says which file supplied it and why it is refused."""

    def __init__(self, source: str, key: str, value: object, reason: str) -> None:
        self.source = source
        self.key = key
        self.value = value
        self.reason = reason
        super().__init__(f"{source}: {key} = {value!r}: {reason}")

    def __reduce__(self):  # keep the exception picklable despite the 4-argument __init__
        return (type(self), (self.source, self.key, self.value, self.reason))


@dataclass(frozen=True)
class Wheel:
    """One pre-built SageAttention-family wheel; ``filename`` and ``url`` are derived."""

    name: str
    version: str
    release_tag: str
    build_tag: str
    python_tag: str
    platform: str
    release_base: str

    @property
    def filename(self) -> str:
        """The wheel file name (PEP 427), python tag doubling as ABI tag."""
        return (
            f"{self.name}-{self.version}-{self.build_tag}-"
            f"{self.python_tag}-{self.python_tag}-{self.platform}.whl"
        )

    @property
    def url(self) -> str:
        """Download URL: ``{release_base}/{release_tag}/{filename}``."""
        return f"{self.release_base.rstrip('/')}/{self.release_tag}/{self.filename}"


@dataclass(frozen=True)
class GitContext:
    """Build context taken from a git checkout (``build_context = {"git": ..., "ref": ...}``)."""

    git: str
    ref: str


@dataclass(frozen=True)
class Pins:
    """Validated pins of one host.

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
    build_dir: str
    bake_target: str
    bake_files: tuple[str, ...]
    build_context: None | tuple[str, ...] | GitContext
    registry_url: str
    image_label: str
    base_image: str
    pip_ca_bundle: str | None
    min_free_disk_gb: float
    force_rebuild: bool
    verify_torch: bool = True
    verify_min_cosine: float = 0.99
    verify_max_rel_l1: float = 0.1
    probe_quick: bool = True
    probe_timeout_s: float = 300.0
    # Rollout to GPU nodes (sagefleet.rollout, docs/rollout.md).
    state_dir: str = "/var/lib/sagefleet"
    registry_auth_file: str | None = None
    service_name: str = "comfyui"
    service_port: int = 8188
    service_restart: str = "unless-stopped"
    service_volumes: tuple[tuple[str, str], ...] = ()
    service_cli_args: tuple[str, ...] = ()
    health_timeout_s: float = 60.0
    rollout_batch_size: int = 2
    rollout_canary_group: str = "canary"
    verify_on_nodes: bool = True
    target_image: str | None = None
    rollout_action: str | None = None
    rollout_results_dir: str | None = None

    @property
    def image_ref(self) -> str:
        """The image this host builds: ``{registry_url}/comfyui-docker/{bake_target}:{label}``."""
        return f"{self.registry_url}/comfyui-docker/{self.bake_target}:{self.image_label}"

    def wheel(self, name: str) -> Wheel | None:
        """The pinned wheel of that distribution (name compared canonically), or None."""
        wanted = canonicalize_name(name)
        return next((w for w in self.wheels if w.name == wanted), None)

    def template_context(self) -> dict:
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


# The order of group_data/all.py; it is also the order of checks, so the first error is stable.
_KEY_ORDER = (
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
    "build_dir",
    "bake_target",
    "bake_files",
    "build_context",
    "registry_url",
    "image_label",
    "base_image",
    "pip_ca_bundle",
    "min_free_disk_gb",
    "force_rebuild",
    "verify_torch",
    "verify_min_cosine",
    "verify_max_rel_l1",
    "probe_quick",
    "probe_timeout_s",
    "state_dir",
    "registry_auth_file",
    "service_name",
    "service_port",
    "service_restart",
    "service_volumes",
    "service_cli_args",
    "health_timeout_s",
    "rollout_batch_size",
    "rollout_canary_group",
    "verify_on_nodes",
    "target_image",
    "rollout_action",
    "rollout_results_dir",
)
KNOWN_KEYS: frozenset[str] = frozenset(_KEY_ORDER)
# The rollout keys have defaults (Pins), so data written before the rollout existed
# still validates; group_data/all.py lists them all.
_ROLLOUT_KEYS = _KEY_ORDER[_KEY_ORDER.index("state_dir") :]
_OPTIONAL_KEYS = frozenset({"build_context", "pip_ca_bundle", *_ROLLOUT_KEYS})
ROLLOUT_ACTIONS = ("publish", "deploy", "rollback", "preview")

# Keys that pyinfra itself and its connectors read from host.data.
_FOREIGN_PREFIXES = (
    "ssh_",
    "_",
    "winrm_",
    "docker_",
    "chroot_",
    "podman_",
    "dockerssh_",
    "terraform_",
    "vagrant_",
)
# No "local_" prefix: pyinfra's local connector reads no such keys, and a typo of
# local_wheelhouse must not pass silently.

_WHEEL_SUBKEYS = ("version", "release_tag", "build_tag")

# Characters a shell (or a quoted string) would interpret; refused in every value we check.
_SHELL_META = frozenset("$`;&|<>'\"\\")

_PYTHON_VERSION = re.compile(r"3\.(0|[1-9][0-9]*)")
_PYTHON_TAG = re.compile(r"cp3(0|[1-9][0-9]*)")
_PLATFORM = re.compile(
    r"(linux|manylinux(1|2010|2014)|(many|musl)linux_[0-9]+_[0-9]+)"
    r"_(x86_64|aarch64|ppc64le|s390x|armv7l|i686)"
)
_BUILD_TAG = re.compile(r"[0-9][A-Za-z0-9._]*")
_RELEASE_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_GIT_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_PATH = re.compile(r"[A-Za-z0-9._/-]+")
_REGISTRY = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*")
_DOMAIN = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
_COMPONENT = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
_IMAGE_REF = re.compile(
    rf"(({_DOMAIN})(:[0-9]+)?/)?{_COMPONENT}(/{_COMPONENT})*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)


class _Checker:
    """Raises PinError naming the file that supplied the top-level key."""

    def __init__(self, source_of: Callable[[str], str]) -> None:
        self.source_of = source_of

    def fail(self, key: str, value: object, reason: str) -> NoReturn:
        top = re.split(r"[.\[]", key, maxsplit=1)[0]
        raise PinError(self.source_of(top), key, value, reason)

    def string(self, key: str, value: object) -> str:
        if not isinstance(value, str):
            self.fail(key, value, f"must be a string, not {type(value).__name__}")
        return value

    def boolean(self, key: str, value: object) -> bool:
        if not isinstance(value, bool):
            self.fail(key, value, f"must be True or False, not {type(value).__name__}")
        return value

    def string_list(self, key: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, list | tuple):
            self.fail(key, value, f"must be a list of strings, not {type(value).__name__}")
        return tuple(self.string(f"{key}[{i}]", item) for i, item in enumerate(value))

    def no_meta(self, key: str, value: str) -> None:
        for ch in value:
            if ch in _SHELL_META or ch.isspace() or not ch.isprintable():
                self.fail(
                    key,
                    value,
                    f"contains {ch!r}: whitespace, quotes and shell metacharacters are refused",
                )

    def match(self, key: str, value: str, pattern: re.Pattern[str], what: str) -> str:
        self.no_meta(key, value)
        if not pattern.fullmatch(value):
            self.fail(key, value, f"not {what}")
        return value

    def version(self, key: str, value: object) -> str:
        text = self.string(key, value)
        try:
            normal = str(Version(text))
        except InvalidVersion:
            self.fail(key, value, "not a valid version (PEP 440)")
        if normal != text:
            self.fail(key, value, f"version not in normal form (write {normal!r})")
        return text

    def url(self, key: str, value: object, local_wheelhouse: bool) -> str:
        text = self.string(key, value)
        self.no_meta(key, text)
        try:
            parts = urlsplit(text)
        except ValueError as exc:
            self.fail(key, value, f"not a URL ({exc})")
        if parts.scheme in ("http", "file") and not local_wheelhouse:
            self.fail(key, value, f"{parts.scheme}:// is only allowed with local_wheelhouse = True")
        if parts.scheme not in ("https", "http", "file"):
            self.fail(key, value, "URL must be https:// (http:// or file:// with local_wheelhouse)")
        if parts.scheme != "file" and not parts.hostname:
            self.fail(key, value, "URL has no host")
        if parts.scheme == "file" and (parts.netloc or not parts.path.startswith("/")):
            self.fail(key, value, "file:// URL must be file:///absolute/path")
        if parts.username is not None or parts.password is not None:
            # Credentials in a URL would land in logs and on command lines.
            self.fail(key, value, "URL must not contain credentials")
        if parts.query or parts.fragment or text.endswith(("?", "#")):
            self.fail(key, value, "URL must not have a query or fragment")
        return text

    def abs_path(self, key: str, value: object) -> str:
        text = self.string(key, value)
        self.path_chars(key, text)
        if not text.startswith("/"):
            self.fail(key, value, "must be an absolute path")
        self.normal_path(key, text)
        if text == "/":
            self.fail(key, value, "must not be /")
        return text

    def rel_path(self, key: str, value: object) -> str:
        text = self.string(key, value)
        self.path_chars(key, text)
        if text.startswith("/"):
            self.fail(key, value, "must be a relative path")
        if text.startswith("-"):
            self.fail(key, value, "must not start with '-'")  # would read as an option
        self.normal_path(key, text)
        if text == ".":
            self.fail(key, value, "must name a file or directory below the project, not '.'")
        return text

    def path_chars(self, key: str, text: str) -> None:
        self.no_meta(key, text)
        if not _PATH.fullmatch(text):
            self.fail(key, text, "path may only contain A-Z a-z 0-9 . _ / -")

    def normal_path(self, key: str, text: str) -> None:
        if ".." in text.split("/"):
            self.fail(key, text, "path must not contain '..'")
        normal = posixpath.normpath(text)
        if normal.startswith("//"):
            normal = normal[1:]  # POSIX keeps a leading "//"; we want one slash
        if normal != text:
            self.fail(key, text, f"path not in normal form (write {normal!r})")


def _unknown_reason(key: str, known: Iterable[str], hint: str) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key ({hint})"


def validate(
    data: Mapping[str, object],
    source_of: Callable[[str], str] = lambda key: "group_data/all.py",
    extra_keys: Iterable[str] = (),
) -> Pins:
    """Check the merged host data and return typed pins, or raise the first PinError.

    + data: the flat merged dict of one host (``dict(host.data)``)
    + source_of: names the file (or "--data", or "inventory host X") that supplied a
      top-level key; used in every PinError
    + extra_keys: keys of later features to accept without checking them here

    Keys of pyinfra and its connectors (``ssh_*``, ``_*``, ``docker_*``, ...) are ignored.
    A missing required key is reported with the value ``MISSING`` (shown as ``<missing>``).
    """
    c = _Checker(source_of)
    allowed = set(extra_keys)

    for key, value in data.items():
        if key in KNOWN_KEYS or key in allowed:
            continue
        if isinstance(key, str) and key.startswith(_FOREIGN_PREFIXES):
            continue
        c.fail(
            str(key), value, _unknown_reason(str(key), _KEY_ORDER, "not a key of group_data/all.py")
        )
    for key in _KEY_ORDER:
        if key not in data and key not in _OPTIONAL_KEYS:
            c.fail(key, MISSING, "required key is missing")

    # Checked first because the URL rules depend on it.
    local_wheelhouse = c.boolean("local_wheelhouse", data["local_wheelhouse"])

    python_version = c.string("python_version", data["python_version"])
    minor = _PYTHON_VERSION.fullmatch(python_version)
    if not minor:
        c.fail("python_version", python_version, "must be '3.N', e.g. '3.12'")
    torch_version = c.version("torch_version", data["torch_version"])
    cuda_version = c.version("cuda_version", data["cuda_version"])
    torch_index_url = c.url("torch_index_url", data["torch_index_url"], local_wheelhouse)
    release_base = c.url("sage_release_base", data["sage_release_base"], local_wheelhouse)

    python_tag = c.match(
        "sage_wheel_python_tag",
        c.string("sage_wheel_python_tag", data["sage_wheel_python_tag"]),
        _PYTHON_TAG,
        "a CPython tag like 'cp312'",
    )
    expected_tag = f"cp3{minor.group(1)}"
    if python_tag != expected_tag:
        c.fail(
            "sage_wheel_python_tag",
            python_tag,
            f"does not match python_version {python_version!r} (expected {expected_tag!r})",
        )
    platform = c.match(
        "sage_wheel_platform",
        c.string("sage_wheel_platform", data["sage_wheel_platform"]),
        _PLATFORM,
        "a Linux platform tag like 'linux_x86_64' or 'manylinux_2_28_x86_64'",
    )

    wheels = _wheels(c, data["sage_wheels"], python_tag, platform, release_base)
    require_sageattn3 = c.boolean("require_sageattn3", data["require_sageattn3"])
    if require_sageattn3 and not any(w.name == "sageattn3" for w in wheels):
        c.fail("require_sageattn3", True, "requires a 'sageattn3' entry in sage_wheels")

    extra_requirements = _requirements(c, data["extra_requirements"], wheels)

    build_dir = c.abs_path("build_dir", data["build_dir"])
    bake_target = c.match(
        "bake_target",
        c.string("bake_target", data["bake_target"]),
        _NAME,
        "a name matching [A-Za-z0-9][A-Za-z0-9._-]*",
    )
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
    image_label = c.match(
        "image_label",
        c.string("image_label", data["image_label"]),
        _NAME,
        "a tag matching [A-Za-z0-9][A-Za-z0-9._-]*",
    )
    if len(image_label) > 128:
        c.fail("image_label", image_label, "a Docker tag has at most 128 characters")
    base_image = c.match(
        "base_image",
        c.string("base_image", data["base_image"]),
        _IMAGE_REF,
        "a Docker image reference like 'nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04'",
    )

    pip_ca_bundle = data.get("pip_ca_bundle")
    if pip_ca_bundle is not None:
        pip_ca_bundle = c.abs_path("pip_ca_bundle", pip_ca_bundle)

    min_free = data["min_free_disk_gb"]
    if (
        isinstance(min_free, bool)
        or not isinstance(min_free, int | float)
        or not math.isfinite(min_free)
        or min_free < 0
    ):
        c.fail("min_free_disk_gb", min_free, "must be a non-negative number")
    force_rebuild = c.boolean("force_rebuild", data["force_rebuild"])
    verify_torch = c.boolean("verify_torch", data["verify_torch"])
    min_cosine = _number(c, "verify_min_cosine", data["verify_min_cosine"], 0.0, 1.0)
    max_rel_l1 = _number(c, "verify_max_rel_l1", data["verify_max_rel_l1"], 0.0, None)
    probe_quick = c.boolean("probe_quick", data["probe_quick"])
    probe_timeout = _number(c, "probe_timeout_s", data["probe_timeout_s"], 1.0, None)

    return Pins(
        python_version=python_version,
        torch_version=torch_version,
        cuda_version=cuda_version,
        torch_index_url=torch_index_url,
        wheels=wheels,
        require_sageattn3=require_sageattn3,
        extra_requirements=extra_requirements,
        local_wheelhouse=local_wheelhouse,
        build_dir=build_dir,
        bake_target=bake_target,
        bake_files=bake_files,
        build_context=build_context,
        registry_url=registry_url,
        image_label=image_label,
        base_image=base_image,
        pip_ca_bundle=pip_ca_bundle,
        min_free_disk_gb=float(min_free),
        force_rebuild=force_rebuild,
        verify_torch=verify_torch,
        verify_min_cosine=min_cosine,
        verify_max_rel_l1=max_rel_l1,
        probe_quick=probe_quick,
        probe_timeout_s=probe_timeout,
        **_rollout(c, data),
    )


def _number(c: _Checker, key: str, value: object, low: float, high: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        c.fail(key, value, "must be a number")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        c.fail(key, value, f"must be {bounds}")
    return float(value)


def _wheels(
    c: _Checker, value: object, python_tag: str, platform: str, release_base: str
) -> tuple[Wheel, ...]:
    if not isinstance(value, Mapping):
        c.fail("sage_wheels", value, f"must be a dict of name -> pins, not {type(value).__name__}")
    if not value:
        c.fail("sage_wheels", value, "must pin at least one wheel")
    wheels = []
    for name, entry in value.items():
        name = c.string("sage_wheels", name)
        c.no_meta("sage_wheels", name)
        try:
            canonical = canonicalize_name(name, validate=True)
        except InvalidName:
            c.fail("sage_wheels", name, "not a valid distribution name")
        if canonical != name:
            c.fail("sage_wheels", name, f"wheel name not canonical (write {canonical!r})")
        key = f"sage_wheels.{name}"
        if not isinstance(entry, Mapping):
            c.fail(key, entry, "must be a dict with keys version, release_tag, build_tag")
        for sub, sub_value in entry.items():
            if sub not in _WHEEL_SUBKEYS:
                c.fail(
                    f"{key}.{sub}",
                    sub_value,
                    _unknown_reason(
                        str(sub), _WHEEL_SUBKEYS, "expected version, release_tag, build_tag"
                    ),
                )
        for sub in _WHEEL_SUBKEYS:
            if sub not in entry:
                c.fail(f"{key}.{sub}", MISSING, "required key is missing")

        version = c.version(f"{key}.version", entry["version"])
        release_tag = c.match(
            f"{key}.release_tag",
            c.string(f"{key}.release_tag", entry["release_tag"]),
            _RELEASE_TAG,
            "a safe path segment matching [A-Za-z0-9][A-Za-z0-9._+-]*",
        )
        build_tag = c.string(f"{key}.build_tag", entry["build_tag"])
        c.no_meta(f"{key}.build_tag", build_tag)
        if not build_tag[:1].isdigit():
            c.fail(f"{key}.build_tag", build_tag, "build tag must start with a digit (PEP 427)")
        c.match(f"{key}.build_tag", build_tag, _BUILD_TAG, "a build tag like '290.129'")

        wheel = Wheel(name, version, release_tag, build_tag, python_tag, platform, release_base)
        # Belt and braces: the derived name must read back as exactly these pins.
        try:
            p_name, p_version, p_build, p_tags = parse_wheel_filename(wheel.filename)
        except InvalidWheelFilename as exc:
            c.fail(key, wheel.filename, f"derived wheel file name is invalid: {exc}")
        tags = {(t.interpreter, t.abi, t.platform) for t in p_tags}
        if (
            p_name != name
            or p_version != Version(version)
            or f"{p_build[0]}{p_build[1]}" != build_tag
            or tags != {(python_tag, python_tag, platform)}
        ):
            c.fail(key, wheel.filename, "derived wheel file name does not read back as the pins")
        wheels.append(wheel)
    return tuple(wheels)


def _requirements(c: _Checker, value: object, wheels: tuple[Wheel, ...]) -> tuple[str, ...]:
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
    c: _Checker, value: object, local_wheelhouse: bool
) -> None | tuple[str, ...] | GitContext:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        paths = c.string_list("build_context", value)
        if not paths:
            c.fail("build_context", value, "must name at least one path (or be None)")
        return tuple(c.rel_path(f"build_context[{i}]", p) for i, p in enumerate(paths))
    if isinstance(value, Mapping):
        for sub, sub_value in value.items():
            if sub not in ("git", "ref"):
                c.fail(
                    f"build_context.{sub}",
                    sub_value,
                    _unknown_reason(str(sub), ("git", "ref"), "expected git, ref"),
                )
        for sub in ("git", "ref"):
            if sub not in value:
                c.fail(f"build_context.{sub}", MISSING, "required key is missing")
        url = c.url("build_context.git", value["git"], local_wheelhouse)
        ref = c.match(
            "build_context.ref",
            c.string("build_context.ref", value["ref"]),
            _GIT_REF,
            "a git ref matching [A-Za-z0-9][A-Za-z0-9._/-]*",
        )
        if ".." in ref or ref.endswith(("/", ".", ".lock")) or "//" in ref:
            c.fail("build_context.ref", ref, "not a valid git ref name")
        return GitContext(url, ref)
    c.fail(
        "build_context",
        value,
        "must be None, a list of relative paths, or {'git': URL, 'ref': REF}",
    )


_SERVICE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
_RESTART = re.compile(r"(no|always|unless-stopped|on-failure(:[0-9]+)?)")
_DIGEST_REF = re.compile(r"[^@\s]+@sha256:[0-9a-f]{64}")
# CLI_ARGS is word-split by the image's shell: one option or value per item, no spaces.
_CLI_ARG = re.compile(r"[A-Za-z0-9_.,:=/+-]+")


def _rollout(c: _Checker, data: Mapping[str, object]) -> dict:
    """The rollout keys (all optional: Pins has the defaults)."""
    out: dict = {}
    defaults = {f: Pins.__dataclass_fields__[f].default for f in _ROLLOUT_KEYS}

    def get(key: str) -> object:
        return data.get(key, defaults[key])

    out["state_dir"] = c.abs_path("state_dir", get("state_dir"))
    auth = get("registry_auth_file")
    out["registry_auth_file"] = None if auth is None else c.abs_path("registry_auth_file", auth)
    out["service_name"] = c.match(
        "service_name",
        c.string("service_name", get("service_name")),
        _SERVICE_NAME,
        "a container name matching [a-zA-Z0-9][a-zA-Z0-9_.-]*",
    )
    port = get("service_port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        c.fail("service_port", port, "must be a TCP port number (1-65535)")
    out["service_port"] = port
    out["service_restart"] = c.match(
        "service_restart",
        c.string("service_restart", get("service_restart")),
        _RESTART,
        "a Docker restart policy (no, always, unless-stopped, on-failure[:N])",
    )
    volumes = get("service_volumes")
    if not isinstance(volumes, Mapping | list | tuple):
        c.fail("service_volumes", volumes, "must be a dict {host path: container path}")
    pairs = volumes.items() if isinstance(volumes, Mapping) else volumes
    checked = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            c.fail(f"service_volumes[{i}]", pair, "must be a (host path, container path) pair")
        src, dst = pair
        checked.append(
            (
                c.abs_path(f"service_volumes[{src!r}]", src),
                c.abs_path(f"service_volumes[{src!r}]", dst),
            )
        )
    out["service_volumes"] = tuple(checked)
    args = c.string_list("service_cli_args", get("service_cli_args"))
    for i, arg in enumerate(args):
        c.match(f"service_cli_args[{i}]", arg, _CLI_ARG, "one option or value without spaces")
    out["service_cli_args"] = args
    out["health_timeout_s"] = _number(c, "health_timeout_s", get("health_timeout_s"), 1.0, None)
    size = get("rollout_batch_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        c.fail("rollout_batch_size", size, "must be a whole number >= 1")
    out["rollout_batch_size"] = size
    out["rollout_canary_group"] = c.match(
        "rollout_canary_group",
        c.string("rollout_canary_group", get("rollout_canary_group")),
        _NAME,
        "a group name",
    )
    out["verify_on_nodes"] = c.boolean("verify_on_nodes", get("verify_on_nodes"))
    target = get("target_image")
    if target is not None:
        text = c.string("target_image", target)
        c.no_meta("target_image", text)
        if not _DIGEST_REF.fullmatch(text) or not _IMAGE_REF.fullmatch(text):
            c.fail("target_image", text, "must be pinned by digest: 'repo@sha256:<64 hex>'")
        out["target_image"] = text
    action = get("rollout_action")
    if action is not None and action not in ROLLOUT_ACTIONS:
        c.fail("rollout_action", action, f"must be one of {', '.join(ROLLOUT_ACTIONS)}")
    out["rollout_action"] = action
    results = get("rollout_results_dir")
    out["rollout_results_dir"] = (
        None if results is None else c.abs_path("rollout_results_dir", results)
    )
    return out
