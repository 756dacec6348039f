"""How a node's GPUs reach a container: the NVIDIA runtime (``--gpus all``) or CDI
(``--device nvidia.com/gpu=all``), chosen from what the engine offers.

``sagefleet.facts.gpu.EngineGpuAccess`` (one round trip) reads ``docker info`` and the
CDI specs in the engine's CDI spec directories, and hands them to ``engine_gpu`` here;
``choose`` turns that and the ``gpu_access`` pin into the ``docker run`` flags. The
probe and the service call ``choose`` on the same fact with the same pin, so both get
the same access. Pure: imports no pyinfra.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .pins.service import GPU_ACCESS_MODES

CDI_KIND = "nvidia.com/gpu"
# Index names as `nvidia-ctk cdi generate` writes them: "0", "1", MIG "0:1".
_INDEX_NAME = re.compile(r"^[0-9]+(:[0-9]+)?$")
_TOOLKIT = (
    "install the NVIDIA Container Toolkit and run "
    "`nvidia-ctk runtime configure --runtime=docker` (the NVIDIA runtime, --gpus all)"
)
_CDI_GENERATE = "run `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml` (a CDI spec)"
_CDI_ON = (
    'set {"features": {"cdi": true}} in /etc/docker/daemon.json (Docker >= 25) and restart dockerd'
)


def engine_gpu(info: Mapping[str, Any] | None, specs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The fact's value from ``docker info``'s JSON and the CDI spec files (pure)."""
    # Some docker CLIs print client info only (ServerErrors) when no engine answers.
    if info and (info.get("ServerErrors") or not info.get("ServerVersion")):
        info = None
    result: dict[str, Any] = {
        "docker": bool(info),
        "server_version": None,
        "runtimes": [],
        "cdi_spec_dirs": [],
        "cdi_devices": [],
        "spec_errors": [],
    }
    if not info:
        return result
    result["server_version"] = info.get("ServerVersion")
    result["runtimes"] = sorted(info.get("Runtimes") or {})
    result["cdi_spec_dirs"] = list(info.get("CDISpecDirs") or [])
    devices: set[str] = set()
    discovered = info.get("DiscoveredDevices")
    if discovered is not None:  # Docker >= 28 lists the CDI devices itself
        for dev in discovered or []:
            if (dev or {}).get("Source") == "cdi" and str(dev.get("ID", "")).startswith(
                CDI_KIND + "="
            ):
                devices.add(dev["ID"])
    elif result["cdi_spec_dirs"]:
        for path, text in specs:
            try:
                kind, names = cdi_spec_devices(text)
            except ValueError as e:
                result["spec_errors"].append(f"{path}: {e}")
                continue
            if kind == CDI_KIND:
                devices.update(f"{kind}={n}" for n in names)
    result["cdi_devices"] = sorted(devices, key=_device_order)
    return result


def _device_order(device: str) -> tuple:
    name = device.split("=", 1)[1]
    if _INDEX_NAME.match(name):
        return (0, tuple(int(p) for p in name.split(":")), name)
    return (1 if name == "all" else 2, (), name)


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def cdi_spec_devices(text: str) -> tuple[str | None, list[str]]:
    """(kind, device names) of one CDI spec, JSON or YAML (block style, as
    ``nvidia-ctk cdi generate`` writes it). Raises ValueError on what it cannot read."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not valid JSON: {e}") from None
        devices = doc.get("devices") or []
        if not isinstance(devices, list):
            raise ValueError("devices is not a list")
        return doc.get("kind"), [str(d.get("name")) for d in devices if isinstance(d, dict)]
    kind: str | None = None
    names: list[str] = []
    in_devices = False
    item_indent: int | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if "\t" in line[: len(line) - len(line.lstrip())]:
            raise ValueError("tab in indentation")
        content = line.lstrip(" ")
        if not content or content.startswith("#") or content in ("---", "..."):
            continue
        indent = len(line) - len(content)
        if indent == 0 and not content.startswith("-"):
            key, sep, value = content.partition(":")
            if not sep:
                raise ValueError(f"cannot read line {content!r}")
            in_devices = key.strip() == "devices"
            item_indent = None
            if key.strip() == "kind":
                kind = _unquote(value.split(" #")[0])
            elif in_devices and value.strip() not in ("", "[]"):
                raise ValueError("devices in flow style is not supported; write it in block style")
            continue
        if not in_devices:
            continue
        if content.startswith("- ") or content == "-":
            if item_indent is None:
                item_indent = indent
            if indent == item_indent:
                content, indent = content[1:].lstrip(" "), indent + 2
        if item_indent is not None and indent == item_indent + 2 and content.startswith("name:"):
            names.append(_unquote(content[len("name:") :].split(" #")[0]))
    return kind, names


@dataclass(frozen=True)
class GpuAccess:
    """How containers on one host get its GPUs: ``flags`` for ``docker run``; a
    ``problem`` means the host must be refused (it says what to install)."""

    mode: str  # "nvidia-runtime" | "cdi" | "none"
    flags: tuple[str, ...]
    reason: str
    problem: str | None = None


def _cdi_flags(devices: Sequence[str]) -> tuple[str, ...]:
    """``--device nvidia.com/gpu=all`` where the spec has ``all``, else one per index
    (MIG indices included); else every device the spec names."""
    names = [d.split("=", 1)[1] for d in devices]
    if "all" in names:
        chosen = [f"{CDI_KIND}=all"]
    else:
        chosen = [d for d in devices if _INDEX_NAME.match(d.split("=", 1)[1])] or list(devices)
    flags: list[str] = []
    for device in chosen:
        flags += ["--device", device]
    return tuple(flags)


def choose(engine: Mapping[str, Any], pinned: str = "auto", gpu_node: bool = False) -> GpuAccess:
    """The GPU access of one host (pure).

    + engine: the ``EngineGpuAccess`` fact
    + pinned: the ``gpu_access`` pin: ``auto`` (the NVIDIA runtime where the engine
      has it, else CDI where it lists an ``nvidia.com/gpu`` device), ``nvidia-runtime``
      or ``cdi`` (that one or refuse), ``none`` (no GPU, never refused)
    + gpu_node: the host is a GPU node, so ``auto`` with no way to a GPU refuses it;
      elsewhere (build hosts) the probe then runs without a GPU
    """
    if pinned not in GPU_ACCESS_MODES:
        raise ValueError(f"gpu_access must be one of {', '.join(GPU_ACCESS_MODES)}, got {pinned!r}")
    if pinned == "none":
        return GpuAccess("none", (), "gpu_access = 'none': containers get no GPU")
    runtime = "nvidia" in (engine.get("runtimes") or [])
    devices = list(engine.get("cdi_devices") or [])
    spec_dirs = list(engine.get("cdi_spec_dirs") or [])
    if not engine.get("docker"):
        problem = None
        if gpu_node or pinned != "auto":
            problem = "the Docker engine is not reachable: start dockerd"
        return GpuAccess("none", (), "the Docker engine is not reachable", problem)

    runtime_flags = ("--gpus", "all")
    runtime_reason = "the engine has the NVIDIA runtime (docker info: Runtimes)"
    cdi_reason = f"the engine lists CDI devices {', '.join(devices)}"
    if pinned == "nvidia-runtime" or (pinned == "auto" and runtime):
        if runtime:
            return GpuAccess("nvidia-runtime", runtime_flags, runtime_reason)
        have = ", ".join(engine.get("runtimes") or []) or "none"
        return GpuAccess(
            "none",
            (),
            "no NVIDIA runtime",
            f"gpu_access = 'nvidia-runtime' but the engine has no 'nvidia' runtime "
            f"(runtimes: {have}): {_TOOLKIT}, then restart dockerd",
        )
    if devices:
        return GpuAccess("cdi", _cdi_flags(devices), cdi_reason)

    if not spec_dirs:
        cdi_state = "CDI is off in the engine (docker info lists no CDI spec dirs)"
        cdi_fix = f"{_CDI_ON}, then {_CDI_GENERATE}"
    else:
        cdi_state = f"no CDI spec of kind {CDI_KIND} in {', '.join(spec_dirs)}"
        errors = engine.get("spec_errors") or []
        if errors:
            cdi_state += f" (unreadable: {'; '.join(errors)})"
        cdi_fix = _CDI_GENERATE
    if pinned == "cdi":
        return GpuAccess(
            "none", (), "no CDI GPU device", f"gpu_access = 'cdi' but {cdi_state}: {cdi_fix}"
        )
    reason = f"no NVIDIA runtime and {cdi_state}"
    if not gpu_node:
        return GpuAccess("none", (), reason + ": containers run without a GPU")
    return GpuAccess(
        "none",
        (),
        reason,
        f"refused as a GPU node: the engine can give no GPU to a container: {reason}. "
        f"Either {_TOOLKIT}, or {cdi_fix}; or pin gpu_access = 'none' for a node without a GPU",
    )
