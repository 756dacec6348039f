"""What the report says about each host record: summary, recommendation, charted kernel.

The recommendation is decided in ONE place, ``sagefleet.probe.recommend``: the probe calls
it in the image, and this module calls the same function for probes that carry no
recommendation (inventory mode, or records assembled by hand).
"""

from __future__ import annotations

from typing import Any

from .. import probe as probe_mod

REPORT_SCHEMA = 1
ENTRY_KERNEL = "sageattn"  # what ComfyUI's --use-sage-attention calls
KERNEL_ABBREV = {
    "sageattn": "auto",
    "sageattn_qk_int8_pv_fp16_triton": "f16tri",
    "sageattn_qk_int8_pv_fp16_cuda": "f16cu",
    "sageattn_qk_int8_pv_fp8_cuda": "f8cu",
    "sageattn_qk_int8_pv_fp8_cuda_sm90": "f8sm90",
    "sageattn3_blackwell": "sa3",
}
STATUS_ABBREV = {
    "ok": "ok",
    "inaccurate": "WRONG",  # ran, but outside the accuracy bounds or faster than the GPU's peak
    "unsupported-arch": "arch",
    "not-installed": "-",
    "error": "ERR",
    "no-gpu": "nogpu",
}
COLUMNS = (
    "host",
    "GPU",
    "CC",
    "driver",
    "image",
    "sageattention",
    "sageattn3",
    "build",
    "kernels",
    "min cosine",
    "speedup vs SDPA",
    "crossover",
    "recommendation",
)

Record = dict[str, Any]


def _keep(reason: str) -> dict:
    return {"use_sage_attention": False, "kernel": None, "reason": reason}


def has_gpu(record: Record) -> bool:
    probe = record.get("probe") or {}
    gpu = probe.get("gpu")
    if gpu is not None:
        return bool(gpu.get("available"))
    return bool(record.get("gpus"))


def host_summary(record: Record) -> dict:
    """The probe's per-kernel summary, computed from its kernels when it carries none."""
    probe = record.get("probe") or {}
    if probe.get("summary") is not None:
        return probe["summary"]
    th = probe.get("thresholds") or {}
    return probe_mod.summarize(
        probe.get("kernels") or [],
        th.get("long_seq", probe_mod.DEFAULT_LONG_SEQ),
        th.get("min_speedup", probe_mod.DEFAULT_MIN_SPEEDUP),
    )


def host_recommendation(record: Record) -> dict:
    """The probe's own recommendation if present, else the same decision made here."""
    probe = record.get("probe")
    if not probe:
        if not record.get("gpus"):
            return _keep("no GPU")
        return _keep("not probed")
    if probe.get("recommendation") is not None:
        return probe["recommendation"]
    if probe.get("fatal"):
        return _keep(f"probe failed: {probe['fatal']}")
    gpu = probe.get("gpu") or {"available": bool(record.get("gpus")), "reason": "unknown"}
    version = ((probe.get("packages") or {}).get("sageattention") or {}).get("version")
    th = probe.get("thresholds") or {}
    return probe_mod.recommend(
        host_summary(record) if probe.get("kernels") else {},
        gpu,
        probe_mod.sageattn_dispatch(gpu.get("capability"), version),
        th.get("min_cosine", probe_mod.DEFAULT_MIN_COSINE),
        th.get("max_rel_l1", probe_mod.DEFAULT_MAX_REL_L1),
        th.get("min_speedup", probe_mod.DEFAULT_MIN_SPEEDUP),
        th.get("long_seq", probe_mod.DEFAULT_LONG_SEQ),
        th.get("workload_seq_lens"),
    )


def build_label(record: Record, name: str = "sageattention") -> str:
    """The build fingerprint of a wheel in the image: digest head, @commit when from VCS."""
    info = ((record.get("probe") or {}).get("packages") or {}).get(name) or {}
    fp = info.get("fingerprint") or {}
    if not fp.get("digest"):
        return "-"
    label = fp["digest"].removeprefix("sha256:")[:12]
    if fp.get("vcs_commit"):
        label += f"@{fp['vcs_commit'][:7]}"
    if fp.get("modified"):
        label += f" ({fp['modified']} files modified)"
    return label


def crossover_label(record: Record) -> str:
    """ "from seq N" where sageattn beats SDPA at N and every longer measured seq."""
    rec = host_recommendation(record)
    if "crossover_seq" not in rec:
        return "-"
    n = rec.get("crossover_seq")
    return f">= {n}" if n else "none"


def recommendation_label(record: Record, rec: dict | None = None) -> str:
    rec = rec or host_recommendation(record)
    if rec.get("use_sage_attention"):
        return f"--use-sage-attention (kernel {rec.get('kernel') or ENTRY_KERNEL})"
    if not has_gpu(record):
        return "no GPU"
    return f"keep SDPA: {rec.get('reason') or 'unknown'}"


def chart_kernel(record: Record) -> dict | None:
    """The kernel whose shapes are charted: the entry point, the one the recommendation is about."""
    for k in (record.get("probe") or {}).get("kernels") or []:
        if k.get("kernel") == ENTRY_KERNEL and k.get("shapes"):
            return k
    return None


def shape_label(s: dict) -> str:
    causal = " causal" if s.get("causal") else ""
    return f"s{s.get('seq_len')} d{s.get('head_dim')} {s.get('dtype')}{causal}"
