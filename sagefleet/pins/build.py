"""How a build host builds the image: where, with which CA bundle, how much disk, forced.

None of these change what the image is (they are not in the inputs hash).
Pure: imports no pyinfra.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from . import files, paths
from .check import Checker

BUILD_KEYS = (
    "build_dir",
    "pip_ca_bundle",
    "min_free_disk_gb",
    "force_rebuild",
    "bake_cache_ref",
)


@dataclass(frozen=True)
class BuildPins:
    """Build host settings."""

    build_dir: str
    pip_ca_bundle: str | None
    min_free_disk_gb: float
    force_rebuild: bool
    # A registry repository for bake's layer cache (cache-from/cache-to type=registry,
    # mode=max, one tag per target): a fresh build host reuses the fleet's layers.
    bake_cache_ref: str | None = None


def check_build(c: Checker, data: Mapping[str, object]) -> BuildPins:
    """The build host's keys, in the order of group_data/all.py."""
    build_dir = c.abs_path("build_dir", data["build_dir"])
    if reason := paths.directory_refusal(build_dir):
        c.fail("build_dir", build_dir, reason)
    pip_ca_bundle = data.get("pip_ca_bundle")
    if pip_ca_bundle is not None:
        pip_ca_bundle = c.abs_path("pip_ca_bundle", pip_ca_bundle)
        if reason := files.ca_bundle_refusal(pip_ca_bundle):
            c.fail("pip_ca_bundle", pip_ca_bundle, reason)
    min_free = data["min_free_disk_gb"]
    if (
        isinstance(min_free, bool)
        or not isinstance(min_free, int | float)
        or not math.isfinite(min_free)
        or min_free < 0
    ):
        c.fail("min_free_disk_gb", min_free, "must be a non-negative number")
    return BuildPins(
        build_dir=build_dir,
        pip_ca_bundle=pip_ca_bundle,
        min_free_disk_gb=float(min_free),
        force_rebuild=c.boolean("force_rebuild", data["force_rebuild"]),
        bake_cache_ref=_cache_ref(c, data.get("bake_cache_ref")),
    )


# A registry repository without tag or digest (sagefleet adds one tag per target).
CACHE_REF = re.compile(
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+"
)


def _cache_ref(c: Checker, value: object) -> str | None:
    if value is None:
        return None
    text = c.string("bake_cache_ref", value)
    c.no_meta("bake_cache_ref", text)
    if not CACHE_REF.fullmatch(text):
        c.fail(
            "bake_cache_ref",
            text,
            "not a registry repository like 'registry.example:5000/team/comfyui-cache' "
            "(lowercase, no scheme, no tag: sagefleet adds one tag per target)",
        )
    return text
