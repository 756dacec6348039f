"""Exact refusals of every URL rule (pins/check.py: Checker.url), and the gate's reading
of each part of a probe report (sagefleet/gate.py) one at a time."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from test_pins import GROUP, PinError, merged, sources, validate

from sagefleet.gate import Expectation, describe, expectation, gate_failures
from tests.offline_pins import offline_pins

B = GROUP
URLS = [
    ("http://[::1", f"{B}: torch_index_url = 'http://[::1': not a URL (Invalid IPv6 URL)"),
    ("https:///path", f"{B}: torch_index_url = 'https:///path': URL has no host"),
    (
        "file://host/srv/x",
        f"{B}: torch_index_url = 'file://host/srv/x': file:// URL must be file:///absolute/path",
    ),
    (
        "file:srv/x",
        f"{B}: torch_index_url = 'file:srv/x': file:// URL must be file:///absolute/path",
    ),
    (
        "https://user@h.example/x",
        f"{B}: torch_index_url = 'https://user@h.example/x': URL must not contain credentials",
    ),
    (
        "https://:pw@h.example/x",
        f"{B}: torch_index_url = 'https://:pw@h.example/x': URL must not contain credentials",
    ),
    (
        "https://h.example/x?y=1",
        f"{B}: torch_index_url = 'https://h.example/x?y=1': URL must not have a query or fragment",
    ),
    (
        "https://h.example/x#f",
        f"{B}: torch_index_url = 'https://h.example/x#f': URL must not have a query or fragment",
    ),
    (
        "https://h.example/x?",
        f"{B}: torch_index_url = 'https://h.example/x?': URL must not have a query or fragment",
    ),
    (
        "https://h.example/x#",
        f"{B}: torch_index_url = 'https://h.example/x#': URL must not have a query or fragment",
    ),
]


@pytest.mark.parametrize(("url", "message"), URLS)
def test_url_rules(url, message):
    data = {"torch_index_url": url, "local_wheelhouse": True}
    with pytest.raises(PinError) as info:
        validate(merged(data), sources(data))
    assert str(info.value) == message


def test_file_url_with_an_absolute_path_passes_in_a_local_wheelhouse():
    pins = validate(merged({"torch_index_url": "file:///srv/ok", "local_wheelhouse": True}))
    assert pins.image.torch_index_url == "file:///srv/ok"


# --------------------------------------------------------------------------- the gate

CPU = json.loads((Path(__file__).parent / "data/verify/offline-cpu-probe.json").read_text())
WHEELS = {"sageattention": ("2.2.0", "290.129"), "sageattn3": ("1.0.0", "290.129")}


def expect(**kw) -> Expectation:
    base = dict(wheels=WHEELS, require_sageattn3=False, torch_version=None,
                min_cosine=0.99, max_rel_l1=0.1)  # fmt: skip
    return Expectation(**{**base, **kw})


def report(**changes):
    doc = copy.deepcopy(CPU)
    doc.update(changes)
    return doc


def test_expectation_from_pins():
    pins = offline_pins(verify_min_cosine=0.995, verify_max_rel_l1=0.05, verify_torch=True)
    e = expectation(pins)
    assert e.min_cosine == 0.995 and e.max_rel_l1 == 0.05
    assert e.torch_version == pins.image.torch_version and e.torch_version is not None
    assert e.wheels == {w.name: (w.version, w.build_tag) for w in pins.image.wheels}
    assert e.require_sageattn3 is False
    assert expectation(offline_pins(verify_torch=False)).torch_version is None
    assert expectation(offline_pins(require_sageattn3=True)).require_sageattn3 is True


def test_every_missing_wheel_is_named():
    """Both pinned wheels missing: two reasons (the check goes on after the first)."""
    packages = {"sageattention": {"version": None}, "sageattn3": {}}
    assert gate_failures(report(packages=packages), expect()) == [
        "sageattention 2.2.0 is pinned but not installed in the image",
        "sageattn3 1.0.0 is pinned but not installed in the image",
    ]


def test_import_failure_of_each_wheel():
    errors = {"sageattention": None, "sageattn3": "ImportError: libcuda.so.1"}
    assert gate_failures(report(import_errors=errors), expect()) == [
        "import sageattn3 fails: ImportError: libcuda.so.1"
    ]
    both = {"sageattention": "OSError: x", "sageattn3": "OSError: y"}
    assert gate_failures(report(import_errors=both), expect()) == [
        "import sageattention fails: OSError: x",
        "import sageattn3 fails: OSError: y",
    ]


def test_an_unparsable_version_never_matches():
    packages = copy.deepcopy(CPU["packages"])
    packages["sageattention"]["version"] = "not a version"
    assert gate_failures(report(packages=packages), expect()) == [
        "sageattention is not a version in the image, pinned 2.2.0"
    ]


def test_torch_not_installed_is_said_so():
    assert gate_failures(report(), expect(wheels={}, torch_version="2.9.0")) == [
        "torch is not installed in the image, pinned 2.9.0"
    ]


def test_required_sageattn3_reads_the_functions_of_the_report():
    e = expect(require_sageattn3=True)
    assert gate_failures(report(), e) == []
    assert gate_failures(report(functions={}), e) == [
        "this host's group requires sageattn3, which lacks sageattn3_blackwell"
    ]


HOPPER = {"available": True, "name": "NVIDIA H100", "capability": "9.0", "count": 1}
FLAGS_OFF = {"SM80_ENABLED": True, "SM89_ENABLED": True, "SM90_ENABLED": False}


def test_fallback_without_recorded_import_error():
    got = gate_failures(report(gpu=HOPPER, sm_flags=FLAGS_OFF, extension_errors={}), expect())
    assert got == [
        "sageattention's SM90_ENABLED is False on this compute capability 9.0 GPU: its kernels "
        "silently fall back (no import error recorded)"
    ]


def test_fallback_lists_every_extension_error():
    errors = {
        "sageattention._qattn_sm90": "ImportError: a",
        "sageattention._fused": "ImportError: b",
    }
    (got,) = gate_failures(
        report(gpu=HOPPER, sm_flags=FLAGS_OFF, extension_errors=errors), expect()
    )
    assert got.endswith(
        "(sageattention._qattn_sm90: ImportError: a; sageattention._fused: ImportError: b)"
    )


@pytest.mark.parametrize(
    "gpu",
    [
        {**HOPPER, "available": False},  # flags are not read without a GPU
        {**HOPPER, "capability": "7.5"},  # no sageattention 2.x flag for this arch
        {**HOPPER, "capability": "nine"},  # unreadable capability
    ],
)
def test_flags_matter_only_on_a_gpu_they_describe(gpu):
    assert gate_failures(report(gpu=gpu, sm_flags=FLAGS_OFF), expect()) == []


def test_kernels_named_by_name_and_every_kernel_checked():
    kernels = [
        {"name": "sageattn_qk_int8_pv_fp16_cuda", "status": "error", "error": "x"},
        {"name": "sageattn", "status": "error", "message": "CUDA error: boom", "error": "other"},
    ]
    assert gate_failures(report(kernels=kernels), expect()) == [
        "kernel sageattn fails: CUDA error: boom"
    ]
    ok_then_bad = [
        {"kernel": "sageattn_qk_int8_pv_fp16_cuda", "status": "ok"},
        {"kernel": "sageattn", "status": "ok"},
    ]
    summary = {
        "sageattn_qk_int8_pv_fp16_cuda": {"min_cosine": 0.999, "max_rel_l1": 0.01},
        "sageattn": {"min_cosine": 0.5, "max_rel_l1": 0.01},
    }
    assert gate_failures(report(kernels=ok_then_bad, summary=summary), expect()) == [
        "kernel sageattn: cosine similarity 0.5000 < 0.99"
    ]


def test_describe():
    assert describe({}) == "sageattention -, sageattn3 -, torch -"
    kernels = [{"name": "sageattn", "status": "ok"}, {"kernel": "k2", "status": "error"}]
    assert describe({"kernels": kernels}) == (
        "sageattention -, sageattn3 -, torch -; kernels: sageattn ok, k2 error"
    )
