"""The benchmarks' pins pass validation: bench/run.py's old and new build tags (its
pin-change run) and the offline profile it deploys. A bench that cannot start is found
here, not at the next `make bench`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.offline_pins import offline_pins

ROOT = Path(__file__).resolve().parents[2]


def _bench_run():
    sys.path.insert(0, str(ROOT / "bench"))
    sys.path.insert(0, str(ROOT / "tests" / "fleet"))
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["OLD_BUILD", "NEW_BUILD"])
def test_bench_build_tags_are_valid_pins(name):
    tag = getattr(_bench_run(), name)
    pins = offline_pins(sage_wheels_build=tag)
    assert pins.image.wheel("sageattention").build_tag == tag
