"""The verification gate on recorded probe outputs (the H100 sample, the offline CPU image)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from sagefleet import probe
from sagefleet.gate import Expectation, describe, expectation, gate_failures
from tests.offline_pins import offline_pins

ROOT = Path(__file__).resolve().parents[2]
H100 = json.loads((ROOT / "docs/samples/h100-probe.json").read_text())
CPU = json.loads((Path(__file__).parent / "data/verify/offline-cpu-probe.json").read_text())


def expect(**kw) -> Expectation:
    base = dict(
        wheels={"sageattention": ("2.2.0", "290.129"), "sageattn3": ("1.0.0", "290.129")},
        require_sageattn3=False,
        torch_version=None,
        min_cosine=0.99,
        max_rel_l1=0.1,
    )
    return Expectation(**{**base, **kw})


def test_offline_image_passes_its_own_pins():
    assert gate_failures(CPU, expectation(offline_pins())) == []
    assert describe(CPU).startswith("sageattention 2.2.0, sageattn3 1.0.0, torch -")
    assert "sageattn no-gpu" in describe(CPU)


def test_h100_sample_is_sageattention_106_not_the_pinned_220():
    failures = gate_failures(H100, expect())
    assert "sageattention is 1.0.6 in the image, pinned 2.2.0" in failures
    assert "sageattn3 1.0.0 is pinned but not installed in the image" in failures


def test_h100_sample_passes_when_pinned_to_what_it_runs():
    e = expect(wheels={"sageattention": ("1.0.6", None)}, torch_version="2.11.0")
    assert gate_failures(H100, e) == []


@pytest.mark.parametrize(
    "status, gates",
    [
        ("ok", False),
        ("unsupported-arch", False),
        ("not-installed", False),
        ("no-gpu", False),
        ("error", True),
    ],
)
def test_every_kernel_status(status, gates):
    report = copy.deepcopy(H100)
    report["kernels"][0]["status"] = status
    report["kernels"][0]["error"] = (
        "CUDA error: an illegal memory access" if status == "error" else None
    )
    report["summary"]["sageattn"]["status"] = status
    failures = gate_failures(report, expect(wheels={"sageattention": ("1.0.6", None)}))
    assert bool(failures) is gates
    if gates:
        assert failures == ["kernel sageattn fails: CUDA error: an illegal memory access"]


def test_inaccurate_kernel_fails():
    report = copy.deepcopy(H100)
    report["summary"]["sageattn"].update(min_cosine=0.37, max_rel_l1=0.8)
    failures = gate_failures(report, expect(wheels={"sageattention": ("1.0.6", None)}))
    assert failures == [
        "kernel sageattn: cosine similarity 0.3700 < 0.99",
        "kernel sageattn: relative L1 0.8000 > 0.1",
    ]


def test_wrong_wheel_build_tag():
    report = copy.deepcopy(CPU)
    report["packages"]["sageattention"]["build_tag"] = "280.129"
    failures = gate_failures(report, expectation(offline_pins()))
    assert failures == ["sageattention 2.2.0 has wheel build 280.129 in the image, pinned 290.129"]


def test_required_sageattn3_missing_or_without_blackwell_function():
    pins = offline_pins(require_sageattn3=True)
    report = copy.deepcopy(CPU)
    report["packages"]["sageattn3"]["version"] = None
    assert "this host's group requires sageattn3, which is not installed" in gate_failures(
        report, expectation(pins)
    )
    report = copy.deepcopy(CPU)
    report["functions"]["sageattn3_blackwell"] = False
    assert gate_failures(report, expectation(pins)) == [
        "this host's group requires sageattn3, which lacks sageattn3_blackwell"
    ]


def test_silent_fallback_on_hopper_is_caught():
    """Import succeeds, but SM90 kernels did not load: ComfyUI would fall back silently."""
    report = copy.deepcopy(CPU)
    report["gpu"] = {"available": True, "name": "NVIDIA H100", "capability": "9.0", "count": 1}
    report["sm_flags"] = {"SM80_ENABLED": True, "SM89_ENABLED": True, "SM90_ENABLED": False}
    report["extension_errors"] = {"sageattention._qattn_sm90": "ImportError: libcuda.so.1"}
    failures = gate_failures(report, expectation(offline_pins()))
    assert len(failures) == 1
    assert "SM90_ENABLED is False on this compute capability 9.0 GPU" in failures[0]
    assert "sageattention._qattn_sm90: ImportError: libcuda.so.1" in failures[0]


def test_torch_version_checked_when_asked():
    failures = gate_failures(H100, expect(wheels={}, torch_version="2.9.0"))
    assert failures == ["torch is 2.11.0 in the image, pinned 2.9.0"]


def test_probe_that_itself_failed():
    assert gate_failures({"schema": 1, "fatal": "MemoryError"}, expect()) == [
        "the probe itself failed: MemoryError"
    ]


# The gate and probe.recommend judge the same summary: a kernel that ran (status ok)
# with an infinite relative L1 (summarised as null) or a NaN cosine is refused by both.
@pytest.mark.parametrize(
    "field, value, message",
    [
        ("max_rel_l1", None, "kernel sageattn: relative L1 None is not a finite measurement"),
        ("max_rel_l1", math.inf, "kernel sageattn: relative L1 inf is not a finite measurement"),
        ("max_rel_l1", math.nan, "kernel sageattn: relative L1 nan is not a finite measurement"),
        ("min_cosine", None, "kernel sageattn: cosine similarity None is not a finite measurement"),
        ("min_cosine", math.nan, "kernel sageattn: cosine similarity nan is not a finite"),
    ],
)
def test_ok_kernel_without_finite_accuracy_fails(field, value, message):
    report = copy.deepcopy(H100)
    report["summary"]["sageattn"][field] = value
    failures = gate_failures(report, expect(wheels={"sageattention": ("1.0.6", None)}))
    assert len(failures) == 1 and failures[0].startswith(message), failures


def test_ok_kernel_with_no_summary_entry_fails():
    report = copy.deepcopy(H100)
    del report["summary"]["sageattn"]
    failures = gate_failures(report, expect(wheels={"sageattention": ("1.0.6", None)}))
    assert failures == [
        "kernel sageattn: cosine similarity None is not a finite measurement",
        "kernel sageattn: relative L1 None is not a finite measurement (infinite or not measured)",
    ]


def test_gate_and_recommend_agree_on_an_infinite_rel_l1():
    """The bug: one shape's output blew up (rel L1 inf). summarize() reports max_rel_l1
    null; recommend refused it while the gate passed the image."""
    report = copy.deepcopy(H100)
    kernel = report["kernels"][0]
    kernel["shapes"][0]["rel_l1"] = math.inf
    report["summary"] = probe.summarize(report["kernels"])
    assert report["summary"]["sageattn"]["max_rel_l1"] is None
    e = expect(wheels={"sageattention": ("1.0.6", None)})
    rec = probe.recommend(report["summary"], report["gpu"], None, e.min_cosine, e.max_rel_l1)
    assert rec["use_sage_attention"] is False and "max rel L1" in rec["reason"]
    assert any("relative L1" in f for f in gate_failures(report, e))


def test_bounds_are_inclusive():
    """Exactly at the bounds passes; just past them fails (cosine < min, rel L1 > max)."""
    report = copy.deepcopy(H100)
    e = expect(wheels={"sageattention": ("1.0.6", None)}, min_cosine=0.99, max_rel_l1=0.1)
    report["summary"]["sageattn"].update(min_cosine=0.99, max_rel_l1=0.1)
    assert gate_failures(report, e) == []
    report["summary"]["sageattn"].update(min_cosine=0.9899, max_rel_l1=0.1001)
    assert len(gate_failures(report, e)) == 2
