"""sagefleet.probe: pure decisions, recorded outputs, the real script on this CPU, isolation."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_recommend import no_shapes

from sagefleet import gate, probe

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "sagefleet" / "probe.py"
DATA = Path(__file__).parent / "data" / "probe"
SAMPLES = ROOT / "docs" / "samples"
H100 = SAMPLES / "h100-probe.json"  # sageattention 1.0.6 (PyPI), default profile
# SageAttention 2.2.0 built on the device's H100 from thu-ml/SageAttention (docs/probe.md):
TAG = SAMPLES / "h100-probe-sa220-tag-eb615cf.json"  # the v2.2.0 tag: broken on Hopper
FIX = SAMPLES / "h100-probe-sa220-fix-ff71e1e.json"  # after PR #307: fixed
TAG_LONG = SAMPLES / "h100-probe-long-sa220-tag-eb615cf.json"
FIX_LONG = SAMPLES / "h100-probe-long-sa220-fix-ff71e1e.json"  # with --workload-seq-lens
CRASH = SAMPLES / "h100-probe-crash-isolation.json"  # one kernel's worker killed (test hook)
RECORDED = (H100, TAG, FIX, TAG_LONG, FIX_LONG, CRASH)
SM90 = "sageattn_qk_int8_pv_fp8_cuda_sm90"

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
    "timing",
}
KERNEL_KEYS = TOP_KEYS | {"profile", "kernels", "summary", "thresholds", "recommendation"}


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


def _shape(seq, speedup, cosine=0.9999, rel_l1=0.013, error=None, tops=400.0):
    return {
        "seq_len": seq,
        "head_dim": 128,
        "dtype": "fp16",
        "causal": False,
        "speedup": speedup,
        "cosine": cosine,
        "rel_l1": rel_l1,
        "tops": tops,
        "error": error,
    }


def _load(path):
    return json.loads(Path(path).read_text())


def _args(*argv):
    return probe.build_parser().parse_args(["--mode", "kernels", *argv])


def _recompute(doc, workload=None):
    """summary and recommendation again from the recorded shapes, with the doc's settings."""
    th = doc["thresholds"]
    summary = probe.summarize(doc["kernels"], th["long_seq"], th["min_speedup"])
    version = doc["packages"]["sageattention"]["version"]
    rec = probe.recommend(
        summary,
        doc["gpu"],
        probe.sageattn_dispatch(doc["gpu"]["capability"], version),
        th["min_cosine"],
        th["max_rel_l1"],
        th["min_speedup"],
        th["long_seq"],
        th["workload_seq_lens"] if workload is None else workload,
    )
    return summary, rec


def _expect(**over):
    base = dict(
        wheels={"sageattention": ("2.2.0", None)},
        require_sageattn3=False,
        torch_version=None,
        min_cosine=0.99,
        max_rel_l1=0.1,
    )
    return gate.Expectation(**(base | over))


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


def test_direct_url_source_vcs_commit_and_archive_hash():
    """PEP 610 documents as pip writes them (a VCS install, a wheel file install)."""
    vcs = json.dumps(
        {
            "url": "https://github.com/thu-ml/SageAttention.git",
            "vcs_info": {
                "vcs": "git",
                "commit_id": "ff71e1e7ce086fff8669e7eb116ee77e265dbac1",
                "requested_revision": "ff71e1e",
            },
        }
    )
    assert probe.parse_direct_url_source(vcs) == {
        "vcs": "git",
        "vcs_commit": "ff71e1e7ce086fff8669e7eb116ee77e265dbac1",
        "archive_hash": None,
    }
    archive = '{"url": "file:///w/x.whl", "archive_info": {"hashes": {"sha256": "ab12"}}}'
    assert probe.parse_direct_url_source(archive)["archive_hash"] == "sha256=ab12"
    assert probe.parse_direct_url_source(None) == {
        "vcs": None,
        "vcs_commit": None,
        "archive_hash": None,
    }
    assert probe.parse_direct_url_source('["not", "a", "dict"]')["vcs_commit"] is None


@pytest.mark.parametrize(
    ("path", "counted"),
    [
        ("sageattention/core.py", "sageattention/core.py"),
        (
            "sageattention/_qattn_sm90.cpython-312-x86_64-linux-gnu.so",
            "sageattention/_qattn_sm90.cpython-312-x86_64-linux-gnu.so",
        ),  # fmt: skip
        ("sageattention-2.2.0.dist-info/METADATA", "sageattention-2.2.0.dist-info/METADATA"),
        ("sageattention-2.2.0.dist-info/RECORD", None),
        ("sageattention-2.2.0.dist-info/INSTALLER", None),
        ("sageattention-2.2.0.dist-info/direct_url.json", None),
        ("sageattention/__pycache__/core.cpython-312.pyc", None),
        ("../../bin/sage-tool", None),
        ("sageattention-2.2.0.data/platlib/extra.so", "extra.so"),
        ("sageattention-2.2.0.data/scripts/sage-tool", None),
    ],
)
def test_fingerprinted_paths(path, counted):
    assert probe.fingerprinted_path(path) == counted


def test_fingerprint_digest_is_order_free_and_content_bound():
    a = probe.fingerprint_digest({"x/a.py": "11", "x/b.py": "22"})
    assert a == probe.fingerprint_digest({"x/b.py": "22", "x/a.py": "11"})
    assert a != probe.fingerprint_digest({"x/a.py": "11", "x/b.py": "23"})
    assert a != probe.fingerprint_digest({"x/a.py": "11", "x/c.py": "22"})
    assert a.startswith("sha256:") and len(a) == 7 + 64


def test_peak_ceiling_by_gpu_name():
    assert probe.peak_tops("NVIDIA H100 80GB HBM3")[0] == 1979.0
    assert probe.peak_tops("NVIDIA H100 PCIe")[0] == 1513.0
    assert probe.peak_tops("NVIDIA H100 NVL")[0] == 1671.0
    value, source = probe.peak_tops("NVIDIA H200")
    assert value == 1979.0
    assert "datasheet" in source
    assert probe.peak_tops("NVIDIA GeForce RTX 5090") == (None, None)
    assert probe.peak_tops(None) == (None, None)


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
    assert probe.sageattn_dispatch("9.0", "2.2.0") == SM90
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


def test_kernel_status_from_worker_outcomes():
    ok = [_shape(4096, 1.2)]
    assert probe.kernel_status(ok, 0, False, 1) == ("ok", None)
    assert probe.kernel_status([], None, True, 4) == ("error", "timed out after 0/4 shapes")
    status, err = probe.kernel_status(ok, -11, False, 2)
    assert status == "error"
    assert "code -11 after 1/2" in err
    bad = [_shape(4096, None, error="RuntimeError: CUDA error: illegal memory access")]
    assert probe.kernel_status(bad, 0, False, 1) == ("error", bad[0]["error"])
    assert probe.kernel_status(ok, 0, False, 3)[0] == "error"  # shapes went missing
    assert probe.kernel_status(ok, 0, False, 1, "wrong") == ("inaccurate", "wrong")
    # an error outranks inaccurate: a crash is not a verdict on accuracy
    assert probe.kernel_status(ok, -11, False, 1, "wrong")[0] == "error"


def test_judge_kernel_accuracy_bounds_and_peak():
    good = [_shape(4096, 0.6), _shape(1024, 0.2)]
    assert probe.judge_kernel(good, 0.99, 0.1, 1979.0) is None
    wrong = [_shape(4096, 1.1, cosine=0.0012, rel_l1=38.9), _shape(1024, 0.2)]
    why = probe.judge_kernel(wrong, 0.99, 0.1, 1979.0)
    assert why.startswith("1/2 shapes miss the accuracy bounds")
    assert "worst cosine 0.0012" in why
    assert "38.9" in why
    assert probe.judge_kernel([_shape(4096, 1.0, rel_l1=0.2)], 0.99, 0.1) is not None
    nan = probe.judge_kernel([_shape(4096, 1.0, cosine=None)], 0.99, 0.1)
    assert "worst cosine n/a" in nan
    # accurate on paper, but faster than the GPU can be: did not compute what was timed
    fast = probe.judge_kernel([_shape(32768, 12.1, tops=10121.4)], 0.99, 0.1, 1979.0)
    assert "1/1 shapes report more than the GPU's dense peak (10121 > 1979 TOPS)" in fast
    assert probe.judge_kernel([_shape(32768, 12.1, tops=10121.4)], 0.99, 0.1, None) is None
    assert probe.judge_kernel([_shape(32768, 1.2, tops=1979.0)], 0.99, 0.1, 1979.0) is None


def test_speedup_by_seq_and_crossover():
    shapes = [_shape(8192, 0.9), _shape(8192, 0.92), _shape(16384, 1.1), _shape(32768, 1.2)]
    shapes += [_shape(4096, None), _shape(65536, 9.0, error="OOM")]  # neither counts
    by_seq = probe.speedup_by_seq(shapes)
    assert by_seq == [
        {"seq_len": 8192, "median_speedup": pytest.approx(0.91), "shapes": 2},
        {"seq_len": 16384, "median_speedup": 1.1, "shapes": 1},
        {"seq_len": 32768, "median_speedup": 1.2, "shapes": 1},
    ]
    assert probe.crossover(by_seq) == 16384
    assert probe.crossover(by_seq, min_speedup=1.15) == 32768
    assert probe.crossover(by_seq, min_speedup=1.3) is None

    def rows(*pairs):
        return [{"seq_len": s, "median_speedup": m, "shapes": 1} for s, m in pairs]

    # faster at a short seq only, then slower again: no "from seq >= N"
    assert probe.crossover(rows((1024, 1.5), (4096, 0.9), (16384, 1.2))) == 16384
    assert probe.crossover(rows((1024, 1.5), (4096, 0.9))) is None
    assert probe.crossover(rows((1024, 1.5), (4096, 1.1))) == 1024
    assert probe.crossover([]) is None


def test_summary_fields():
    kernels = [
        {"kernel": "sageattn", "status": "ok", "shapes": [_shape(1024, 0.8), _shape(4096, 1.5)]},
        {"kernel": "sageattn_qk_int8_pv_fp16_triton", "status": "error", "shapes": []},
        {"kernel": "sageattn3_blackwell", "status": "not-installed", "error": "gone", "shapes": []},
    ]
    summary = probe.summarize(kernels)
    entry = summary["sageattn"]
    assert entry["shapes"] == 2
    assert entry["best_speedup"] == 1.5
    assert entry["median_speedup"] == pytest.approx(1.15)
    assert entry["median_speedup_long"] == 1.5
    assert entry["max_tops"] == 400.0
    assert entry["crossover_seq"] == 4096
    assert [r["seq_len"] for r in entry["speedup_by_seq"]] == [1024, 4096]
    assert summary["sageattn3_blackwell"] == no_shapes(
        "not-installed", error="gone", max_tops=None, speedup_by_seq=[], crossover_seq=None
    )


GPU = {"available": True, "capability": "9.0"}


def test_recommendation_names_the_dispatched_kernel_whatever_the_answer():
    fast = probe.summarize([{"kernel": "sageattn", "status": "ok", "shapes": [_shape(4096, 1.5)]}])
    slow = probe.summarize([{"kernel": "sageattn", "status": "ok", "shapes": [_shape(4096, 0.9)]}])
    for summary, use in ((fast, True), (slow, False)):
        rec = probe.recommend(summary, GPU, SM90)
        assert rec["use_sage_attention"] is use
        assert rec["kernel"] == SM90
    assert probe.recommend({}, GPU, SM90)["kernel"] == SM90  # inventory only
    assert probe.recommend(slow, {"available": False, "reason": "x"}, SM90)["kernel"] is None


def test_recommendation_refusals():
    slow = probe.summarize([{"kernel": "sageattn", "status": "ok", "shapes": [_shape(4096, 0.9)]}])
    assert "not > 1.0" in probe.recommend(slow, GPU)["reason"]
    inaccurate = probe.summarize(
        [{"kernel": "sageattn", "status": "ok", "shapes": [_shape(4096, 2.0, cosine=0.37)]}]
    )
    rec = probe.recommend(inaccurate, GPU)
    assert rec["use_sage_attention"] is False
    assert "min cosine 0.3700 < 0.99" in rec["reason"]
    judged = probe.summarize(
        [{"kernel": "sageattn", "status": "inaccurate", "error": "3/4 shapes miss", "shapes": []}]
    )
    rec = probe.recommend(judged, GPU, SM90)
    assert rec["reason"] == "sageattn is inaccurate: 3/4 shapes miss"
    assert rec["crossover_seq"] is None
    nan = probe.summarize(
        [{"kernel": "sageattn", "status": "ok", "shapes": [_shape(4096, 2.0, cosine=None)]}]
    )
    assert probe.recommend(nan, GPU)["use_sage_attention"] is False
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
    rec = probe.recommend(broken, GPU)
    assert rec["use_sage_attention"] is False
    assert "sageattn status error" in rec["reason"]
    assert "sageattn_qk_int8_pv_fp16_cuda would pass" in rec["reason"]
    short = probe.summarize([{"kernel": "sageattn", "status": "ok", "shapes": [_shape(1024, 3)]}])
    assert "no measured shape with seq >= 4096" in probe.recommend(short, GPU)["reason"]
    no_gpu = probe.recommend(slow, {"available": False, "reason": "no driver"})
    assert no_gpu == {"use_sage_attention": False, "kernel": None, "reason": "no GPU: no driver"}
    # thresholds are arguments
    assert probe.recommend(slow, GPU, min_speedup=0.5)["use_sage_attention"] is True


def test_recommendation_against_the_workload_seq_lens():
    shapes = [_shape(4096, 0.6), _shape(8192, 0.9), _shape(16384, 1.13), _shape(32768, 1.22)]
    summary = probe.summarize([{"kernel": "sageattn", "status": "ok", "shapes": shapes}])
    # without a workload: the median over seq >= 4096 (1.015) decides
    assert probe.recommend(summary, GPU, SM90)["use_sage_attention"] is True
    covered = probe.recommend(summary, GPU, SM90, workload_seq_lens=[32768, 16384])
    assert covered["use_sage_attention"] is True
    assert covered["crossover_seq"] == 16384
    assert covered["workload_seq_lens"] == [16384, 32768]
    assert "faster than SDPA from seq >= 16384" in covered["reason"]
    short = probe.recommend(summary, GPU, SM90, workload_seq_lens=[4096, 16384])
    assert short["use_sage_attention"] is False
    assert short["reason"] == (
        "sageattn is faster than SDPA only from seq >= 16384, the workload's shortest seq is 4096"
    )
    slow = probe.summarize(
        [{"kernel": "sageattn", "status": "ok", "shapes": [_shape(1024, 0.2), _shape(4096, 0.6)]}]
    )
    beyond = probe.recommend(slow, GPU, SM90, workload_seq_lens=[16384])
    assert beyond["use_sage_attention"] is False
    assert "not faster than SDPA at any measured seq (up to 4096)" in beyond["reason"]
    assert "measure --profile long" in beyond["reason"]


def test_profiles_and_kernel_plans():
    default = probe.plan_shapes(_args())
    assert len(default) == 16
    assert {s["seq_len"] for s in default} == {1024, 4096}
    assert {(s["batch"], s["heads"]) for s in default} == {(2, 16)}
    quick = probe.plan_shapes(_args("--quick"))
    assert len(quick) == 4
    assert {s["seq_len"] for s in quick} == {4096}
    long = probe.plan_shapes(_args("--profile", "long"))
    assert len(long) == 12
    assert {s["seq_len"] for s in long} == {8192, 16384, 32768}
    assert {s["head_dim"] for s in long} == {128}
    assert {s["dtype"] for s in long} == {"fp16", "bf16"}
    assert {s["causal"] for s in long} == {False, True}
    assert {s["seq_len"] for s in probe.plan_shapes(_args("--seq-lens", "2048"))} == {2048}
    # the workload's seq lens are measured too (and --seq-lens still overrides all)
    workload = probe.plan_shapes(_args("--quick", "--workload-seq-lens", "16384", "4096"))
    assert sorted({s["seq_len"] for s in workload}) == [4096, 16384]
    assert len(workload) == 8
    both = _args("--seq-lens", "2048", "--workload-seq-lens", "16384")
    assert {s["seq_len"] for s in probe.plan_shapes(both)} == {2048}
    # default profile: sageattn (the one that decides) on all, explicit kernels fp16 only
    args = _args()
    assert probe.kernel_plan("sageattn", default, args) == list(range(16))
    plan = probe.kernel_plan(SM90, default, args)
    assert len(plan) == 8
    assert {default[i]["dtype"] for i in plan} == {"fp16"}
    assert probe.kernel_plan(SM90, default, _args("--all-dtypes")) == list(range(16))
    assert probe.kernel_plan(SM90, long, _args("--profile", "long")) == list(range(12))


# ---------------------------------------------------------------------- recorded outputs


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.name)
def test_recorded_sample_recomputes(path):
    """What the probe wrote on the H100 is what summarize/recommend give from its shapes."""
    doc = _load(path)
    assert set(doc) == KERNEL_KEYS
    assert doc["schema"] == probe.SCHEMA
    assert doc["gpu"]["name"] == "NVIDIA H100 80GB HBM3"
    assert doc["gpu"]["capability"] == "9.0"
    assert doc["thresholds"]["max_tops"] == probe.peak_tops(doc["gpu"]["name"])[0]
    summary, rec = _recompute(doc)
    assert summary == doc["summary"]
    assert rec == doc["recommendation"]
    # recommendation.kernel names what sageattn dispatches to, whatever the answer
    expected = "sageattn" if doc["packages"]["sageattention"]["version"] == "1.0.6" else SM90
    assert doc["recommendation"]["kernel"] == expected
    # statuses follow from the recorded rows: judged again with the recorded thresholds
    th = doc["thresholds"]
    for k in doc["kernels"]:
        if k["status"] in ("ok", "inaccurate"):
            judged = probe.judge_kernel(
                k["shapes"], th["min_cosine"], th["max_rel_l1"], th["max_tops"]
            )
            assert (k["status"] == "inaccurate") is (judged is not None), k["kernel"]
            assert k["error"] == judged


def test_broken_v220_tag_is_inaccurate_gate_failed_keep_sdpa():
    doc = _load(TAG)
    status = {k["kernel"]: k["status"] for k in doc["kernels"]}
    assert status["sageattn"] == "inaccurate"
    assert status[SM90] == "inaccurate"
    assert status["sageattn_qk_int8_pv_fp16_triton"] == "ok"  # the other kernels are fine
    entry = doc["summary"]["sageattn"]
    assert entry["min_cosine"] < 0.01
    assert entry["max_rel_l1"] > 10
    rec = doc["recommendation"]
    assert rec["use_sage_attention"] is False
    assert rec["reason"].startswith("sageattn is inaccurate: 16/16 shapes miss the accuracy")
    assert rec["crossover_seq"] is None  # a broken kernel's speed means nothing
    failures = gate.gate_failures(doc, _expect())
    assert any(f.startswith("kernel sageattn is inaccurate: 16/16 shapes") for f in failures)
    assert any(f.startswith(f"kernel {SM90} is inaccurate") for f in failures)


def test_broken_tag_long_profile_is_faster_than_the_gpu_can_be():
    doc = _load(TAG_LONG)
    entry = doc["summary"]["sageattn"]
    assert entry["max_tops"] > 5 * doc["thresholds"]["max_tops"]
    sage = next(k for k in doc["kernels"] if k["kernel"] == "sageattn")
    assert sage["status"] == "inaccurate"
    assert "more than the GPU's dense peak" in sage["error"]
    # the ceiling alone (accuracy bounds switched off) still calls it inaccurate
    alone = probe.judge_kernel(sage["shapes"], -1.0, math.inf, doc["thresholds"]["max_tops"])
    assert alone.startswith("10/12 shapes report more than the GPU's dense peak")
    # and its "speedup" would have passed any speed rule
    assert entry["median_speedup_long"] > 2


def test_fixed_build_is_ok_gate_passes_and_keeps_sdpa_at_default_shapes():
    doc = _load(FIX)
    status = {k["kernel"]: k["status"] for k in doc["kernels"]}
    assert status["sageattn"] == "ok"
    assert status[SM90] == "ok"
    assert gate.gate_failures(doc, _expect()) == []
    rec = doc["recommendation"]
    assert rec["use_sage_attention"] is False  # slower than SDPA at seq <= 4096 on the H100
    assert "not faster than SDPA at any measured seq" in rec["reason"]
    assert doc["summary"]["sageattn"]["min_cosine"] > 0.999


def test_fixed_build_long_profile_crossover_and_workload():
    doc = _load(FIX_LONG)
    assert doc["profile"] == "long"
    rec = doc["recommendation"]
    assert rec["use_sage_attention"] is True
    assert rec["kernel"] == SM90
    assert rec["crossover_seq"] == 16384
    assert rec["workload_seq_lens"] == [16384, 32768]
    by_seq = {
        r["seq_len"]: r["median_speedup"] for r in doc["summary"]["sageattn"]["speedup_by_seq"]
    }
    assert by_seq[8192] < 1 < by_seq[16384] < by_seq[32768]
    # a fleet whose workloads run at seq 8192 keeps SDPA on this host
    _, at_8k = _recompute(doc, workload=[8192, 32768])
    assert at_8k["use_sage_attention"] is False
    assert "only from seq >= 16384, the workload's shortest seq is 8192" in at_8k["reason"]


def test_fingerprint_tells_the_tag_from_the_fix():
    tag, fix = _load(TAG), _load(FIX)
    t, f = tag["packages"]["sageattention"], fix["packages"]["sageattention"]
    assert (t["version"], t["build_tag"]) == (f["version"], f["build_tag"]) == ("2.2.0", None)
    assert t["fingerprint"]["digest"] != f["fingerprint"]["digest"]
    for pkg in (t, f):
        assert pkg["fingerprint"]["files"] > 20
        assert pkg["fingerprint"]["modified"] == pkg["fingerprint"]["missing"] == 0
    assert tag["packages"]["torch"]["fingerprint"] is None  # only the fleet's wheels
    pinned = _expect(fingerprints={"sageattention": f["fingerprint"]["digest"]})
    assert gate.gate_failures(fix, pinned) == []
    other = [x for x in gate.gate_failures(tag, pinned) if "another build" in x]
    assert other == [
        f"sageattention 2.2.0 is another build than pinned: fingerprint "
        f"{t['fingerprint']['digest']} in the image, pinned {f['fingerprint']['digest']}"
    ]
    old = dict(fix, packages={"sageattention": {"version": "2.2.0", "build_tag": None}})
    assert "the probe reports none" in gate.gate_failures(old, pinned)[0]


def test_recorded_crash_lost_only_that_kernel():
    doc = _load(CRASH)
    status = {k["kernel"]: k for k in doc["kernels"]}
    crashed = status["sageattn_qk_int8_pv_fp16_cuda"]
    assert crashed["status"] == "error"
    assert crashed["error"] == "worker exited with code 1 after 0/4 shapes"
    for name in ("sageattn", "sageattn_qk_int8_pv_fp16_triton", "sageattn_qk_int8_pv_fp8_cuda"):
        assert status[name]["status"] == "ok"
    assert doc["timing"]["workers"] == 2


# ------------------------------------------------------------- the real script, this CPU


def _run(*args, stdin=None, env=None):
    cmd = [sys.executable, *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def _no_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return
    pytest.skip("torch is installed here; this test is about its absence")


def test_inventory_without_torch():
    _no_torch()
    doc, _ = _run(str(PROBE), "--mode", "inventory")
    assert set(doc) == TOP_KEYS
    assert doc["gpu"]["available"] is False
    assert "torch" in doc["gpu"]["reason"]
    assert doc["torch_cuda"] is None
    assert set(doc["functions"]) == set(probe.KERNELS)
    assert not any(doc["functions"].values())
    assert doc["sm_flags"] == dict.fromkeys(probe.SM_FLAGS)
    assert doc["timing"]["workers"] == 0


def test_kernels_from_stdin_without_torch_reports_no_gpu():
    _no_torch()
    doc, stderr = _run("-", "--mode", "kernels", "--quick", stdin=PROBE.read_text())
    assert set(doc) == KERNEL_KEYS
    assert [k["status"] for k in doc["kernels"]] == ["no-gpu"] * len(probe.KERNELS)
    assert doc["recommendation"]["use_sage_attention"] is False
    assert doc["recommendation"]["reason"].startswith("no GPU")
    assert doc["timing"]["workers"] == 0
    assert "Traceback" not in stderr


def test_recorded_cpu_output_matches_schema():
    for name in ("cpu-no-torch-kernels.json", "cpu-no-torch-inventory.json"):
        doc = json.loads((DATA / name).read_text())
        assert doc["schema"] == probe.SCHEMA
        assert doc["gpu"]["available"] is False


def _stand_in_wheel(tmp_path, name="sageattention", body="def sageattn():\n    return 1\n"):
    """A tiny wheel written for this test (a stand-in for a built SageAttention wheel)."""
    import base64
    import hashlib
    import zipfile

    files = {
        f"{name}/__init__.py": body,
        f"{name}/core.py": "SM90_ENABLED = False\n",
        f"{name}-2.2.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 2.2.0\n",
        f"{name}-2.2.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{name}-2.2.0.dist-info/top_level.txt": f"{name}\n",
    }  # fmt: skip
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{name}-2.2.0.dist-info/RECORD,,")
    files[f"{name}-2.2.0.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = tmp_path / f"{name}-2.2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def _pip_install(wheel, target):
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    cmd += ["--target", str(target), str(wheel)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def test_fingerprint_of_an_installed_wheel_equals_the_wheel_files(tmp_path):
    """Real pip install, real probe run: the digest the image reports is the one computed
    from the wheel file on the control side; a changed file changes it and is counted."""
    wheel = _stand_in_wheel(tmp_path)
    target = tmp_path / "site"
    _pip_install(wheel, target)
    env = dict(os.environ, PYTHONPATH=str(target))
    doc, _ = _run(str(PROBE), "--mode", "inventory", env=env)
    fp = doc["packages"]["sageattention"]["fingerprint"]
    assert fp["digest"] == probe.wheel_fingerprint(str(wheel))
    assert fp["files"] == 5  # RECORD, INSTALLER, REQUESTED, direct_url.json left out
    assert fp["modified"] == fp["missing"] == 0
    assert fp["archive_hash"].startswith("sha256=")  # pip's direct_url.json of a file install
    assert doc["packages"]["sageattention"]["source_url"].startswith("file://")

    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = _stand_in_wheel(other_dir, body="x = 2\n")
    assert probe.wheel_fingerprint(str(other)) != fp["digest"]

    (target / "sageattention" / "core.py").write_text("SM90_ENABLED = True\n")
    changed, _ = _run(str(PROBE), "--mode", "inventory", env=env)
    fp2 = changed["packages"]["sageattention"]["fingerprint"]
    assert fp2["digest"] != fp["digest"]
    assert fp2["modified"] == 1


def test_fingerprint_carries_the_vcs_commit(tmp_path):
    """An install from a VCS URL: pip records the commit in direct_url.json (written here as
    pip writes it, PEP 610, since no repository can be reached from this machine)."""
    wheel = _stand_in_wheel(tmp_path)
    target = tmp_path / "site"
    _pip_install(wheel, target)
    direct = target / "sageattention-2.2.0.dist-info" / "direct_url.json"
    commit = "ff71e1e7ce086fff8669e7eb116ee77e265dbac1"
    direct.write_text(
        json.dumps(
            {
                "url": "https://github.com/thu-ml/SageAttention.git",
                "vcs_info": {"vcs": "git", "commit_id": commit},
            }
        )
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    doc, _ = _run(str(PROBE), "--mode", "inventory", env=env)
    fp = doc["packages"]["sageattention"]["fingerprint"]
    assert fp["vcs_commit"] == commit
    assert fp["vcs"] == "git"
    assert fp["digest"] == probe.wheel_fingerprint(str(wheel))  # installer files do not count


# ------------------------------------------------------------------------- isolation


def test_one_worker_runs_the_kernels_and_a_fault_loses_only_that_kernel():
    """Each fault in turn inside the worker: the parent replaces a worker that died or hung
    and the kernels after it are still measured."""
    faults = {
        "k-ok": "fake-ok",
        "k-crash": "crash",
        "k-ok2": "fake-ok",
        "k-hang": "hang",
        "k-raise": "raise",
        "k-garbage": "fake-garbage",
    }
    env_before = os.environ.get(probe.FAULT_ENV)
    os.environ[probe.FAULT_ENV] = json.dumps(faults)
    try:
        args = _args("--quick", "--timeout", "5", "--max-tops", "1979")
        args.kernels = list(faults)
        stats = {}
        results = {r["kernel"]: r for r in probe.measure_kernels({}, args, stats)}
    finally:
        if env_before is None:
            del os.environ[probe.FAULT_ENV]
        else:
            os.environ[probe.FAULT_ENV] = env_before
    assert list(results) == list(faults)
    assert results["k-ok"]["status"] == "ok"
    assert len(results["k-ok"]["shapes"]) == 4
    assert results["k-crash"] == {
        "kernel": "k-crash",
        "status": "error",
        "error": "worker exited with code 1 after 0/4 shapes",
        "seconds": results["k-crash"]["seconds"],
        "shapes": [],
    }
    assert results["k-ok2"]["status"] == "ok"  # measured by the replacement worker
    assert results["k-hang"]["status"] == "error"
    assert results["k-hang"]["error"] == "timed out after 0/4 shapes"
    assert results["k-raise"]["status"] == "error"  # raised in the kernel: the worker lives on
    assert results["k-raise"]["error"] == "RuntimeError: injected failure"
    garbage = results["k-garbage"]
    assert garbage["status"] == "inaccurate"
    assert "4/4 shapes miss the accuracy bounds" in garbage["error"]
    assert "more than the GPU's dense peak (4400 > 1979 TOPS)" in garbage["error"]
    assert stats["workers"] == 3  # the first, one after the crash, one after the hang


def test_a_worker_whose_cuda_is_unusable_retires_and_a_fresh_one_goes_on(monkeypatch):
    faults = {"k-poison": "poison", "k-after": "fake-ok"}
    monkeypatch.setenv(probe.FAULT_ENV, json.dumps(faults))
    args = _args("--quick", "--timeout", "20")
    args.kernels = list(faults)
    stats = {}
    results = {r["kernel"]: r for r in probe.measure_kernels({}, args, stats)}
    assert results["k-poison"]["status"] == "ok"  # its shapes were measured before it retired
    assert len(results["k-poison"]["shapes"]) == 4
    assert results["k-after"]["status"] == "ok"
    assert stats["workers"] == 2


def test_measure_kernels_with_a_gpu_pretended(monkeypatch):
    """The parent loop with a GPU pretended: prechecks, a prewarmed worker, per-kernel plans."""
    monkeypatch.setenv(
        probe.FAULT_ENV,
        json.dumps({"sageattn": "crash", "sageattn_qk_int8_pv_fp16_triton": "fake-ok"}),
    )
    functions = dict.fromkeys(probe.KERNELS, False)
    functions["sageattn"] = functions["sageattn_qk_int8_pv_fp16_triton"] = True
    args = _args("--timeout", "20")
    worker = probe.Worker()
    stats = {}
    results = probe.measure_kernels(_inv("9.0", "2.2.0", functions), args, stats, worker)
    results = {r["kernel"]: r for r in results}
    assert worker.proc.poll() is not None  # used and closed
    assert results["sageattn"]["status"] == "error"
    triton = results["sageattn_qk_int8_pv_fp16_triton"]
    assert triton["status"] == "ok"
    assert len(triton["shapes"]) == 8  # default profile: explicit kernels fp16 only
    assert results["sageattn3_blackwell"]["status"] == "not-installed"
    assert stats["workers"] == 2


def test_a_prewarmed_worker_with_nothing_to_do_is_ended():
    worker = probe.Worker()
    results = probe.measure_kernels(_inv(available=False), _args(), {}, worker)
    assert {r["status"] for r in results} == {"no-gpu"}
    assert worker.proc.poll() is not None
