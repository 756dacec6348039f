"""The verification gate: does the probe's report of an image match the pins?

Pure (imports no pyinfra): sagefleet.operations.gate calls it on the stored probe
result of the current image; tests call it on recorded probe outputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from packaging.version import InvalidVersion, Version

# Kernels whose failure on a GPU host fails the gate: the one ComfyUI calls.
GATING_KERNELS = ("sageattn",)
# Compute capability (major, minor) -> the sageattention 2.x extension flag it needs.
_ARCH_FLAG = {(8, 0): "SM80_ENABLED", (8, 6): "SM80_ENABLED", (8, 7): "SM80_ENABLED",
              (8, 9): "SM89_ENABLED", (9, 0): "SM90_ENABLED"}  # fmt: skip


@dataclass(frozen=True)
class Expectation:
    """What the gate demands of one host's image."""

    wheels: Mapping[str, tuple[str, str]]  # name -> (version, build tag)
    require_sageattn3: bool
    torch_version: str | None  # None: not checked
    min_cosine: float
    max_rel_l1: float
    # name -> build fingerprint (sage_wheels.<name>.fingerprint); only pinned ones are checked
    fingerprints: Mapping[str, str] = field(default_factory=dict)


def expectation(pins) -> Expectation:
    """The gate's demands, from validated Pins."""
    return Expectation(
        wheels={w.name: (w.version, w.build_tag) for w in pins.image.wheels},
        require_sageattn3=pins.image.require_sageattn3,
        torch_version=pins.image.torch_version if pins.verify.verify_torch else None,
        min_cosine=pins.verify.verify_min_cosine,
        max_rel_l1=pins.verify.verify_max_rel_l1,
        fingerprints={w.name: w.fingerprint for w in pins.image.wheels if w.fingerprint},
    )


def _same_version(found: str | None, pinned: str) -> bool:
    try:
        return found is not None and Version(found).public == Version(pinned).public
    except InvalidVersion:
        return False


def _finite(value: object) -> bool:
    """A real number that is neither infinite nor NaN (None, strings and bools are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _capability(gpu: Mapping) -> tuple[int, int] | None:
    try:
        major, minor = str(gpu.get("capability")).split(".")
        return int(major), int(minor)
    except (ValueError, AttributeError):
        return None


def _accuracy_failures(name: str, summary: Mapping, expect: Expectation) -> list[str]:
    """A kernel that ran (status ok) must show finite accuracy within bounds: the probe
    summarises an infinite relative L1 (or a NaN output) as null, which fails here as it
    does in probe.recommend."""
    failures = []
    cosine, rel_l1 = summary.get("min_cosine"), summary.get("max_rel_l1")
    if not _finite(cosine):
        failures.append(f"kernel {name}: cosine similarity {cosine!r} is not a finite measurement")
    elif cosine < expect.min_cosine:
        failures.append(f"kernel {name}: cosine similarity {cosine:.4f} < {expect.min_cosine}")
    if not _finite(rel_l1):
        failures.append(
            f"kernel {name}: relative L1 {rel_l1!r} is not a finite measurement "
            "(infinite or not measured)"
        )
    elif rel_l1 > expect.max_rel_l1:
        failures.append(f"kernel {name}: relative L1 {rel_l1:.4f} > {expect.max_rel_l1}")
    return failures


def gate_failures(report: Mapping, expect: Expectation) -> list[str]:
    """Every reason this probe report fails the gate; empty when it passes."""
    if report.get("fatal"):
        return [f"the probe itself failed: {report['fatal']}"]
    failures: list[str] = []
    packages = report.get("packages") or {}
    imports = report.get("import_errors") or {}
    for name, (version, build_tag) in expect.wheels.items():
        found = packages.get(name) or {}
        if not found.get("version"):
            failures.append(f"{name} {version} is pinned but not installed in the image")
            continue
        if not _same_version(found["version"], version):
            failures.append(f"{name} is {found['version']} in the image, pinned {version}")
        elif found.get("build_tag") != build_tag:
            failures.append(
                f"{name} {version} has wheel build {found.get('build_tag')} in the image, pinned {build_tag}"
            )
        if imports.get(name):
            failures.append(f"import {name} fails: {imports[name]}")
        pinned = expect.fingerprints.get(name)
        if pinned:
            digest = (found.get("fingerprint") or {}).get("digest")
            if not digest:
                failures.append(
                    f"{name}: a build fingerprint is pinned but the probe reports none "
                    f"(probe schema {report.get('schema')})"
                )
            elif digest != pinned:
                failures.append(
                    f"{name} {found['version']} is another build than pinned: fingerprint "
                    f"{digest} in the image, pinned {pinned}"
                )
    if expect.require_sageattn3:
        functions = report.get("functions") or {}
        if not (packages.get("sageattn3") or {}).get("version"):
            failures.append("this host's group requires sageattn3, which is not installed")
        elif not functions.get("sageattn3_blackwell"):
            failures.append("this host's group requires sageattn3, which lacks sageattn3_blackwell")
    if expect.torch_version is not None:
        torch = (packages.get("torch") or {}).get("version")
        if not _same_version(torch, expect.torch_version):
            failures.append(
                f"torch is {torch or 'not installed'} in the image, pinned {expect.torch_version}"
            )

    gpu = report.get("gpu") or {}
    cap = _capability(gpu) if gpu.get("available") else None
    flag = _ARCH_FLAG.get(cap) if cap else None
    sm_flags = report.get("sm_flags") or {}
    if flag and sm_flags.get(flag) is False:
        errors = "; ".join(f"{m}: {e}" for m, e in (report.get("extension_errors") or {}).items())
        failures.append(
            f"sageattention's {flag} is False on this compute capability {cap[0]}.{cap[1]} GPU: "
            f"its kernels silently fall back ({errors or 'no import error recorded'})"
        )
    for kernel in report.get("kernels") or []:
        name, status = kernel.get("kernel") or kernel.get("name"), kernel.get("status")
        if status == "error" and name in GATING_KERNELS:
            failures.append(f"kernel {name} fails: {kernel.get('message') or kernel.get('error')}")
        if status == "inaccurate":  # ran, but wrong (or impossibly fast): any kernel
            failures.append(f"kernel {name} is inaccurate: {kernel.get('error')}")
        if status != "ok":
            continue
        summary = (report.get("summary") or {}).get(name) or {}
        failures += _accuracy_failures(name, summary, expect)
    return failures


def describe(report: Mapping) -> str:
    """One line for a passing gate: versions and kernel statuses."""
    packages = report.get("packages") or {}
    versions = ", ".join(
        f"{n} {(packages.get(n) or {}).get('version') or '-'}"
        for n in ("sageattention", "sageattn3", "torch")
    )
    kernels = ", ".join(
        f"{k.get('kernel') or k.get('name')} {k.get('status')}" for k in report.get("kernels") or []
    )
    return versions + (f"; kernels: {kernels}" if kernels else "")
