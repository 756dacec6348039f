#!/usr/bin/env python3
"""SageAttention kernel probe: runs alone inside an image, prints ONE JSON document.

Shipped on stdin (``docker run -i --rm --gpus all IMAGE python - --mode kernels < probe.py``) or
run as a file (``python3 sagefleet/probe.py --mode inventory``). Uses the standard library and,
where present, torch; imports nothing from sagefleet. Logs go to stderr. Exit status is 0
whenever a report could be written: a broken kernel is data, not a crash.

+ --mode inventory: packages, functions, extension import errors, GPU; no GPU work
+ --mode kernels: the inventory plus per-kernel accuracy and speed against torch SDPA, each
  kernel measured in its own subprocess (a CUDA fault or hang in one cannot lose the others)

Examples:
    python3 sagefleet/probe.py --mode inventory
    docker run -i --rm --gpus all IMAGE python - --mode kernels --quick < sagefleet/probe.py

The recommendation logic (``summarize`` / ``recommend``) lives here only; sagefleet.report imports
it from this module, so the control side and the image always decide the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import marshal
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

# The module's own code object: the parent hands it to each kernel child over stdin (marshal),
# which works however this file was started (`python -` from a pipe, a file, or an import).
# Source text is not available when run from a pipe, so re-reading it is not an option.
_SELF_CODE = sys._getframe(0).f_code

SCHEMA = 1
PACKAGES = ("sageattention", "sageattn3", "torch", "triton")
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
STATUSES = ("ok", "unsupported-arch", "not-installed", "error", "no-gpu")

# Documented in docs/probe.md (measured on an H100).
DEFAULT_MIN_COSINE = 0.99
DEFAULT_MAX_REL_L1 = 0.1
DEFAULT_MIN_SPEEDUP = 1.0
DEFAULT_LONG_SEQ = 4096
DEFAULT_TIMEOUT_S = 300.0

# Test hook: JSON {kernel: "crash" | "hang" | "raise" | "fake-ok"} makes that kernel's child
# misbehave before touching torch, so isolation is testable without a GPU.
FAULT_ENV = "SAGEFLEET_PROBE_FAULT"


def log(msg: str) -> None:
    print(f"[probe] {msg}", file=sys.stderr, flush=True)


def describe_exc(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:500]


# ---------------------------------------------------------------------------- inventory


def package_info(name: str) -> dict:
    """Version, wheel build tag and direct-URL source of an installed distribution."""
    from importlib import metadata

    info = {"version": None, "build_tag": None, "source_url": None}
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return info
    info["version"] = dist.version
    info["build_tag"] = parse_wheel_build_tag(dist.read_text("WHEEL"))
    info["source_url"] = parse_direct_url(dist.read_text("direct_url.json"))
    return info


def parse_wheel_build_tag(wheel_text: str | None) -> str | None:
    for line in (wheel_text or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "build" and value.strip():
            return value.strip()
    return None


def parse_direct_url(text: str | None) -> str | None:
    if not text:
        return None
    try:
        url = json.loads(text).get("url")
    except (ValueError, AttributeError):
        return None
    return url if isinstance(url, str) else None


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


def summarize(kernels: list[dict], long_seq: int = DEFAULT_LONG_SEQ) -> dict:
    """Per kernel: status, shape count, best/median speedup (also at seq >= long_seq), accuracy."""
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
        out[k["kernel"]] = {
            "status": k.get("status"),
            "shapes": len(shapes),
            "best_speedup": max(speeds) if speeds else None,
            "median_speedup": statistics.median(speeds) if speeds else None,
            "median_speedup_long": statistics.median(long_speeds) if long_speeds else None,
            "min_cosine": min(cosines) if cosines else None,
            "max_rel_l1": _finite(max(rel)) if rel else None,
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
) -> dict:
    """Whether to start ComfyUI with --use-sage-attention.

    That flag calls `sageattn` (auto-dispatch), so only its measurement decides; other kernels
    that would pass are named in the reason. `kernel` is what sageattn runs on this GPU.
    """
    if gpu is not None and not gpu.get("available"):
        return _rec(False, None, f"no GPU: {gpu.get('reason', 'not available')}")
    if not summary:
        return _rec(False, None, "kernels not measured (inventory only)")

    def verdict(name: str, s: dict) -> str | None:
        """None when the kernel passes, else why not."""
        if s.get("status") != "ok":
            return f"{name} status {s.get('status')}"
        if s.get("min_cosine") is None or s["min_cosine"] < min_cosine:
            return f"{name} min cosine {_fmt(s.get('min_cosine'))} < {min_cosine}"
        if s.get("max_rel_l1") is None or s["max_rel_l1"] > max_rel_l1:
            return f"{name} max rel L1 {_fmt(s.get('max_rel_l1'))} > {max_rel_l1}"
        med = s.get("median_speedup_long")
        if med is None:
            return f"{name} has no measured shape with seq >= {long_seq}"
        if med <= min_speedup:
            return f"{name} median speedup {med:.2f}x at seq >= {long_seq} is not > {min_speedup}"
        return None

    passing = {n: s for n, s in summary.items() if verdict(n, s) is None}
    entry = summary.get("sageattn")
    if entry is None:
        return _rec(False, None, "sageattn was not measured")
    why_not = verdict("sageattn", entry)
    if why_not is None:
        return _rec(
            True,
            dispatch or "sageattn",
            f"sageattn median {entry['median_speedup_long']:.2f}x vs SDPA at seq >= {long_seq}, "
            f"min cosine {entry['min_cosine']:.4f}",
        )
    others = sorted(n for n in passing if n != "sageattn")
    extra = f"; {', '.join(others)} would pass but the flag calls sageattn" if others else ""
    return _rec(False, None, why_not + extra)


def _rec(use: bool, kernel: str | None, reason: str) -> dict:
    return {"use_sage_attention": use, "kernel": kernel, "reason": reason}


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def kernel_status(shapes: list[dict], returncode: int | None, timed_out: bool, planned: int):
    """(status, error) of one kernel from its child's shapes and exit."""
    if timed_out:
        return "error", f"timed out after {len(shapes)}/{planned} shapes"
    failed = [s for s in shapes if s.get("error")]
    if failed:
        return "error", failed[0]["error"]
    if returncode != 0:
        return "error", f"child exited with code {returncode} after {len(shapes)}/{planned} shapes"
    if len(shapes) < planned:
        return "error", f"child reported {len(shapes)}/{planned} shapes"
    return "ok", None


# ------------------------------------------------------------------------------ shapes


def plan_shapes(args) -> list[dict]:
    if args.quick:
        seqs, dims, dtypes, causals = [DEFAULT_LONG_SEQ], [64, 128], ["fp16"], [False, True]
    else:
        seqs, dims, dtypes, causals = args.seq_lens, [64, 128], ["fp16", "bf16"], [False, True]
    if args.head_dims:
        dims = args.head_dims
    return [
        {"batch": args.batch, "heads": args.heads, "seq_len": s, "head_dim": d, "dtype": t}
        | {"causal": c}
        for s in seqs
        for d in dims
        for t in dtypes
        for c in causals
    ]


# ------------------------------------------------------------------------- the parent


def run_isolated(kernel: str, shapes: list[dict], args, timeout: float) -> dict:
    """Measure one kernel in a child process; whatever happens there, return a result."""
    with tempfile.TemporaryDirectory(prefix="sageprobe-") as tmp:
        spec_path = os.path.join(tmp, "shapes.json")
        result_path = os.path.join(tmp, "result.jsonl")
        with open(spec_path, "w") as fh:
            json.dump({"shapes": shapes, "warmup": args.warmup, "iters": args.iters}, fh)
        open(result_path, "w").close()
        boot = (
            "import marshal,sys;c=marshal.loads(sys.stdin.buffer.read());"
            "exec(c,{'__name__':'__main__','__builtins__':__builtins__})"
        )
        cmd = [sys.executable, "-c", boot, "--child", kernel, spec_path, result_path]
        started = time.monotonic()
        timed_out, rc, tail = False, None, ""
        try:
            proc = subprocess.run(
                cmd,
                input=marshal.dumps(_SELF_CODE),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=timeout,
            )
            rc, tail = proc.returncode, proc.stderr.decode(errors="replace")
        except subprocess.TimeoutExpired as exc:
            timed_out = True
            tail = (exc.stderr or b"").decode(errors="replace")
        shapes_done = _read_jsonl(result_path)
    for line in tail.strip().splitlines()[-20:]:
        log(f"  {kernel}: {line}")
    status, error = kernel_status(shapes_done, rc, timed_out, len(shapes))
    if status == "error" and not timed_out and rc not in (0, None):
        last = [ln for ln in tail.strip().splitlines() if ln.strip()]
        if last:
            error = f"{error}: {last[-1].strip()[:300]}"
    return {
        "kernel": kernel,
        "status": status,
        "error": error,
        "seconds": round(time.monotonic() - started, 2),
        "shapes": shapes_done,
    }


def _read_jsonl(path: str) -> list[dict]:
    rows = []
    try:
        with open(path) as fh:
            for line in fh:
                with contextlib.suppress(ValueError):
                    rows.append(json.loads(line))
    except OSError:
        pass
    return rows


def measure_kernels(inventory: dict, args) -> list[dict]:
    shapes = plan_shapes(args)
    results = []
    for kernel in KERNELS:
        skip = precheck(kernel, inventory)
        if skip is not None:
            results.append({"kernel": kernel, "status": skip[0], "error": skip[1], "shapes": []})
            log(f"{kernel}: {skip[0]} ({skip[1]})")
            continue
        log(f"{kernel}: measuring {len(shapes)} shapes in a child process")
        result = run_isolated(kernel, shapes, args, args.timeout)
        log(f"{kernel}: {result['status']} in {result['seconds']}s")
        results.append(result)
    return results


# -------------------------------------------------------------------------- the child


def child_main(kernel: str, spec_path: str, result_path: str) -> int:
    sys.stdout = sys.stderr  # libraries print; the parent reads the result file only
    fault = json.loads(os.environ.get(FAULT_ENV) or "{}").get(kernel)
    with open(spec_path) as fh:
        spec = json.load(fh)
    if fault == "crash":
        os._exit(1)
    if fault == "hang":
        time.sleep(3600)
    if fault == "raise":
        raise RuntimeError("injected failure")
    if fault == "fake-ok":
        for shape in spec["shapes"]:
            _append(result_path, shape | {"cosine": 1.0, "rel_l1": 0.0, "max_abs": 0.0} | _FAKE)
        return 0

    import torch
    import torch.nn.functional as F

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    module, err = try_import(KERNELS[kernel])
    if module is None:
        raise RuntimeError(f"import {KERNELS[kernel]} failed: {err}")
    fn = getattr(module, kernel)
    _check_signature(kernel, fn)
    for index, shape in enumerate(spec["shapes"]):
        try:
            row = measure_shape(torch, F, kernel, fn, shape, index, spec["warmup"], spec["iters"])
        except Exception as exc:
            row = shape | {"error": describe_exc(exc)}
        _append(result_path, row)
        log(f"{kernel} {_shape_label(shape)}: {json.dumps(row)}")
    return 0


_FAKE = {"time_ms": 1.0, "sdpa_time_ms": 1.0, "tops": None, "sdpa_tops": None, "speedup": 1.0}


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


def measure_shape(torch, F, kernel, fn, shape, index, warmup, iters) -> dict:
    b, h, s, d = shape["batch"], shape["heads"], shape["seq_len"], shape["head_dim"]
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[shape["dtype"]]
    causal = shape["causal"]
    torch.manual_seed(1234 + index)
    q, k, v = (torch.randn(b, h, s, d, device="cuda", dtype=dtype) for _ in range(3))
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal)

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
    del out, o, diff, ref

    k_timed = (
        k.clone()
    )  # after the first call its mean is ~0, so repeated in-place smoothing is moot
    t_kernel = _time(torch, lambda: _call(kernel, fn, q, k_timed, v, causal), warmup, iters)
    t_sdpa = _time(
        torch, lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal), warmup, iters
    )
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
    """Median over `reps` of the mean seconds per call over `iters` calls, after warm-up."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3 / iters)
    return statistics.median(samples)


# -------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="probe.py", description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("inventory", "kernels"), default="inventory")
    p.add_argument("--quick", action="store_true", help="4 shapes: seq 4096, fp16, d 64/128")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--seq-lens", type=int, nargs="+", default=[1024, 4096])
    p.add_argument("--head-dims", type=int, nargs="+", default=None, help="default 64 128")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per kernel")
    p.add_argument("--min-cosine", type=float, default=DEFAULT_MIN_COSINE)
    p.add_argument("--max-rel-l1", type=float, default=DEFAULT_MAX_REL_L1)
    p.add_argument("--min-speedup", type=float, default=DEFAULT_MIN_SPEEDUP)
    p.add_argument("--long-seq", type=int, default=DEFAULT_LONG_SEQ)
    p.add_argument("--child", nargs=3, metavar=("KERNEL", "SPEC", "RESULT"), help=argparse.SUPPRESS)
    return p


def build_report(args) -> dict:
    report = collect_inventory()
    report["mode"] = args.mode
    if args.mode == "kernels":
        kernels = measure_kernels(report, args)
        summary = summarize(kernels, args.long_seq)
        gpu = report["gpu"]
        sage_version = report["packages"]["sageattention"]["version"]
        report["kernels"] = kernels
        report["summary"] = summary
        report["thresholds"] = {
            "min_cosine": args.min_cosine,
            "max_rel_l1": args.max_rel_l1,
            "min_speedup": args.min_speedup,
            "long_seq": args.long_seq,
        }
        report["recommendation"] = recommend(
            summary,
            gpu,
            sageattn_dispatch(gpu.get("capability"), sage_version),
            args.min_cosine,
            args.max_rel_l1,
            args.min_speedup,
            args.long_seq,
        )
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        return child_main(*args.child)
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
