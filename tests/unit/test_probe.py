"""sagefleet.probe: pure decisions, recorded outputs, the real script on this CPU, isolation."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from sagefleet import probe

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "sagefleet" / "probe.py"
DATA = Path(__file__).parent / "data" / "probe"
H100 = ROOT / "docs" / "samples" / "h100-probe.json"

TOP_KEYS = {
    "schema",
    "python",
    "packages",
    "torch_cuda",
    "functions",
    "import_errors",
    "sm_flags",
    "extension_errors",
    "gpu",
    "mode",
}
KERNEL_KEYS = TOP_KEYS | {"kernels", "summary", "thresholds", "recommendation"}


def _inv(capability="9.0", version="2.2.0", functions=None, available=True):
    gpu = {"available": True, "name": "GPU", "capability": capability, "count": 1}
    if not available:
        gpu = {"available": False, "reason": "torch is not importable"}
    return {
        "gpu": gpu,
        "packages": {"sageattention": {"version": version}},
        "functions": functions if functions is not None else dict.fromkeys(probe.KERNELS, True),
        "import_errors": {"sageattention": None, "sageattn3": "ModuleNotFoundError: x"},
    }


def _shape(seq, speedup, cosine=0.9999, rel_l1=0.013, error=None):
    return {
        "seq_len": seq,
        "head_dim": 128,
        "dtype": "fp16",
        "causal": False,
        "speedup": speedup,
        "cosine": cosine,
        "rel_l1": rel_l1,
        "error": error,
    }


# ------------------------------------------------------------------------ pure functions


def test_accuracy_identical_and_opposite():
    same = probe.compare([1.0, -2.0, 3.0], [1.0, -2.0, 3.0])
    assert same == {"cosine": pytest.approx(1.0), "rel_l1": 0.0, "max_abs": 0.0}
    opp = probe.compare([-1.0, 2.0], [1.0, -2.0])
    assert opp["cosine"] == pytest.approx(-1.0)
    assert opp["rel_l1"] == pytest.approx(2.0)
    assert opp["max_abs"] == pytest.approx(4.0)


def test_accuracy_degenerate_values_never_nan():
    zeros = probe.accuracy_from_sums(0, 0, 0, 0, 0, 0)
    assert zeros == {"cosine": 1.0, "rel_l1": 0.0, "max_abs": 0.0}
    nan = probe.accuracy_from_sums(math.nan, 1, 1, math.nan, 1, math.nan)
    assert nan == {"cosine": None, "rel_l1": None, "max_abs": None}
    assert probe.accuracy_from_sums(0, 1, 0, 1, 0, 1)["rel_l1"] is None  # inf -> None


def test_throughput_and_speedup():
    flops = probe.attention_flops(2, 16, 4096, 128, causal=False)
    assert flops == 4 * 2 * 16 * 4096 * 4096 * 128
    assert probe.attention_flops(2, 16, 4096, 128, causal=True) == flops / 2
    assert probe.tops(1e12, 0.5) == pytest.approx(2.0)
    assert probe.tops(1e12, 0) is None
    assert probe.speedup(2.0, 1.0) == 2.0
    assert probe.speedup(None, 1.0) is None


def test_wheel_metadata_parsers():
    wheel = "Wheel-Version: 1.0\nGenerator: bdist_wheel\nBuild: 1cu128torch2.7\nTag: cp312"
    assert probe.parse_wheel_build_tag(wheel) == "1cu128torch2.7"
    assert probe.parse_wheel_build_tag("Wheel-Version: 1.0\n") is None
    assert probe.parse_wheel_build_tag(None) is None
    assert probe.parse_direct_url('{"url": "file:///w/x.whl", "archive_info": {}}') == (
        "file:///w/x.whl"
    )
    assert probe.parse_direct_url("not json") is None


@pytest.mark.parametrize(
    ("kernel", "cc", "version", "expected"),
    [
        ("sageattn", "9.0", "1.0.6", True),
        ("sageattn", "7.5", "1.0.6", False),
        ("sageattn", "10.0", "2.2.0", False),  # 2.x dispatch raises on sm100
        ("sageattn_qk_int8_pv_fp8_cuda_sm90", "9.0", "2.2.0", True),
        ("sageattn_qk_int8_pv_fp8_cuda_sm90", "8.9", "2.2.0", False),
        ("sageattn_qk_int8_pv_fp8_cuda", "8.0", "2.2.0", False),
        ("sageattn3_blackwell", "12.0", None, True),
        ("sageattn3_blackwell", "9.0", None, False),
    ],
)
def test_supported_arch(kernel, cc, version, expected):
    assert probe.supported_arch(kernel, cc, version) is expected


def test_dispatch():
    assert probe.sageattn_dispatch("9.0", "2.2.0") == "sageattn_qk_int8_pv_fp8_cuda_sm90"
    assert probe.sageattn_dispatch("9.0", "1.0.6") == "sageattn"
    assert probe.sageattn_dispatch(None, "2.2.0") is None


def test_precheck_each_skip_status():
    assert probe.precheck("sageattn", _inv(available=False))[0] == "no-gpu"
    missing = _inv(functions=dict.fromkeys(probe.KERNELS, False))
    status, reason = probe.precheck("sageattn3_blackwell", missing)
    assert status == "not-installed"
    assert "ModuleNotFoundError" in reason
    assert probe.precheck("sageattn_qk_int8_pv_fp8_cuda_sm90", _inv("8.9"))[0] == (
        "unsupported-arch"
    )
    assert probe.precheck("sageattn", _inv("9.0")) is None  # must be measured


def test_kernel_status_from_child_outcomes():
    ok = [_shape(4096, 1.2)]
    assert probe.kernel_status(ok, 0, False, 1) == ("ok", None)
    assert probe.kernel_status([], None, True, 4) == ("error", "timed out after 0/4 shapes")
    status, err = probe.kernel_status(ok, -11, False, 2)
    assert status == "error"
    assert "code -11 after 1/2" in err
    bad = [_shape(4096, None, error="RuntimeError: CUDA error: illegal memory access")]
    assert probe.kernel_status(bad, 0, False, 1) == ("error", bad[0]["error"])
    assert probe.kernel_status(ok, 0, False, 3)[0] == "error"  # shapes went missing


def test_summary_and_recommendation_each_status():
    kernels = [
        {"kernel": "sageattn", "status": "ok", "shapes": [_shape(1024, 0.8), _shape(4096, 1.5)]},
        {"kernel": "sageattn_qk_int8_pv_fp16_triton", "status": "error", "shapes": []},
        {"kernel": "sageattn_qk_int8_pv_fp8_cuda", "status": "unsupported-arch", "shapes": []},
        {"kernel": "sageattn3_blackwell", "status": "not-installed", "shapes": []},
    ]
    summary = probe.summarize(kernels)
    entry = summary["sageattn"]
    assert entry["shapes"] == 2
    assert entry["best_speedup"] == 1.5
    assert entry["median_speedup"] == pytest.approx(1.15)
    assert entry["median_speedup_long"] == 1.5
    assert summary["sageattn3_blackwell"] == {
        "status": "not-installed",
        "shapes": 0,
        "best_speedup": None,
        "median_speedup": None,
        "median_speedup_long": None,
        "min_cosine": None,
        "max_rel_l1": None,
    }
    gpu = {"available": True, "capability": "9.0"}
    rec = probe.recommend(summary, gpu, "sageattn_qk_int8_pv_fp8_cuda_sm90")
    assert rec["use_sage_attention"] is True
    assert rec["kernel"] == "sageattn_qk_int8_pv_fp8_cuda_sm90"


def test_recommendation_refusals():
    gpu = {"available": True, "capability": "9.0"}
    slow = probe.summarize([{"kernel": "sageattn", "status": "ok", "shapes": [_shape(4096, 0.9)]}])
    assert "not > 1.0" in probe.recommend(slow, gpu)["reason"]
    inaccurate = probe.summarize(
        [{"kernel": "sageattn", "status": "ok", "shapes": [_shape(4096, 2.0, cosine=0.37)]}]
    )
    rec = probe.recommend(inaccurate, gpu)
    assert rec["use_sage_attention"] is False
    assert "min cosine 0.3700 < 0.99" in rec["reason"]
    nan = probe.summarize(
        [{"kernel": "sageattn", "status": "ok", "shapes": [_shape(4096, 2.0, cosine=None)]}]
    )
    assert probe.recommend(nan, gpu)["use_sage_attention"] is False
    broken = probe.summarize(
        [
            {"kernel": "sageattn", "status": "error", "shapes": []},
            {
                "kernel": "sageattn_qk_int8_pv_fp16_cuda",
                "status": "ok",
                "shapes": [_shape(4096, 2)],
            },
        ]
    )
    rec = probe.recommend(broken, gpu)
    assert rec["use_sage_attention"] is False
    assert "sageattn status error" in rec["reason"]
    assert "sageattn_qk_int8_pv_fp16_cuda would pass" in rec["reason"]
    short = probe.summarize([{"kernel": "sageattn", "status": "ok", "shapes": [_shape(1024, 3)]}])
    assert "no measured shape with seq >= 4096" in probe.recommend(short, gpu)["reason"]
    no_gpu = probe.recommend(slow, {"available": False, "reason": "no driver"})
    assert no_gpu == {"use_sage_attention": False, "kernel": None, "reason": "no GPU: no driver"}
    # thresholds are arguments
    assert probe.recommend(slow, gpu, min_speedup=0.5)["use_sage_attention"] is True


def test_plan_shapes_default_and_quick():
    args = probe.build_parser().parse_args(["--mode", "kernels"])
    shapes = probe.plan_shapes(args)
    assert len(shapes) == 16
    assert {s["seq_len"] for s in shapes} == {1024, 4096}
    assert {(s["batch"], s["heads"]) for s in shapes} == {(2, 16)}
    quick = probe.plan_shapes(probe.build_parser().parse_args(["--quick"]))
    assert len(quick) == 4
    assert {s["seq_len"] for s in quick} == {4096}


# ---------------------------------------------------------------------- recorded outputs


def test_h100_sample_is_consistent():
    doc = json.loads(H100.read_text())
    assert set(doc) == KERNEL_KEYS
    assert doc["gpu"]["capability"] == "9.0"
    statuses = {k["kernel"]: k["status"] for k in doc["kernels"]}
    assert statuses["sageattn"] == "ok"
    assert statuses["sageattn3_blackwell"] == "not-installed"
    # recomputing from the recorded shapes gives what the probe wrote in the image
    assert probe.summarize(doc["kernels"]) == doc["summary"]
    version = doc["packages"]["sageattention"]["version"]
    again = probe.recommend(
        doc["summary"], doc["gpu"], probe.sageattn_dispatch(doc["gpu"]["capability"], version)
    )
    assert again == doc["recommendation"]


# ------------------------------------------------------------- the real script, this CPU


def _run(*args, stdin=None):
    cmd = [sys.executable, *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def test_inventory_without_torch():
    try:
        import torch  # noqa: F401

        pytest.skip("torch is installed here; this test is about its absence")
    except ImportError:
        pass
    doc, _ = _run(str(PROBE), "--mode", "inventory")
    assert set(doc) == TOP_KEYS
    assert doc["gpu"]["available"] is False
    assert "torch" in doc["gpu"]["reason"]
    assert doc["torch_cuda"] is None
    assert set(doc["functions"]) == set(probe.KERNELS)
    assert not any(doc["functions"].values())
    assert doc["sm_flags"] == dict.fromkeys(probe.SM_FLAGS)


def test_kernels_from_stdin_without_torch_reports_no_gpu():
    try:
        import torch  # noqa: F401

        pytest.skip("torch is installed here")
    except ImportError:
        pass
    doc, stderr = _run("-", "--mode", "kernels", "--quick", stdin=PROBE.read_text())
    assert set(doc) == KERNEL_KEYS
    assert [k["status"] for k in doc["kernels"]] == ["no-gpu"] * len(probe.KERNELS)
    assert doc["recommendation"]["use_sage_attention"] is False
    assert doc["recommendation"]["reason"].startswith("no GPU")
    assert "Traceback" not in stderr


def test_recorded_cpu_output_matches_schema():
    for name in ("cpu-no-torch-kernels.json", "cpu-no-torch-inventory.json"):
        doc = json.loads((DATA / name).read_text())
        assert doc["schema"] == probe.SCHEMA
        assert doc["gpu"]["available"] is False


# ------------------------------------------------------------------------- isolation


def test_crash_and_hang_in_one_kernel_do_not_lose_the_others(monkeypatch):
    faults = {"k-crash": "crash", "k-hang": "hang", "k-raise": "raise", "k-ok": "fake-ok"}
    monkeypatch.setenv(probe.FAULT_ENV, json.dumps(faults))
    args = probe.build_parser().parse_args(["--mode", "kernels", "--quick"])
    shapes = probe.plan_shapes(args)
    results = {k: probe.run_isolated(k, shapes, args, timeout=5) for k in faults}
    assert results["k-crash"]["status"] == "error"
    assert "exited with code 1" in results["k-crash"]["error"]
    assert results["k-hang"]["status"] == "error"
    assert results["k-hang"]["error"].startswith("timed out")
    assert results["k-raise"]["status"] == "error"
    assert "RuntimeError: injected failure" in results["k-raise"]["error"]
    assert results["k-ok"]["status"] == "ok"
    assert len(results["k-ok"]["shapes"]) == len(shapes)
    summary = probe.summarize(list(results.values()))
    assert summary["k-ok"]["shapes"] == len(shapes)
    assert summary["k-crash"]["shapes"] == 0


def test_measure_kernels_isolates_each_kernel(monkeypatch):
    """The parent loop with a GPU pretended: sageattn crashes, the Triton kernel reports."""
    monkeypatch.setenv(
        probe.FAULT_ENV,
        json.dumps({"sageattn": "crash", "sageattn_qk_int8_pv_fp16_triton": "fake-ok"}),
    )
    functions = dict.fromkeys(probe.KERNELS, False)
    functions["sageattn"] = functions["sageattn_qk_int8_pv_fp16_triton"] = True
    args = probe.build_parser().parse_args(["--mode", "kernels", "--quick", "--timeout", "20"])
    results = {r["kernel"]: r for r in probe.measure_kernels(_inv("9.0", "2.2.0", functions), args)}
    assert results["sageattn"]["status"] == "error"
    assert results["sageattn_qk_int8_pv_fp16_triton"]["status"] == "ok"
    assert results["sageattn3_blackwell"]["status"] == "not-installed"
