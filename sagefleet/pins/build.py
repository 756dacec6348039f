"""How a build host builds the image: where, with which CA bundle, how much disk, forced.

None of these change what the image is (they are not in the inputs hash).
Pure: imports no pyinfra.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .check import Checker

BUILD_KEYS = (
    "build_dir",
    "pip_ca_bundle",
    "min_free_disk_gb",
    "force_rebuild",
)


@dataclass(frozen=True)
class BuildPins:
    """Build host settings."""

    build_dir: str
    pip_ca_bundle: str | None
    min_free_disk_gb: float
    force_rebuild: bool


def check_build(c: Checker, data: Mapping[str, object]) -> BuildPins:
    """The build host's keys, in the order of group_data/all.py."""
    build_dir = c.abs_path("build_dir", data["build_dir"])
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
    return BuildPins(
        build_dir=build_dir,
        pip_ca_bundle=pip_ca_bundle,
        min_free_disk_gb=float(min_free),
        force_rebuild=c.boolean("force_rebuild", data["force_rebuild"]),
    )
