#!/usr/bin/env python3
"""SageAttention kernel probe: runs alone inside an image, prints ONE JSON document.

Shipped on stdin (``docker run -i --rm --gpus all IMAGE python - --mode kernels < probe.py``) or
run as a file (``python3 sagefleet/probe.py --mode inventory``). Uses the standard library and,
where present, torch; imports nothing from sagefleet. Logs go to stderr. Exit status is 0
whenever a report could be written: a broken kernel is data, not a crash.

+ --mode inventory: packages, functions, extension import errors, GPU; no GPU work
+ --mode kernels: the inventory plus per-kernel accuracy and speed against torch SDPA, measured
  in ONE worker process that runs the kernels in turn; a crash or hang in one kernel kills that
  worker, the kernel is reported as an error and a fresh worker measures the rest
+ --profile default | quick | long (seq 8192-32768, head dim 128): which shapes are measured

Examples:
    python3 sagefleet/probe.py --mode inventory
    docker run -i --rm --gpus all IMAGE python - --mode kernels --quick < sagefleet/probe.py
    docker run -i --rm --gpus all IMAGE python - --mode kernels --profile long \
        --workload-seq-lens 16384 32760 < sagefleet/probe.py

The recommendation logic (``summarize`` / ``recommend``) lives here only; sagefleet.report imports
it from this module, so the control side and the image always decide the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import marshal
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time

# The module's own code object: the parent hands it to each worker over stdin (marshal),
# which works however this file was started (`python -` from a pipe, a file, or an import).
# Source text is not available when run from a pipe, so re-reading it is not an option.
_SELF_CODE = sys._getframe(0).f_code

SCHEMA = 2
PACKAGES = ("sageattention", "sageattn3", "torch", "triton")
# The wheels the fleet builds: these get a build fingerprint (torch is too big to hash each run).
FINGERPRINTED = ("sageattention", "sageattn3")
# Kernel name -> module that exports it. Order is the order of the report.
KERNELS = {
    "sageattn": "sageattention",
    "sageattn_qk_int8_pv_fp16_triton": "sageattention",
    "sageattn_qk_int8_pv_fp16_cuda": "sageattention",
    "sageattn_qk_int8_pv_fp8_cuda": "sageattention",
    "sageattn_qk_int8_pv_fp8_cuda_sm90": "sageattention",
    "sageattn3_blackwell": "sageattn3",
}
# The compiled modules sageattention 2.x core.py tries (sm flags) or needs (_fused via quant.py).
EXTENSION_MODULES = (
    "sageattention._qattn_sm80",
    "sageattention._qattn_sm89",
    "sageattention._qattn_sm90",
    "sageattention._fused",
)
SM_FLAGS = ("SM80_ENABLED", "SM89_ENABLED", "SM90_ENABLED")
# inaccurate: the kernel ran but missed the accuracy bounds, or reported a throughput above the
# GPU's physical peak (it did not compute what it was timed on).
STATUSES = ("ok", "inaccurate", "unsupported-arch", "not-installed", "error", "no-gpu")

# Dense (no 2:4 sparsity) peak tensor throughput of the fastest format SageAttention can use on
# the GPU (int8/fp8), in TOPS, from NVIDIA's datasheets, which print the sparse figure (2x).
# A kernel measured faster than this did not compute what it was timed on. First match wins
# (substring of torch.cuda.get_device_name); GPUs not listed get no ceiling check.
PEAK_DENSE_TOPS = (
    ("H100 NVL", 1671.0, "NVIDIA H100 datasheet: H100 NVL FP8/INT8 3,341 TOPS with sparsity"),
    ("H100 PCIe", 1513.0, "NVIDIA H100 datasheet: H100 PCIe FP8/INT8 3,026 TOPS with sparsity"),
    ("H100", 1979.0, "NVIDIA H100 datasheet: H100 SXM FP8/INT8 3,958 TOPS with sparsity"),
    ("H200 NVL", 1671.0, "NVIDIA H200 datasheet: H200 NVL FP8/INT8 3,341 TOPS with sparsity"),
    ("H200", 1979.0, "NVIDIA H200 datasheet: H200 SXM FP8/INT8 3,958 TOPS with sparsity"),
    ("A100", 624.0, "NVIDIA A100 datasheet: INT8 1,248 TOPS with sparsity"),
    ("L40S", 733.0, "NVIDIA L40S datasheet: FP8/INT8 1,466 TOPS with sparsity"),
    ("RTX 4090", 660.6, "NVIDIA Ada architecture whitepaper: RTX 4090 FP8 1,321.2 TFLOPS sparse"),
)

# Documented in docs/probe.md (measured on an H100).
DEFAULT_MIN_COSINE = 0.99
DEFAULT_MAX_REL_L1 = 0.1
DEFAULT_MIN_SPEEDUP = 1.0
DEFAULT_LONG_SEQ = 4096
DEFAULT_TIMEOUT_S = 300.0
# Shape profiles: seq lens, head dims, dtypes (causal and not, always).
PROFILES = {
    "default": ((1024, 4096), (64, 128), ("fp16", "bf16")),
    "quick": ((4096,), (64, 128), ("fp16",)),
    "long": ((8192, 16384, 32768), (128,), ("fp16", "bf16")),
}
# Each timing repetition runs at least this long (fewer calls for long shapes, same precision).
TARGET_REP_S = 0.02

# Test hook: JSON {kernel: "crash" | "hang" | "raise" | "fake-ok" | "fake-garbage" | "poison"}
# makes that kernel misbehave in the worker before touching torch, so isolation is testable
# without a GPU ("poison": fake-ok rows, then the worker retires as after a sticky CUDA error).
FAULT_ENV = "SAGEFLEET_PROBE_FAULT"


def log(msg: str) -> None:
    print(f"[probe] {msg}", file=sys.stderr, flush=True)


def describe_exc(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:500]


# ---------------------------------------------------------------------------- inventory


def package_info(name: str) -> dict:
    """Version, wheel build tag, direct-URL source and (for the fleet's wheels) build fingerprint."""
    from importlib import metadata

    info = {"version": None, "build_tag": None, "source_url": None, "fingerprint": None}
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return info
    info["version"] = dist.version
    info["build_tag"] = parse_wheel_build_tag(dist.read_text("WHEEL"))
    info["source_url"] = parse_direct_url(dist.read_text("direct_url.json"))
    if name in FINGERPRINTED:
        try:
            info["fingerprint"] = dist_fingerprint(dist)
        except Exception as exc:  # a half-broken install is data, not a crash
            info["fingerprint"] = {"digest": None, "error": describe_exc(exc)}
    return info


def parse_wheel_build_tag(wheel_text: str | None) -> str | None:
    for line in (wheel_text or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "build" and value.strip():
            return value.strip()
    return None


def _direct_url_doc(text: str | None) -> dict:
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def parse_direct_url(text: str | None) -> str | None:
    url = _direct_url_doc(text).get("url")
    return url if isinstance(url, str) else None


def parse_direct_url_source(text: str | None) -> dict:
    """What direct_url.json (PEP 610) says of the source: VCS commit, archive hash."""
    doc = _direct_url_doc(text)
    vcs = doc.get("vcs_info") if isinstance(doc.get("vcs_info"), dict) else {}
    archive = doc.get("archive_info") if isinstance(doc.get("archive_info"), dict) else {}
    commit = vcs.get("commit_id")
    archive_hash = archive.get("hash")
    if not archive_hash and isinstance(archive.get("hashes"), dict) and archive["hashes"]:
        algo = sorted(archive["hashes"])[0]
        archive_hash = f"{algo}={archive['hashes'][algo]}"
    return {
        "vcs": vcs.get("vcs") if isinstance(vcs.get("vcs"), str) else None,
        "vcs_commit": commit if isinstance(commit, str) else None,
        "archive_hash": archive_hash if isinstance(archive_hash, str) else None,
    }


# Files in the dist-info that the installer writes (not the build): left out of the fingerprint.
_INSTALLER_FILES = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")


def fingerprinted_path(path: str) -> str | None:
    """The site-packages-relative path a RECORD/wheel entry counts under, or None if it does not
    count: installer output (RECORD, INSTALLER, REQUESTED, direct_url.json, byte code) and files
    installed outside site-packages (scripts, headers, data: pip rewrites scripts' shebangs).
    A wheel's ``NAME.data/purelib|platlib/`` prefix is dropped, as pip does when installing."""
    parts = path.replace("\\", "/").split("/")
    if len(parts) > 2 and parts[0].endswith(".data"):
        if parts[1] not in ("purelib", "platlib"):
            return None
        parts = parts[2:]
    if not parts or parts[0] in ("..", "") or "__pycache__" in parts or parts[-1].endswith(".pyc"):
        return None
    if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] in _INSTALLER_FILES:
        return None
    return "/".join(parts)


def fingerprint_digest(file_hashes: dict[str, str]) -> str:
    """One digest over the build's files: sha256 of sorted ``path NUL sha256hex LF`` lines."""
    h = hashlib.sha256()
    for path in sorted(file_hashes):
        h.update(f"{path}\0{file_hashes[path]}\n".encode())
    return "sha256:" + h.hexdigest()


def _sha256_stream(fh) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: fh.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def dist_fingerprint(dist) -> dict:
    """Fingerprint of an installed distribution from the files its RECORD lists.

    ``digest`` is over the files' CONTENT as found on disk (so a file changed after install
    changes it; ``modified`` counts files whose content no longer matches RECORD's hash);
    ``vcs_commit`` comes from direct_url.json when pip installed from a VCS URL. The same
    digest comes from the wheel file itself (``wheel_fingerprint``), before any install.
    """
    import base64

    hashes, missing, modified = {}, 0, 0
    for entry in dist.files or []:
        rel = fingerprinted_path(str(entry))
        if rel is None:
            continue
        try:
            with open(entry.locate(), "rb") as fh:
                hexdigest = _sha256_stream(fh)
        except OSError:
            missing += 1
            continue
        hashes[rel] = hexdigest
        recorded = getattr(entry, "hash", None)
        if recorded is not None and recorded.mode == "sha256":
            raw = bytes.fromhex(hexdigest)
            if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != recorded.value:
                modified += 1
    source = parse_direct_url_source(dist.read_text("direct_url.json"))
    return {
        "digest": fingerprint_digest(hashes) if hashes else None,
        "files": len(hashes),
        "missing": missing,
        "modified": modified,
        **source,
    }


def wheel_fingerprint(path: str) -> str:
    """The fingerprint digest a wheel's files will have once installed (see dist_fingerprint)."""
    import zipfile

    hashes = {}
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            rel = None if name.endswith("/") else fingerprinted_path(name)
            if rel is None:
                continue
            with zf.open(name) as fh:
                hashes[rel] = _sha256_stream(fh)
    if not hashes:
        raise ValueError(f"{path}: no files to fingerprint")
    return fingerprint_digest(hashes)


def try_import(name: str):
    """(module, None) or (None, "ExcType: message"), never raising."""
    import importlib

    try:
        return importlib.import_module(name), None
    except BaseException as exc:  # a broken extension can raise anything, even SystemExit
        return None, describe_exc(exc)


def gpu_info() -> dict:
    try:
        import torch
    except BaseException as exc:
        return {"available": False, "reason": f"torch is not importable ({describe_exc(exc)})"}
    try:
        if not torch.cuda.is_available():
            return {
                "available": False,
                "reason": f"torch.cuda.is_available() is False (torch CUDA {torch.version.cuda})",
            }
        major, minor = torch.cuda.get_device_capability(0)
        return {
            "available": True,
            "name": torch.cuda.get_device_name(0),
            "capability": f"{major}.{minor}",
            "count": torch.cuda.device_count(),
        }
    except BaseException as exc:
        return {"available": False, "reason": f"CUDA query failed ({describe_exc(exc)})"}


def collect_inventory() -> dict:
    packages = {name: package_info(name) for name in PACKAGES}
    torch_cuda = None
    torch_mod, _ = try_import("torch")
    if torch_mod is not None:
        torch_cuda = getattr(torch_mod.version, "cuda", None)

    modules, import_errors = {}, {}
    for top in ("sageattention", "sageattn3"):
        if packages[top]["version"] is None and not _spec_exists(top):
            modules[top], import_errors[top] = None, f"ModuleNotFoundError: No module named '{top}'"
            continue
        modules[top], import_errors[top] = try_import(top)
    functions = {
        k: hasattr(modules[mod], k) if modules[mod] else False for k, mod in KERNELS.items()
    }

    sm_flags = {flag: None for flag in SM_FLAGS}
    core, _ = try_import("sageattention.core") if modules["sageattention"] else (None, None)
    for flag in SM_FLAGS:
        value = getattr(core, flag, None) if core else None
        sm_flags[flag] = value if isinstance(value, bool) else None

    extension_errors = {}
    if _tries_extensions(packages["sageattention"]["version"], modules["sageattention"], sm_flags):
        for name in EXTENSION_MODULES:
            extension_errors[name] = try_import(name)[1]

    return {
        "schema": SCHEMA,
        "python": platform.python_version(),
        "packages": packages,
        "torch_cuda": torch_cuda,
        "functions": functions,
        "import_errors": import_errors,
        "sm_flags": sm_flags,
        "extension_errors": extension_errors,
        "gpu": gpu_info(),
    }


def _spec_exists(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except BaseException:
        return False


def _tries_extensions(version: str | None, module, sm_flags: dict) -> bool:
    """sageattention 1.x is pure Triton and has no compiled modules; 2.x tries them at import."""
    if any(v is not None for v in sm_flags.values()):
        return True
    if version is None:
        return module is not None
    return not version.startswith(("0.", "1."))


# ----------------------------------------------------------------------- pure decisions


def supported_arch(kernel: str, capability: str, sage_version: str | None) -> bool:
    """Whether a kernel runs on a compute capability ("9.0"); mirrors SageAttention's dispatch."""
    major, _, minor = capability.partition(".")
    cc = (int(major), int(minor or 0))
    if kernel == "sageattn":
        if sage_version and sage_version.startswith(("0.", "1.")):
            return cc >= (8, 0)  # 1.x: Triton int8 kernels, any Ampere or newer
        return cc in {(8, 0), (8, 6), (8, 9), (9, 0), (12, 0)}  # 2.x raises on others
    if kernel in ("sageattn_qk_int8_pv_fp16_triton", "sageattn_qk_int8_pv_fp16_cuda"):
        return cc >= (8, 0)
    if kernel == "sageattn_qk_int8_pv_fp8_cuda":
        return cc in {(8, 9), (9, 0), (12, 0), (12, 1)}
    if kernel == "sageattn_qk_int8_pv_fp8_cuda_sm90":
        return cc == (9, 0)
    if kernel == "sageattn3_blackwell":
        return cc[0] in (10, 12)
    return False


def sageattn_dispatch(capability: str | None, sage_version: str | None) -> str | None:
    """The kernel `sageattn` (what ComfyUI's --use-sage-attention calls) runs on this arch."""
    if capability is None or sage_version is None:
        return None
    if sage_version.startswith(("0.", "1.")):
        return "sageattn"
    return {
        "8.0": "sageattn_qk_int8_pv_fp16_cuda",
        "8.6": "sageattn_qk_int8_pv_fp16_triton",
        "8.9": "sageattn_qk_int8_pv_fp8_cuda",
        "9.0": "sageattn_qk_int8_pv_fp8_cuda_sm90",
        "12.0": "sageattn_qk_int8_pv_fp8_cuda",
    }.get(capability)


def precheck(kernel: str, inventory: dict) -> tuple[str, str] | None:
    """(status, reason) when the kernel need not be run, or None when it must be measured."""
    gpu = inventory.get("gpu") or {}
    if not gpu.get("available"):
        return "no-gpu", gpu.get("reason") or "no GPU"
    if not inventory.get("functions", {}).get(kernel):
        module = KERNELS.get(kernel, "?")
        why = (inventory.get("import_errors") or {}).get(module)
        return "not-installed", f"{module}.{kernel} is not available" + (f" ({why})" if why else "")
    sage_version = ((inventory.get("packages") or {}).get("sageattention") or {}).get("version")
    if not supported_arch(kernel, gpu["capability"], sage_version):
        return (
            "unsupported-arch",
            f"{kernel} does not run on compute capability {gpu['capability']}",
        )
    return None


def accuracy_from_sums(
    dot: float, out_sq: float, ref_sq: float, abs_diff: float, abs_ref: float, max_abs: float
) -> dict:
    """Cosine similarity, relative L1 and max abs error from reductions of (out, ref)."""
    denom = math.sqrt(out_sq) * math.sqrt(ref_sq)
    cosine = dot / denom if denom > 0 else (1.0 if out_sq == ref_sq == 0 else 0.0)
    rel_l1 = abs_diff / abs_ref if abs_ref > 0 else (0.0 if abs_diff == 0 else math.inf)
    return {"cosine": _finite(cosine), "rel_l1": _finite(rel_l1), "max_abs": _finite(max_abs)}


def compare(out: list[float], ref: list[float]) -> dict:
    """accuracy_from_sums over plain sequences (the torch path reduces on the GPU instead)."""
    if len(out) != len(ref):
        raise ValueError(f"length mismatch: {len(out)} != {len(ref)}")
    diffs = [abs(out[i] - ref[i]) for i in range(len(out))]
    return accuracy_from_sums(
        sum(out[i] * ref[i] for i in range(len(out))),
        sum(o * o for o in out),
        sum(r * r for r in ref),
        sum(diffs),
        sum(abs(r) for r in ref),
        max(diffs, default=0.0),
    )


def attention_flops(batch: int, heads: int, seq: int, dim: int, causal: bool) -> float:
    flops = 4.0 * batch * heads * seq * seq * dim
    return flops / 2 if causal else flops


def tops(flops: float, seconds: float | None) -> float | None:
    if not seconds or seconds <= 0:
        return None
    return flops / seconds / 1e12


def speedup(sdpa_seconds: float | None, kernel_seconds: float | None) -> float | None:
    if not sdpa_seconds or not kernel_seconds or kernel_seconds <= 0:
        return None
    return sdpa_seconds / kernel_seconds


def _finite(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def peak_tops(gpu_name: str | None) -> tuple[float | None, str | None]:
    """(dense peak TOPS, where the figure comes from) for a GPU name, (None, None) if unknown."""
    for needle, value, source in PEAK_DENSE_TOPS:
        if gpu_name and needle in gpu_name:
            return value, source
    return None, None


def speedup_by_seq(shapes: list[dict]) -> list[dict]:
    """Median speedup vs SDPA per measured sequence length, ascending."""
    by_seq: dict[int, list[float]] = {}
    for s in shapes:
        if not s.get("error") and s.get("speedup") is not None and s.get("seq_len"):
            by_seq.setdefault(int(s["seq_len"]), []).append(s["speedup"])
    return [
        {"seq_len": seq, "median_speedup": statistics.median(v), "shapes": len(v)}
        for seq, v in sorted(by_seq.items())
    ]


def crossover(by_seq: list[dict], min_speedup: float = DEFAULT_MIN_SPEEDUP) -> int | None:
    """The shortest measured seq N such that the kernel beats min_speedup at N and at every
    longer measured seq ("faster than SDPA from seq >= N"); None if it is not faster at the
    longest one."""
    found = None
    for row in sorted(by_seq, key=lambda r: r["seq_len"], reverse=True):
        if row["median_speedup"] is None or row["median_speedup"] <= min_speedup:
            break
        found = row["seq_len"]
    return found


def judge_kernel(
    shapes: list[dict],
    min_cosine: float = DEFAULT_MIN_COSINE,
    max_rel_l1: float = DEFAULT_MAX_REL_L1,
    max_tops: float | None = None,
) -> str | None:
    """Why a kernel that ran on every shape is `inaccurate`, or None when it is not.

    Inaccurate: any shape below the cosine bound or above the rel-L1 bound (a NaN/missing
    value fails), or any throughput above max_tops (the GPU's dense peak: a kernel cannot be
    faster, so it did not compute what it was timed on)."""
    bad_acc = [
        s
        for s in shapes
        if s.get("cosine") is None
        or s["cosine"] < min_cosine
        or s.get("rel_l1") is None
        or s["rel_l1"] > max_rel_l1
    ]
    too_fast = [s for s in shapes if max_tops and (s.get("tops") or 0) > max_tops]
    reasons = []
    if bad_acc:
        cos = [s.get("cosine") for s in bad_acc]
        rel = [s.get("rel_l1") for s in bad_acc]
        worst_cos = None if None in cos else min(cos)
        worst_rel = None if None in rel else max(rel)
        reasons.append(
            f"{len(bad_acc)}/{len(shapes)} shapes miss the accuracy bounds (worst cosine "
            f"{_fmt(worst_cos)} vs >= {min_cosine}, worst rel L1 {_fmt(worst_rel)} vs <= "
            f"{max_rel_l1})"
        )
    if too_fast:
        top = max(s["tops"] for s in too_fast)
        reasons.append(
            f"{len(too_fast)}/{len(shapes)} shapes report more than the GPU's dense peak "
            f"({top:.0f} > {max_tops:.0f} TOPS): the kernel did not compute what was timed"
        )
    return "; ".join(reasons) or None


def summarize(
    kernels: list[dict], long_seq: int = DEFAULT_LONG_SEQ, min_speedup: float = DEFAULT_MIN_SPEEDUP
) -> dict:
    """Per kernel: status, shape count, best/median speedup (also at seq >= long_seq), accuracy,
    the highest throughput, median speedup per seq and the crossover seq."""
    out = {}
    for k in kernels:
        shapes = [s for s in k.get("shapes") or [] if not s.get("error")]
        speeds = [s["speedup"] for s in shapes if s.get("speedup") is not None]
        long_speeds = [
            s["speedup"]
            for s in shapes
            if s.get("speedup") is not None and s.get("seq_len", 0) >= long_seq
        ]
        # A missing cosine (NaN output) counts as 0: it must fail any threshold.
        cosines = [s.get("cosine") if s.get("cosine") is not None else 0.0 for s in shapes]
        rel = [s.get("rel_l1") if s.get("rel_l1") is not None else math.inf for s in shapes]
        tops_seen = [s["tops"] for s in shapes if s.get("tops") is not None]
        by_seq = speedup_by_seq(shapes)
        out[k["kernel"]] = {
            "status": k.get("status"),
            "error": k.get("error"),
            "shapes": len(shapes),
            "best_speedup": max(speeds) if speeds else None,
            "median_speedup": statistics.median(speeds) if speeds else None,
            "median_speedup_long": statistics.median(long_speeds) if long_speeds else None,
            "min_cosine": min(cosines) if cosines else None,
            "max_rel_l1": _finite(max(rel)) if rel else None,
            "max_tops": max(tops_seen) if tops_seen else None,
            "speedup_by_seq": by_seq,
            "crossover_seq": crossover(by_seq, min_speedup),
        }
    return out


def recommend(
    summary: dict,
    gpu: dict | None = None,
    dispatch: str | None = None,
    min_cosine: float = DEFAULT_MIN_COSINE,
    max_rel_l1: float = DEFAULT_MAX_REL_L1,
    min_speedup: float = DEFAULT_MIN_SPEEDUP,
    long_seq: int = DEFAULT_LONG_SEQ,
    workload_seq_lens: list[int] | None = None,
) -> dict:
    """Whether to start ComfyUI with --use-sage-attention.

    That flag calls `sageattn` (auto-dispatch), so only its measurement decides; other kernels
    that would pass are named in the reason. `kernel` is what sageattn dispatches to on this GPU
    (`dispatch`), whatever the answer. Speed: with `workload_seq_lens` (the sequence lengths
    the fleet's workloads use) sageattn must beat SDPA from a measured crossover seq N <= the
    shortest of them; without, its median speedup at seq >= long_seq must beat min_speedup.
    `crossover_seq` is N ("faster than SDPA from seq >= N"), None if not faster at any seq.
    """
    workload = sorted({int(x) for x in workload_seq_lens or []})
    if gpu is not None and not gpu.get("available"):
        return _rec(False, None, f"no GPU: {gpu.get('reason', 'not available')}")
    if not summary:
        return _rec(False, dispatch, "kernels not measured (inventory only)")

    def verdict(name: str, s: dict) -> str | None:
        return _verdict(name, s, min_cosine, max_rel_l1, min_speedup, long_seq, workload)

    passing = {n: s for n, s in summary.items() if verdict(n, s) is None}
    entry = summary.get("sageattn")
    if entry is None:
        return _rec(False, dispatch, "sageattn was not measured")
    n = crossover(entry.get("speedup_by_seq") or [], min_speedup)
    if entry.get("status") != "ok":
        n = None  # a broken kernel's speed means nothing
    extra = {"crossover_seq": n, "workload_seq_lens": workload or None}
    where = f"faster than SDPA from seq >= {n}" if n else "not faster than SDPA at any measured seq"
    why_not = verdict("sageattn", entry)
    if why_not is None:
        speed = (
            f"{where}, covering the workload's seq {', '.join(map(str, workload))}"
            if workload
            else f"median {entry['median_speedup_long']:.2f}x vs SDPA at seq >= {long_seq} ({where})"
        )
        return (
            _rec(
                True,
                dispatch or "sageattn",
                f"sageattn {speed}, min cosine {entry['min_cosine']:.4f}",
            )
            | extra
        )
    others = sorted(n for n in passing if n != "sageattn")
    more = f"; {', '.join(others)} would pass but the flag calls sageattn" if others else ""
    if entry.get("status") == "ok" and "faster" not in why_not:
        more += f" ({where})"
    return _rec(False, dispatch, why_not + more) | extra


def _speed_verdict(
    name: str, s: dict, min_speedup: float, long_seq: int, workload: list[int]
) -> str | None:
    """None when the kernel is fast enough (see recommend), else why not."""
    by_seq = s.get("speedup_by_seq") or []
    n = crossover(by_seq, min_speedup)
    if workload:
        if n is None:
            top = max((r["seq_len"] for r in by_seq), default=None)
            return f"{name} is not faster than SDPA at any measured seq (up to {top})" + (
                f"; the workload's seq {workload[-1]} is longer: measure --profile long"
                if top is not None and workload[-1] > top
                else ""
            )
        if workload[0] < n:
            return (
                f"{name} is faster than SDPA only from seq >= {n}, "
                f"the workload's shortest seq is {workload[0]}"
            )
        return None
    med = s.get("median_speedup_long")
    if med is None:
        return f"{name} has no measured shape with seq >= {long_seq}"
    if med <= min_speedup:
        return f"{name} median speedup {med:.2f}x at seq >= {long_seq} is not > {min_speedup}"
    return None


def _verdict(
    name: str,
    s: dict,
    min_cosine: float,
    max_rel_l1: float,
    min_speedup: float,
    long_seq: int,
    workload: list[int],
) -> str | None:
    """None when the kernel passes, else why not."""
    if s.get("status") == "inaccurate":
        return f"{name} is inaccurate: {s.get('error') or 'outside the accuracy bounds'}"
    if s.get("status") != "ok":
        return f"{name} status {s.get('status')}"
    if s.get("min_cosine") is None or s["min_cosine"] < min_cosine:
        return f"{name} min cosine {_fmt(s.get('min_cosine'))} < {min_cosine}"
    if s.get("max_rel_l1") is None or s["max_rel_l1"] > max_rel_l1:
        return f"{name} max rel L1 {_fmt(s.get('max_rel_l1'))} > {max_rel_l1}"
    return _speed_verdict(name, s, min_speedup, long_seq, workload)


def _rec(use: bool, kernel: str | None, reason: str) -> dict:
    return {"use_sage_attention": use, "kernel": kernel, "reason": reason}


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def kernel_status(
    shapes: list[dict],
    returncode: int | None,
    timed_out: bool,
    planned: int,
    judged: str | None = None,
):
    """(status, error) of one kernel from its shapes, how its worker ended, and judge_kernel."""
    if timed_out:
        return "error", f"timed out after {len(shapes)}/{planned} shapes"
    failed = [s for s in shapes if s.get("error")]
    if failed:
        return "error", failed[0]["error"]
    if returncode != 0:
        return "error", f"worker exited with code {returncode} after {len(shapes)}/{planned} shapes"
    if len(shapes) < planned:
        return "error", f"worker reported {len(shapes)}/{planned} shapes"
    if judged:
        return "inaccurate", judged
    return "ok", None


# ------------------------------------------------------------------------------ shapes


def plan_shapes(args) -> list[dict]:
    """The measured shapes: the profile's plus the --workload-seq-lens, with --seq-lens /
    --head-dims overriding."""
    seqs, dims, dtypes = PROFILES["quick" if args.quick else args.profile]
    # the workload's seq lens are measured too: the recommendation is about them
    seqs = args.seq_lens or sorted(set(seqs) | set(args.workload_seq_lens or ()))
    dims = args.head_dims or dims
    return [
        {"batch": args.batch, "heads": args.heads, "seq_len": s, "head_dim": d, "dtype": t}
        | {"causal": c}
        for s in seqs
        for d in dims
        for t in dtypes
        for c in (False, True)
    ]


def kernel_plan(kernel: str, shapes: list[dict], args) -> list[int]:
    """Indices of the shapes a kernel is measured on. `sageattn` (what ComfyUI calls, the one
    that decides) gets them all; in the default profile the explicit kernels, which only
    inform, skip bf16 (half the Triton compilations, which dominate a cold run)."""
    everything = list(range(len(shapes)))
    if kernel == "sageattn" or args.quick or args.profile != "default" or args.all_dtypes:
        return everything
    return [i for i in everything if shapes[i]["dtype"] == "fp16"] or everything


# ------------------------------------------------------------------------- the parent

_BOOT = (
    "import marshal,sys;c=marshal.loads(sys.stdin.buffer.read());"
    "exec(c,{'__name__':'__main__','__builtins__':__builtins__})"
)


class Worker:
    """One worker process. Started early it imports torch and sets up CUDA while the parent
    takes the inventory; `run` then hands it the kernels."""

    def __init__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="sageprobe-")
        tmp = self._tmp.name
        self.spec_path = os.path.join(tmp, "spec.json")
        self.events_path = os.path.join(tmp, "events.jsonl")
        self.err_path = os.path.join(tmp, "stderr.log")
        open(self.events_path, "w").close()
        self._err = open(self.err_path, "wb")  # noqa: SIM115 - closed in close()
        cmd = [sys.executable, "-c", _BOOT, "--worker", self.spec_path, self.events_path]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            start_new_session=True,  # its own process group: a timeout kills all of it
        )
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write(marshal.dumps(_SELF_CODE))
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()

    def kill(self) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait()

    def close(self) -> None:
        self.kill()
        self._err.close()
        self._tmp.cleanup()

    def run(self, kernels: list[str], shapes: list[dict], plan: dict, args) -> list[dict]:
        """Measure `kernels` in turn; whatever happens there, return results (see run_worker)."""
        spec = {"kernels": kernels, "shapes": shapes, "plan": plan, "warmup": args.warmup}
        tmp_spec = self.spec_path + ".tmp"
        with open(tmp_spec, "w") as fh:
            json.dump(spec | {"iters": args.iters}, fh)
        os.replace(tmp_spec, self.spec_path)  # the worker waits for it to appear, whole
        rows: dict[str, list[dict]] = {}
        ended: dict[str, dict] = {}
        retired, timed_out = False, False
        since = time.monotonic()
        with open(self.events_path) as events:
            while True:
                rc = self.proc.poll()
                for ev in _read_events(events):
                    kind, kernel = ev.get("event"), ev.get("kernel")
                    if kind == "start":
                        since = time.monotonic()
                        rows[kernel] = []
                    elif kind == "shape":
                        rows.setdefault(kernel, []).append(ev["row"])
                    elif kind == "end":
                        ended[kernel], since = ev, time.monotonic()
                    elif kind == "retire":
                        retired = True
                if rc is not None:
                    break
                if time.monotonic() - since > args.timeout:
                    timed_out = True
                    rc = self.kill()
                    break
                time.sleep(0.05)
        self.kill()
        self._err.flush()
        with open(self.err_path, errors="replace") as fh:
            tail = fh.read()
        for line in tail.strip().splitlines():
            log(f"  worker: {line}")
        results = []
        for kernel in kernels:
            planned = len(plan[kernel])
            if kernel in ended:
                ev, done = ended[kernel], rows.get(kernel, [])
                if ev.get("error"):
                    status, error = "error", ev["error"]
                else:
                    judged = None
                    if not any(r.get("error") for r in done):
                        judged = judge_kernel(done, args.min_cosine, args.max_rel_l1, args.max_tops)
                    status, error = kernel_status(done, 0, False, planned, judged)
                results.append(_result(kernel, status, error, ev.get("seconds"), done))
                continue
            if retired and results:
                break  # the worker gave up after its last kernel; the rest go to a fresh one
            # the kernel it died or hung in (or, when it died between kernels, the next one)
            done = rows.get(kernel, [])
            status, error = kernel_status(done, rc, timed_out, planned)
            if status == "ok":  # exited 0 without measuring it: never loop on that
                status, error = "error", f"worker exited with code {rc} before measuring it"
            # the worker's last words after it started this kernel (not an earlier kernel's log)
            lines = tail.strip().splitlines()
            marker = _start_marker(kernel)
            starts = [i for i, ln in enumerate(lines) if ln.strip() == marker]
            last = [ln for ln in lines[starts[-1] + 1 if starts else 0 :] if ln.strip()]
            if not timed_out and last:
                error = f"{error}: {last[-1].strip()[:300]}"
            seconds = round(time.monotonic() - since, 2)
            results.append(_result(kernel, status, error, seconds, done))
            break
        return results


def run_worker(
    kernels: list[str],
    shapes: list[dict],
    args,
    plan: dict | None = None,
    worker: Worker | None = None,
) -> list[dict]:
    """Measure `kernels` in turn in ONE worker process; whatever happens there, return results.

    Returns a result for each kernel the worker finished, and one (`error`) for the kernel it
    crashed or hung in (args.timeout: seconds per kernel, counted from the hand-over for the
    first). Kernels it did not reach are left out: the caller starts a fresh worker for them.
    Always at least one result, so the caller's loop ends. `plan`: shape indices per kernel
    (default all); `worker`: one started earlier (it is closed here either way).
    """
    plan = plan or {k: list(range(len(shapes))) for k in kernels}
    worker = worker or Worker()
    try:
        return worker.run(kernels, shapes, plan, args)
    finally:
        worker.close()


def _start_marker(kernel: str) -> str:
    return f"[probe] worker: start {kernel}"


def _result(kernel, status, error, seconds, shapes) -> dict:
    return {
        "kernel": kernel,
        "status": status,
        "error": error,
        "seconds": seconds,
        "shapes": shapes,
    }


def _read_events(fh) -> list[dict]:
    """Complete new lines of the worker's event file (a partial last line waits for the next)."""
    out = []
    while True:
        pos = fh.tell()
        line = fh.readline()
        if not line:
            return out
        if not line.endswith("\n"):
            fh.seek(pos)
            return out
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))


def measure_kernels(
    inventory: dict, args, stats: dict | None = None, worker: Worker | None = None
) -> list[dict]:
    """Every kernel's result, in KERNELS order (or --kernels order); measured ones in workers
    (`worker`: a first one started earlier, closed here whether used or not)."""
    shapes = plan_shapes(args)
    names = list(args.kernels or KERNELS)
    results, todo = {}, []
    for kernel in names:
        skip = precheck(kernel, inventory) if kernel in KERNELS else None
        if skip is not None:
            results[kernel] = _result(kernel, skip[0], skip[1], None, [])
            log(f"{kernel}: {skip[0]} ({skip[1]})")
        else:
            todo.append(kernel)
    plan = {k: kernel_plan(k, shapes, args) for k in todo}
    if not todo and worker is not None:
        worker.close()
    while todo:
        if stats is not None:
            stats["workers"] = stats.get("workers", 0) + 1
        log(f"worker: measuring {', '.join(f'{k} ({len(plan[k])} shapes)' for k in todo)}")
        for result in run_worker(todo, shapes, args, plan, worker):
            log(f"{result['kernel']}: {result['status']} in {result['seconds']}s")
            results[result["kernel"]] = result
            todo.remove(result["kernel"])
        worker = None
    return [results[k] for k in names]


# ------------------------------------------------------------------------- the worker


def worker_main(spec_path: str, events_path: str) -> int:
    """Import torch and set up CUDA, wait for the spec, run its kernels in turn (one event line
    per start, shape and end)."""
    sys.stdout = sys.stderr  # libraries print; the parent reads the event file only
    parent = os.getppid()
    bench = None
    if not os.environ.get(FAULT_ENV):  # test runs without a GPU skip the warm-up
        with contextlib.suppress(Exception):
            bench = _Bench()
            log(f"worker: torch imported and CUDA ready in {bench.init_s:.1f}s")
    while not os.path.exists(spec_path):
        if os.getppid() != parent:
            return 4  # the parent is gone
        time.sleep(0.01)
    with open(spec_path) as fh:
        spec = json.load(fh)
    faults = json.loads(os.environ.get(FAULT_ENV) or "{}")
    plan = spec.get("plan") or {}
    for kernel in spec["kernels"]:
        started = time.monotonic()
        _append(events_path, {"event": "start", "kernel": kernel})
        print(_start_marker(kernel), file=sys.stderr, flush=True)
        indices = plan.get(kernel, list(range(len(spec["shapes"]))))
        fault = faults.get(kernel)
        if fault == "crash":
            os._exit(1)
        if fault == "hang":
            time.sleep(3600)
        error, shape_errors = None, False
        try:
            if fault == "raise":
                raise RuntimeError("injected failure")
            if fault in ("fake-ok", "fake-garbage", "poison"):
                fake = _FAKE_GARBAGE if fault == "fake-garbage" else _FAKE_OK
                for i in indices:
                    row = spec["shapes"][i] | fake
                    _append(events_path, {"event": "shape", "kernel": kernel, "row": row})
            else:
                if bench is None:
                    bench = _Bench()
                    log(f"worker: torch imported and CUDA ready in {bench.init_s:.1f}s")
                shape_errors = _measure_kernel(bench, kernel, spec, indices, events_path)
        except Exception as exc:
            error = describe_exc(exc)
        seconds = round(time.monotonic() - started, 2)
        _append(events_path, {"event": "end", "kernel": kernel, "seconds": seconds, "error": error})
        # "poison" (test hook): as if CUDA were unusable after this kernel
        unusable = bench is not None and (error or shape_errors) and not bench.healthy()
        if unusable or fault == "poison":
            # a sticky CUDA error (illegal address...) poisons the context for later kernels
            _append(events_path, {"event": "retire", "kernel": kernel})
            log(f"worker: CUDA unusable after {kernel}; a fresh worker takes the rest")
            return 3
    return 0


_FAKE_OK = {"cosine": 1.0, "rel_l1": 0.0, "max_abs": 0.0, "time_ms": 1.0, "sdpa_time_ms": 1.0}
_FAKE_OK |= {"tops": None, "sdpa_tops": None, "speedup": 1.0, "error": None}
# What the v2.2.0 tag's sm90 kernel does on Hopper: uninitialised output, "4,400 TOPS".
_FAKE_GARBAGE = _FAKE_OK | {"cosine": 0.0012, "rel_l1": 20.5, "tops": 4400.0, "speedup": 7.0}


def _append(path: str, row: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(row, allow_nan=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _shape_label(s: dict) -> str:
    causal = " causal" if s["causal"] else ""
    return f"b{s['batch']} h{s['heads']} s{s['seq_len']} d{s['head_dim']} {s['dtype']}{causal}"


def _check_signature(kernel: str, fn) -> None:
    """The kernels swallow unknown keywords (**kwargs): make sure ours are real parameters."""
    import inspect

    wanted = ("is_causal", "per_block_mean") if kernel == "sageattn3_blackwell" else None
    wanted = wanted or ("tensor_layout", "is_causal")
    params = inspect.signature(fn).parameters
    missing = [w for w in wanted if w not in params]
    if missing:
        raise TypeError(f"{kernel} has no parameter(s) {missing}; they would be silently ignored")


def _call(kernel: str, fn, q, k, v, causal: bool):
    if kernel == "sageattn3_blackwell":
        out = fn(q, k, v, is_causal=causal, per_block_mean=True)
    else:
        out = fn(q, k, v, tensor_layout="HND", is_causal=causal)
    return out[0] if isinstance(out, tuple) else out


class _Bench:
    """torch in the worker, with what every kernel shares: per shape, the fp32 SDPA reference
    (kept on the GPU while it fits in a tenth of its memory) and SDPA's time in the same dtype."""

    def __init__(self):
        started = time.monotonic()
        import torch
        import torch.nn.functional as F

        self.torch, self.F = torch, F
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.cuda.init()
        self.budget = torch.cuda.get_device_properties(0).total_memory // 10
        self.refs: dict[int, object] = {}
        self.sdpa_s: dict[int, float] = {}
        self.init_s = time.monotonic() - started

    def inputs(self, shape: dict, index: int):
        torch = self.torch
        b, h, s, d = shape["batch"], shape["heads"], shape["seq_len"], shape["head_dim"]
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[shape["dtype"]]
        torch.manual_seed(1234 + index)
        return tuple(torch.randn(b, h, s, d, device="cuda", dtype=dtype) for _ in range(3))

    def reference(self, shape: dict, index: int, q, k, v):
        if index in self.refs:
            return self.refs[index]
        ref = self.F.scaled_dot_product_attention(
            q.float(), k.float(), v.float(), is_causal=shape["causal"]
        )
        used = sum(r.numel() * r.element_size() for r in self.refs.values())
        if used + ref.numel() * ref.element_size() <= self.budget:
            self.refs[index] = ref
        return ref

    def sdpa_seconds(self, shape: dict, index: int, q, k, v, warmup: int, iters: int) -> float:
        if index not in self.sdpa_s:
            causal = shape["causal"]
            self.sdpa_s[index] = _time(
                self.torch,
                lambda: self.F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                warmup,
                iters,
            )
        return self.sdpa_s[index]

    def healthy(self) -> bool:
        try:
            self.torch.cuda.synchronize()
            x = self.torch.ones(8, device="cuda")
            return float((x + 1).sum().item()) == 16.0
        except Exception:
            return False


def _measure_kernel(
    bench: _Bench, kernel: str, spec: dict, indices: list[int], events_path: str
) -> bool:
    """The planned shapes of one kernel, one event each; True when a shape failed."""
    module, err = try_import(KERNELS[kernel])
    if module is None:
        raise RuntimeError(f"import {KERNELS[kernel]} failed: {err}")
    fn = getattr(module, kernel)
    _check_signature(kernel, fn)
    failed = False
    for index in indices:
        shape = spec["shapes"][index]
        try:
            row = measure_shape(bench, kernel, fn, shape, index, spec["warmup"], spec["iters"])
        except Exception as exc:
            row = shape | {"error": describe_exc(exc)}
            failed = True
        _append(events_path, {"event": "shape", "kernel": kernel, "row": row})
        log(f"{kernel} {_shape_label(shape)}: {json.dumps(row)}")
    return failed


def measure_shape(bench: _Bench, kernel, fn, shape, index, warmup, iters) -> dict:
    torch = bench.torch
    b, h, s, d = shape["batch"], shape["heads"], shape["seq_len"], shape["head_dim"]
    causal = shape["causal"]
    q, k, v = bench.inputs(shape, index)
    ref = bench.reference(shape, index, q, k, v)

    # Kernels may subtract k's mean in place (1.x sageattn, sageattn3): hand them copies.
    out = _call(kernel, fn, q, k.clone(), v, causal)
    torch.cuda.synchronize()
    if tuple(out.shape) != tuple(ref.shape):
        raise ValueError(f"output shape {tuple(out.shape)} != expected {tuple(ref.shape)}")
    o, r = out.float(), ref
    diff = (o - r).abs()
    acc = accuracy_from_sums(
        (o * r).sum().item(),
        (o * o).sum().item(),
        (r * r).sum().item(),
        diff.sum().item(),
        r.abs().sum().item(),
        diff.max().item(),
    )
    del out, o, diff, ref, r

    # after the first call k's mean is ~0, so repeated in-place smoothing is moot
    k_timed = k.clone()
    t_kernel = _time(torch, lambda: _call(kernel, fn, q, k_timed, v, causal), warmup, iters)
    t_sdpa = bench.sdpa_seconds(shape, index, q, k, v, warmup, iters)
    flops = attention_flops(b, h, s, d, causal)
    return (
        shape
        | acc
        | {
            "time_ms": round(t_kernel * 1e3, 4),
            "sdpa_time_ms": round(t_sdpa * 1e3, 4),
            "tops": _round(tops(flops, t_kernel)),
            "sdpa_tops": _round(tops(flops, t_sdpa)),
            "speedup": _round(speedup(t_sdpa, t_kernel)),
            "error": None,
        }
    )


def _round(x, n: int = 4):
    return None if x is None else round(x, n)


def _time(torch, fn, warmup: int, iters: int, reps: int = 5) -> float:
    """Median over `reps` of the mean seconds per call, after warm-up (the first call, which
    may compile, untimed). Calls per repetition: `iters`, fewer when that many would take
    longer than TARGET_REP_S (long sequences), at least one."""
    fn()
    torch.cuda.synchronize()
    timed = max(1, warmup - 1)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(timed):
        fn()
    end.record()
    end.synchronize()
    per_call = start.elapsed_time(end) / 1e3 / timed
    n = max(1, min(iters, math.ceil(TARGET_REP_S / per_call))) if per_call > 0 else iters
    samples = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3 / n)
    return statistics.median(samples)


# -------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="probe.py", description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("inventory", "kernels"), default="inventory")
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="default",
        help="default: seq 1024/4096, d 64/128, fp16/bf16; quick: seq 4096 fp16; "
        "long: seq 8192/16384/32768, d 128, fp16/bf16 (causal and not, always)",
    )
    p.add_argument("--quick", action="store_true", help="same as --profile quick")
    p.add_argument("--kernels", nargs="+", choices=list(KERNELS), default=None)
    p.add_argument(
        "--all-dtypes",
        action="store_true",
        help="default profile: measure the explicit kernels in bf16 too (sageattn always is)",
    )
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--seq-lens", type=int, nargs="+", default=None, help="override the profile's")
    p.add_argument("--head-dims", type=int, nargs="+", default=None, help="override the profile's")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per kernel")
    p.add_argument("--min-cosine", type=float, default=DEFAULT_MIN_COSINE)
    p.add_argument("--max-rel-l1", type=float, default=DEFAULT_MAX_REL_L1)
    p.add_argument("--min-speedup", type=float, default=DEFAULT_MIN_SPEEDUP)
    p.add_argument("--long-seq", type=int, default=DEFAULT_LONG_SEQ)
    p.add_argument(
        "--max-tops",
        type=float,
        default=None,
        help="throughput ceiling (TOPS) above which a kernel is inaccurate; default: the GPU's "
        "dense peak from PEAK_DENSE_TOPS, none for GPUs not listed",
    )
    p.add_argument(
        "--workload-seq-lens",
        type=int,
        nargs="+",
        default=None,
        help="sequence lengths the fleet's workloads use: sageattn must beat SDPA at all of them",
    )
    p.add_argument("--worker", nargs=2, metavar=("SPEC", "EVENTS"), help=argparse.SUPPRESS)
    return p


def build_report(args) -> dict:
    started = time.monotonic()
    # the first worker imports torch and sets up CUDA while this process takes the inventory
    worker = Worker() if args.mode == "kernels" else None
    try:
        report = collect_inventory()
    except BaseException:
        if worker is not None:
            worker.close()
        raise
    report["mode"] = args.mode
    stats = {"workers": 0}
    if args.mode == "kernels":
        gpu = report["gpu"]
        peak, source = peak_tops(gpu.get("name"))
        if args.max_tops is None:
            args.max_tops = peak
        else:
            source = "--max-tops"
        kernels = measure_kernels(report, args, stats, worker)
        summary = summarize(kernels, args.long_seq, args.min_speedup)
        sage_version = report["packages"]["sageattention"]["version"]
        report["profile"] = "quick" if args.quick else args.profile
        report["kernels"] = kernels
        report["summary"] = summary
        report["thresholds"] = {
            "min_cosine": args.min_cosine,
            "max_rel_l1": args.max_rel_l1,
            "min_speedup": args.min_speedup,
            "long_seq": args.long_seq,
            "max_tops": args.max_tops,
            "max_tops_source": source if args.max_tops is not None else None,
            "workload_seq_lens": args.workload_seq_lens,
        }
        report["recommendation"] = recommend(
            summary,
            gpu,
            sageattn_dispatch(gpu.get("capability"), sage_version),
            args.min_cosine,
            args.max_rel_l1,
            args.min_speedup,
            args.long_seq,
            args.workload_seq_lens,
        )
    report["timing"] = {"seconds": round(time.monotonic() - started, 2), **stats}
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker_main(*args.worker)
    # C extensions may write to fd 1: point it at stderr and keep the real stdout for the JSON.
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        try:
            report = build_report(args)
        except BaseException as exc:  # still one JSON document, never a bare traceback
            import traceback

            traceback.print_exc()
            report = {"schema": SCHEMA, "mode": args.mode, "fatal": describe_exc(exc)}
        text = json.dumps(_sanitize(report), indent=2, allow_nan=False) + "\n"
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0


def _sanitize(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    return obj


if __name__ == "__main__":
    sys.exit(main())
