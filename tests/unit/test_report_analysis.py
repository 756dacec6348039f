"""sagefleet.report.analysis: which summary and recommendation a host record gets, and the
labels the table shows, for every shape of record the gatherer produces."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from sagefleet.report import analysis

ROOT = Path(__file__).resolve().parents[2]
H100 = json.loads((ROOT / "docs/samples/h100-probe.json").read_text())
KEEP = {"use_sage_attention": False, "kernel": None}


def shape(seq, speedup, cosine=0.9999, rel_l1=0.01):
    return {"seq_len": seq, "speedup": speedup, "cosine": cosine, "rel_l1": rel_l1, "error": None}


def probe(speedup=1.5, cosine=0.9995, rel_l1=0.02, seq=4096, **extra):
    """A probe of one sageattn kernel that ran, without a summary or a recommendation."""
    doc = {
        "gpu": {"available": True, "capability": "9.0"},
        "packages": {"sageattention": {"version": "2.2.0"}},
        "kernels": [
            {"kernel": "sageattn", "status": "ok", "shapes": [shape(seq, speedup, cosine, rel_l1)]}
        ],
    }
    doc.update(extra)
    return doc


def rec(record):
    return analysis.host_recommendation(record)


def decision(got: dict, reason_start: str | None = None) -> tuple:
    """(use, kernel), checking that the reason starts with the expected words."""
    ok = reason_start is None or got["reason"].startswith(reason_start)
    assert ok, got["reason"]
    return got["use_sage_attention"], got["kernel"]


def test_keep():
    assert analysis._keep("why") == {"use_sage_attention": False, "kernel": None, "reason": "why"}


@pytest.mark.parametrize(
    "record, expected",
    [
        ({"probe": {"gpu": {"available": True}}, "gpus": []}, True),
        ({"probe": {"gpu": {"available": False}}, "gpus": [{"name": "H100"}]}, False),
        ({"probe": {"gpu": {}}, "gpus": [{"name": "H100"}]}, False),
        ({"probe": {}, "gpus": [{"name": "H100"}]}, True),
        ({"probe": None, "gpus": []}, False),
        ({}, False),
    ],
)
def test_has_gpu(record, expected):
    assert analysis.has_gpu(record) is expected


def test_host_summary_uses_the_probes_own_then_computes_with_its_long_seq():
    assert analysis.host_summary({"probe": {"summary": {"x": 1}, "kernels": []}}) == {"x": 1}
    assert analysis.host_summary({"probe": {"summary": {}}}) == {}
    two = probe(kernels=[{"kernel": "sageattn", "status": "ok",
                          "shapes": [shape(2048, 3.0), shape(8192, 1.2)]}])  # fmt: skip
    assert analysis.host_summary({"probe": two})["sageattn"]["median_speedup_long"] == 1.2
    two["thresholds"] = {"long_seq": 2048}
    got = analysis.host_summary({"probe": two})["sageattn"]
    assert got["median_speedup_long"] == pytest.approx(2.1) and got["shapes"] == 2
    assert analysis.host_summary({}) == {} and analysis.host_summary({"probe": {}}) == {}


def test_recommendation_without_a_probe():
    assert rec({"gpus": []}) == {**KEEP, "reason": "no GPU"}
    assert rec({"probe": None, "gpus": [{"name": "H100"}]}) == {**KEEP, "reason": "not probed"}
    assert rec({"probe": {}, "gpus": [{"name": "H100"}]}) == {**KEEP, "reason": "not probed"}


def test_recommendation_the_probe_made_wins():
    own = {"use_sage_attention": True, "kernel": "k", "reason": "the probe's"}
    assert rec({"probe": probe(recommendation=own, fatal="ignored")}) == own
    assert rec({"probe": probe(speedup=0.1, recommendation=own)}) == own


def test_recommendation_of_a_failed_probe():
    assert rec({"probe": {"fatal": "MemoryError"}, "gpus": [{}]}) == {
        **KEEP,
        "reason": "probe failed: MemoryError",
    }


def test_recommendation_computed_here():
    # The kernel is the dispatch of sageattention 2.2.0 on compute capability 9.0.
    got = rec({"probe": probe()})
    assert decision(got, "sageattn median 1.50x vs SDPA at seq >= 4096") == (
        True,
        "sageattn_qk_int8_pv_fp8_cuda_sm90",
    )
    assert got["reason"].endswith(", min cosine 0.9995")
    old = probe(packages={"sageattention": {"version": "1.0.6"}})
    assert rec({"probe": old})["kernel"] == "sageattn"
    unknown_arch = probe(gpu={"available": True, "capability": "7.5"})
    assert rec({"probe": unknown_arch})["kernel"] == "sageattn"  # no dispatch known


def test_recommendation_without_kernels_is_inventory_only():
    got = rec({"probe": probe(kernels=[])})
    assert decision(got, "kernels not measured (inventory only)")[0] is False
    summary_only = probe(summary={"sageattn": {"status": "ok"}})
    del summary_only["kernels"]
    assert rec({"probe": summary_only})["reason"] == "kernels not measured (inventory only)"


def test_recommendation_without_gpu_in_the_probe_falls_back_to_the_record():
    no_gpu = probe()
    del no_gpu["gpu"]
    assert rec({"probe": no_gpu, "gpus": []}) == {**KEEP, "reason": "no GPU: unknown"}
    got = rec({"probe": no_gpu, "gpus": [{"name": "H100"}]})
    assert got["use_sage_attention"] is True and got["kernel"] == "sageattn"


@pytest.mark.parametrize(
    "thresholds, passes, reason",
    [
        ({}, True, None),
        ({"min_cosine": 0.9999}, False, "sageattn min cosine 0.9995 < 0.9999"),
        ({"max_rel_l1": 0.01}, False, "sageattn max rel L1 0.0200 > 0.01"),
        ({"min_speedup": 1.5}, False, "sageattn median speedup 1.50x at seq >= 4096 is not > 1.5"),
        ({"long_seq": 8192}, False, "sageattn has no measured shape with seq >= 8192"),
        ({"min_cosine": 0.999, "max_rel_l1": 0.05, "min_speedup": 1.4, "long_seq": 4096}, True, None),
    ],
)  # fmt: skip
def test_recommendation_uses_the_probes_thresholds(thresholds, passes, reason):
    got = rec({"probe": probe(thresholds=thresholds)})
    assert got["use_sage_attention"] is passes
    if reason:
        assert got["reason"].startswith(reason), got["reason"]


def test_default_thresholds_are_the_probes():
    def reason(**kw):
        return rec({"probe": probe(**kw)})["reason"]

    assert reason(cosine=0.9899).startswith("sageattn min cosine 0.9899 < 0.99")
    assert reason(rel_l1=0.11).startswith("sageattn max rel L1 0.1100 > 0.1")
    assert reason(speedup=1.0).startswith(
        "sageattn median speedup 1.00x at seq >= 4096 is not > 1.0"
    )
    assert reason(seq=4095).startswith("sageattn has no measured shape with seq >= 4096")


def test_recommendation_label_each_branch():
    label = analysis.recommendation_label
    yes = {"use_sage_attention": True, "kernel": "k8", "reason": "r"}
    assert label({}, yes) == "--use-sage-attention (kernel k8)"
    assert label({}, {**yes, "kernel": None}) == "--use-sage-attention (kernel sageattn)"
    no = {**KEEP, "reason": "too slow"}
    assert label({"gpus": []}, no) == "no GPU"
    assert label({"gpus": [{"name": "H100"}]}, no) == "keep SDPA: too slow"
    assert label({"gpus": [{"name": "H100"}]}, {**KEEP, "reason": ""}) == "keep SDPA: unknown"
    # Without a given recommendation, the host's own is used.
    assert (
        label({"probe": probe()})
        == "--use-sage-attention (kernel sageattn_qk_int8_pv_fp8_cuda_sm90)"
    )
    assert label({"gpus": [{"name": "H100"}]}) == "keep SDPA: not probed"


def test_chart_kernel_is_the_entry_point_with_shapes():
    entry = {"kernel": "sageattn", "shapes": [shape(4096, 1.0)]}
    other = {"kernel": "sageattn_qk_int8_pv_fp16_cuda", "shapes": [shape(4096, 2.0)]}
    assert analysis.chart_kernel({"probe": {"kernels": [other, entry]}}) is entry
    assert analysis.chart_kernel({"probe": {"kernels": [other, {**entry, "shapes": []}]}}) is None
    assert analysis.chart_kernel({"probe": None}) is None and analysis.chart_kernel({}) is None


def test_shape_label():
    s = {"seq_len": 4096, "head_dim": 128, "dtype": "fp16", "causal": False}
    assert analysis.shape_label(s) == "s4096 d128 fp16"
    assert analysis.shape_label({**s, "causal": True}) == "s4096 d128 fp16 causal"
    assert analysis.shape_label({}) == "sNone dNone None"


def test_h100_sample_recommendation_recomputed_equals_the_probes():
    stripped = copy.deepcopy(H100)
    del stripped["recommendation"]
    assert rec({"probe": stripped}) == H100["recommendation"]
