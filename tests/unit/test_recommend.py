"""probe.summarize / probe.recommend / probe.sageattn_dispatch: every decision at its
boundary, with the exact reason an operator reads (the report and the service's
--use-sage-attention both follow these)."""

from __future__ import annotations

import math

import pytest

from sagefleet import probe

GPU = {"available": True, "capability": "9.0"}
SUMMARY_KEYS = dict.fromkeys(
    ["status", "shapes", "best_speedup", "median_speedup", "median_speedup_long",
     "min_cosine", "max_rel_l1"]
)  # fmt: skip


def shape(seq, speedup, cosine=0.9999, rel_l1=0.013, error=None):
    return {"seq_len": seq, "speedup": speedup, "cosine": cosine, "rel_l1": rel_l1, "error": error}


def entry(**kw):
    base = {
        "status": "ok",
        "shapes": 1,
        "best_speedup": 2.0,
        "median_speedup": 2.0,
        "median_speedup_long": 2.0,
        "min_cosine": 0.999,
        "max_rel_l1": 0.05,
    }
    return {**base, **kw}


def rec(summary, **kw):
    return probe.recommend(summary, GPU, **kw)


def decision(got: dict, reason_start: str | None = None) -> tuple:
    """(use, kernel) and whether the reason starts with the expected words: the decision
    and its first clause are this module's; the probe may append context (crossover)."""
    ok = reason_start is None or got["reason"].startswith(reason_start)
    assert ok, got["reason"]
    return got["use_sage_attention"], got["kernel"]


def subset(got: dict, want: dict) -> dict:
    return {k: got[k] for k in want}


def no_shapes(status: str, **extra) -> dict:
    """summarize's entry for a kernel without a usable shape: no count, every figure None."""
    return {**SUMMARY_KEYS, "status": status, "shapes": 0, **extra}


# --------------------------------------------------------------------------- summarize


def test_summarize_counts_only_shapes_without_error_and_long_from_long_seq():
    kernels = [
        {
            "kernel": "k",
            "status": "ok",
            "shapes": [
                shape(1024, 0.5, cosine=0.98, rel_l1=0.02),
                shape(4095, 3.0),
                shape(4096, 1.2, cosine=0.995, rel_l1=0.04),
                shape(8192, 1.6),
                shape(8192, 9.0, cosine=0.1, rel_l1=5.0, error="CUDA error"),
                shape(16384, None),
            ],
        }
    ]
    got = probe.summarize(kernels)["k"]
    assert subset(got, SUMMARY_KEYS) == {
        "status": "ok",
        "shapes": 5,
        "best_speedup": 3.0,
        "median_speedup": pytest.approx(1.4),
        "median_speedup_long": pytest.approx(1.4),  # 4096 and 8192: seq >= long_seq
        "min_cosine": 0.98,
        "max_rel_l1": 0.04,
    }
    assert probe.summarize(kernels, long_seq=8192)["k"]["median_speedup_long"] == 1.6
    assert probe.summarize(kernels, long_seq=16385)["k"]["median_speedup_long"] is None


def test_summarize_missing_accuracy_fails_any_bound():
    kernels = [{"kernel": "k", "status": "ok", "shapes": [shape(4096, 2.0, None, None)]}]
    got = probe.summarize(kernels)["k"]
    assert got["min_cosine"] == 0.0 and got["max_rel_l1"] is None


def test_summarize_infinite_rel_l1_is_null_and_nan_speedup_stays():
    kernels = [{"kernel": "k", "status": "ok", "shapes": [shape(4096, 2.0, rel_l1=math.inf)]}]
    assert probe.summarize(kernels)["k"]["max_rel_l1"] is None
    assert probe._finite(None) is None and probe._finite("2.5") == 2.5
    assert probe._finite(math.nan) is None and probe._finite(-math.inf) is None


def test_summarize_no_shapes():
    got = probe.summarize([{"kernel": "k", "status": "error"}])["k"]
    assert subset(got, SUMMARY_KEYS) == no_shapes("error")


# --------------------------------------------------------------------------- recommend


def test_recommend_passes_with_the_dispatched_kernel_and_exact_reason():
    summary = {"sageattn": entry(median_speedup_long=1.25, min_cosine=0.99912)}
    got = probe.recommend(summary, GPU, "sageattn_qk_int8_pv_fp8_cuda_sm90")
    assert decision(got, "sageattn median 1.25x vs SDPA at seq >= 4096") == (
        True,
        "sageattn_qk_int8_pv_fp8_cuda_sm90",
    )
    assert got["reason"].endswith(", min cosine 0.9991")
    assert rec(summary)["kernel"] == "sageattn"  # no dispatch known: the entry point
    assert probe.recommend(summary, None)["use_sage_attention"] is True  # GPU not described


@pytest.mark.parametrize(
    "changes, kwargs, reason",
    [
        ({"median_speedup_long": 1.0}, {}, "sageattn median speedup 1.00x at seq >= 4096 is not > 1.0"),
        ({"median_speedup_long": 1.5}, {"min_speedup": 1.5, "long_seq": 8192},
         "sageattn median speedup 1.50x at seq >= 8192 is not > 1.5"),
        ({"median_speedup_long": None}, {}, "sageattn has no measured shape with seq >= 4096"),
        ({"min_cosine": 0.9899}, {}, "sageattn min cosine 0.9899 < 0.99"),
        ({"min_cosine": None}, {}, "sageattn min cosine n/a < 0.99"),
        ({"min_cosine": 0.995}, {"min_cosine": 0.999}, "sageattn min cosine 0.9950 < 0.999"),
        ({"max_rel_l1": 0.1001}, {}, "sageattn max rel L1 0.1001 > 0.1"),
        ({"max_rel_l1": None}, {}, "sageattn max rel L1 n/a > 0.1"),
        ({"max_rel_l1": 0.06}, {"max_rel_l1": 0.05}, "sageattn max rel L1 0.0600 > 0.05"),
        ({"status": "error"}, {}, "sageattn status error"),
        ({"status": "unsupported-arch"}, {}, "sageattn status unsupported-arch"),
    ],
)  # fmt: skip
def test_recommend_refusals_exact(changes, kwargs, reason):
    assert decision(rec({"sageattn": entry(**changes)}, **kwargs), reason) == (False, None)


def test_recommend_bounds_are_inclusive():
    """Exactly at the accuracy bounds passes; the speedup must be strictly above."""
    at = entry(min_cosine=0.99, max_rel_l1=0.1, median_speedup_long=1.0001)
    assert rec({"sageattn": at})["use_sage_attention"] is True


def test_recommend_names_other_passing_kernels_sorted():
    summary = {
        "sageattn": entry(status="error"),
        "zeta": entry(),
        "alpha": entry(),
        "slow": entry(median_speedup_long=0.5),
    }
    assert rec(summary)["reason"] == (
        "sageattn status error; alpha, zeta would pass but the flag calls sageattn"
    )


def test_recommend_without_measurements():
    assert decision(rec({}), "kernels not measured (inventory only)") == (False, None)
    assert decision(rec({"alpha": entry()}), "sageattn was not measured") == (False, None)
    assert probe.recommend({"sageattn": entry()}, {"available": False}) == {
        "use_sage_attention": False,
        "kernel": None,
        "reason": "no GPU: not available",
    }


# --------------------------------------------------------------------------- dispatch


@pytest.mark.parametrize(
    "capability, version, kernel",
    [
        ("8.0", "2.2.0", "sageattn_qk_int8_pv_fp16_cuda"),
        ("8.6", "2.2.0", "sageattn_qk_int8_pv_fp16_triton"),
        ("8.9", "2.2.0", "sageattn_qk_int8_pv_fp8_cuda"),
        ("9.0", "2.2.0", "sageattn_qk_int8_pv_fp8_cuda_sm90"),
        ("12.0", "2.2.0", "sageattn_qk_int8_pv_fp8_cuda"),
        ("10.0", "2.2.0", None),
        ("9.0", "1.0.6", "sageattn"),
        ("8.0", "0.9", "sageattn"),
        ("9.0", None, None),
        (None, "2.2.0", None),
    ],
)
def test_sageattn_dispatch(capability, version, kernel):
    assert probe.sageattn_dispatch(capability, version) == kernel
