"""Pins that must agree with each other, checked before a ~20 GB build would find out.

The build tag convention (stated here, and only here)
-----------------------------------------------------
Upstream SageAttention release wheels encode the torch and CUDA they were built
against in the wheel's build tag: the digits of the torch version, a dot, the
digits of the CUDA version. torch 2.9.0 + CUDA 12.9 -> ``290.129``; torch 2.10.0 +
CUDA 13.0 -> ``2100.130``. A build tag of that shape (3-4 digits, a dot, 3 digits)
is read this way and must name the pinned torch and CUDA. Other build tags (local
builds, the offline profile's stand-ins such as ``321.1``) encode nothing and are
not compared. The torch index must serve the pinned CUDA too: an index ending in
``/cu128`` beside ``cu129`` wheels installs a torch the wheels were not built for.

Pure: imports no pyinfra.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from packaging.version import Version

__all__ = [
    "ARCH_OF_PLATFORM",
    "LOCKED_BY_GROUP",
    "build_tag_for",
    "build_tag_refusal",
    "decode_build_tag",
    "index_refusal",
    "locked_refusal",
    "name_collision",
    "platform_refusal",
]

_ENCODED = re.compile(r"([0-9])([0-9]{1,2})([0-9])\.([0-9]{2})([0-9])")
_INDEX_CUDA = re.compile(r"cu([0-9]{3})")


def _digits(version: str) -> str:
    return "".join(str(part) for part in Version(version).release)


def build_tag_for(torch_version: str, cuda_version: str) -> str:
    """The build tag of an upstream wheel for this torch and CUDA."""
    return f"{_digits(torch_version)}.{_digits(cuda_version)}"


def decode_build_tag(build_tag: str) -> tuple[str, str] | None:
    """(torch, CUDA) a build tag encodes, or None when it has not the convention's shape."""
    m = _ENCODED.fullmatch(build_tag)
    if not m:
        return None
    t_major, t_minor, t_patch, c_major, c_minor = m.groups()
    return f"{t_major}.{int(t_minor)}.{t_patch}", f"{int(c_major)}.{c_minor}"


def build_tag_refusal(build_tag: str, torch_version: str, cuda_version: str) -> str | None:
    """Why a wheel's build tag disagrees with the torch/CUDA pins, or None."""
    encoded = decode_build_tag(build_tag)
    if encoded is None:
        return None
    want = build_tag_for(torch_version, cuda_version)
    if build_tag == want:
        return None
    torch, cuda = encoded
    return (
        f"build tag encodes torch {torch} + CUDA {cuda}, but torch_version is "
        f"{torch_version!r} and cuda_version {cuda_version!r} (expected build tag {want!r}; "
        "convention in sagefleet/pins/agreement.py)"
    )


def index_refusal(index_url: str, cuda_version: str) -> str | None:
    """Why the torch index serves another CUDA than cuda_version, or None."""
    last = urlsplit(index_url).path.rstrip("/").rsplit("/", 1)[-1]
    m = _INDEX_CUDA.fullmatch(last)
    want = "cu" + _digits(cuda_version)
    if not m or last == want:
        return None
    return f"index serves CUDA {m.group(1)}, but cuda_version is {cuda_version!r} (use /{want})"


# Docker platform -> the architecture in a wheel's platform tag.
ARCH_OF_PLATFORM = {
    "linux/amd64": "x86_64",
    "linux/arm64": "aarch64",
    "linux/arm64/v8": "aarch64",
    "linux/ppc64le": "ppc64le",
    "linux/s390x": "s390x",
    "linux/arm/v7": "armv7l",
    "linux/386": "i686",
}


def platform_refusal(wheel_platform: str, bake_platforms: Iterable[str]) -> str | None:
    """Why wheels for wheel_platform cannot install on every bake platform, or None."""
    for platform in bake_platforms:
        arch = ARCH_OF_PLATFORM.get(platform)
        if arch is None:
            return f"bake platform {platform!r} is not one sagefleet knows"
        if not wheel_platform.endswith("_" + arch):
            return (
                f"wheels for this platform cannot install on bake platform {platform!r} "
                f"(expected a tag ending in '_{arch}')"
            )
    return None


# Values a group file may require for its hosts; host data and --data may not undo them.
LOCKED_BY_GROUP: dict[str, object] = {"require_sageattn3": True}


def locked_refusal(
    merged: Mapping[str, object], layers: Sequence[tuple[str, Mapping[str, object]]]
) -> tuple[str, str] | None:
    """(key, reason) when a group's required value was switched off, or None.

    + merged: the host's merged data (what the run would use)
    + layers: (source, data) of each group file of the host, all.py excluded
    """
    for key, required in LOCKED_BY_GROUP.items():
        if key not in merged or merged[key] == required:
            continue
        for source, data in layers:
            if data.get(key) == required:
                return (
                    key,
                    f"{source} requires {required!r} for its hosts; it may not be overridden",
                )
    return None


_SEPARATORS = re.compile(r"[-_.]+")


def name_collision(names: Iterable[tuple[str, str]]) -> tuple[str, str, str, str] | None:
    """The first two names that differ only by case and separators (sage-attention,
    sage_attention, sageattention): (where, name, other where, other name), or None.
    Names equal once canonical (PEP 503) are left to the duplicate checks."""
    seen: dict[str, tuple[str, str]] = {}
    for where, name in names:
        folded = _SEPARATORS.sub("", name.lower())
        if folded in seen:
            other_where, other = seen[folded]
            if _SEPARATORS.sub("-", other.lower()) != _SEPARATORS.sub("-", name.lower()):
                return where, name, other_where, other
        else:
            seen[folded] = (where, name)
    return None
