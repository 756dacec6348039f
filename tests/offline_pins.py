"""Pins of the offline profile (group_data/all.py + offline.py), for tests."""

from __future__ import annotations

import runpy

from sagefleet.context import PROJECT_ROOT
from sagefleet.pins import Pins, validate


def group_file(name: str) -> dict:
    data = runpy.run_path(str(PROJECT_ROOT / "group_data" / f"{name}.py"))
    return {k: v for k, v in data.items() if not k.startswith("_") and k != "os"}


def offline_pins(sage_wheels_build: str | None = None, **overrides) -> Pins:
    data = {**group_file("all"), **group_file("offline"), **overrides}
    if sage_wheels_build:
        wheels = {k: dict(v) for k, v in data["sage_wheels"].items()}
        wheels["sageattention"]["build_tag"] = sage_wheels_build
        data["sage_wheels"] = wheels
    return validate(data)
