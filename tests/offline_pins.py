"""Pins of the offline profile (group_data/all.py, the run's offline data, offline.py), for tests."""

from __future__ import annotations

from sagefleet.offline import group_file, offline_profile
from sagefleet.pins import Pins, validate

__all__ = ["group_file", "offline_pins"]


def offline_pins(sage_wheels_build: str | None = None, **overrides) -> Pins:
    data = {**offline_profile(), **overrides}
    if sage_wheels_build:
        wheels = {k: dict(v) for k, v in data["sage_wheels"].items()}
        wheels["sageattention"]["build_tag"] = sage_wheels_build
        data["sage_wheels"] = wheels
    return validate(data)
