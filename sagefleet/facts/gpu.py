"""The GPUs of a host, and how its Docker engine can hand them to a container."""

from __future__ import annotations

import csv
import re
from typing import Any

from pyinfra.api import FactBase

from ..commands import q
from ..gpu_access import engine_gpu
from . import engine
from .util import MARKER, json_doc, sectioned, sections

_QUERY = "name,compute_cap,driver_version,memory.total"
_SPEC = "spec:"
_SPEC_LIMIT = 1024 * 1024


class GpuHost(FactBase):
    """
    The host's GPUs as nvidia-smi reports them (its CSV output).

    Returns ``{"gpus": [{"name", "capability", "driver", "memory_mib"}], "nvidia_smi": bool}``;
    no nvidia-smi (or no GPU) gives an empty list.
    """

    def requires_command(self) -> str:
        return "nvidia-smi"

    def command(self) -> str:
        # With the header line, a working nvidia-smi never prints nothing.
        return f"nvidia-smi --query-gpu={_QUERY} --format=csv,nounits"

    def default(self) -> dict[str, Any]:
        return {"nvidia_smi": False, "gpus": []}

    def process(self, output: list[str]) -> dict[str, Any]:
        rows = list(csv.reader(line for line in output if line.strip()))
        gpus = []
        for row in rows[1:]:  # rows[0] is nvidia-smi's header
            name, capability, driver, memory = (cell.strip() for cell in row[:4])
            gpus.append(
                {
                    "name": name,
                    "capability": capability,
                    "driver": driver,
                    "memory_mib": int(float(memory)) if memory.replace(".", "").isdigit() else None,
                }
            )
        return {"nvidia_smi": True, "gpus": gpus}


class EngineGpuAccess(FactBase):
    """
    What the Docker engine offers to hand GPUs to a container: ``docker info``'s JSON
    and, under one marker each, every ``*.yaml|*.yml|*.json`` in the CDI spec
    directories it lists (docker's own template prints them, one per line).

    Returns ``{"docker": bool, "server_version": str | None, "runtimes": [str],
    "cdi_spec_dirs": [str], "cdi_devices": [str], "spec_errors": [str]}``:
    ``runtimes`` as ``docker info`` lists them (``nvidia`` where the NVIDIA
    container runtime is configured), ``cdi_spec_dirs`` empty when the engine has
    CDI off, ``cdi_devices`` the ``nvidia.com/gpu=NAME`` devices of the specs there
    (or of ``DiscoveredDevices`` on engines that list them). Decided on by
    ``sagefleet.gpu_access.choose``.
    """

    def requires_command(self) -> str:
        return "docker"

    def command(self) -> str:
        return sectioned(ENGINE_PARTS)

    def default(self) -> dict[str, Any]:
        return engine_gpu(None, [])

    def process(self, output: list[str]) -> dict[str, Any]:
        return engine_gpu_of(sections(output))


# The parts of EngineGpuAccess's command, also read by NodeState (facts/service.py).
# "engine" picks the API or the CLI (facts/engine.py) and prints which. "info" prints
# the engine's info JSON: from the API, or from one `docker info` whose Go template
# prints the JSON on its first line and the CDI spec directories on the next ones.
# "specs" prints the spec files of those directories: the CLI's lines, or the names in
# the API's JSON. A spec dir name with '"', '\\' or ']' is never read (process() says
# so): JSON would escape it, or end the list early, so the API way asks the CLI when
# the JSON holds one, and the CLI way skips such lines.
_INFO = "{{json .}}{{range .CDISpecDirs}}{{println}}{{.}}{{end}}"
_DIR = r' *"/[^]"\\]*" *'  # grep BRE: one JSON string of a plain absolute path
_PLAIN_DIRS = rf'"CDISpecDirs": *\[\({_DIR},\)*\({_DIR}\)\{{0,1\}}\]'
_DIRS_FROM_JSON = (
    'grep -o \'"CDISpecDirs": *\\[[^]]*\\]\' | grep -o \'[[,] *"/[^]"\\\\]*"\' '
    "| sed 's/^[[,] *\"//; s/\"$//'"
)
ENGINE_PARTS = {
    "engine": engine.SELECT_AND_SAY,
    "info": (
        f'sf_cli_info=""; info=$({engine.info(_INFO)}) || info=""; '
        'if [ -n "$sf_sock" ] && printf \'%s\\n\' "$info" | grep -q \'"CDISpecDirs"\' '
        f"&& ! printf '%s\\n' \"$info\" | grep -q '{_PLAIN_DIRS}'; then sf_cli_info=1; "
        f"info=$({{ docker info --format {q(_INFO)}; }} 2>/dev/null) || info=''; fi; "
        "printf '%s\\n' \"$info\" | head -n 1"
    ),
    "specs": (
        'if [ -n "$sf_sock" ] && [ -z "$sf_cli_info" ]; then '
        f"dirs=$(printf '%s\\n' \"$info\" | head -n 1 | {_DIRS_FROM_JSON}); "
        "else dirs=$(printf '%s\\n' \"$info\" | tail -n +2 | grep -v '[]\"\\\\]'); fi; "
        'printf \'%s\\n\' "$dirs" | while IFS= read -r d; do [ -n "$d" ] || continue; '
        'for f in "$d"/*.yaml "$d"/*.yml "$d"/*.json; do '
        f'[ -f "$f" ] || continue; printf \'%s%s\\n\' {q(MARKER + _SPEC)} "$f"; '
        f'head -c {_SPEC_LIMIT} "$f"; echo; done; done'
    ),
}
_UNREAD = re.compile(r'["\\\]]')


def engine_gpu_of(parts: dict[str, list[str]]) -> dict[str, Any]:
    """The engine's GPU document from ENGINE_PARTS' sectioned output."""
    doc = engine_gpu(json_doc(parts.get("info")), cdi_specs(parts))
    for d in doc["cdi_spec_dirs"]:
        if _UNREAD.search(d):
            doc["spec_errors"].append(f"{d}: not read (a CDI spec dir name with '\"', '\\' or ']')")
    return doc


def cdi_specs(parts: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(path, text) of each CDI spec file ENGINE_PARTS printed, from the sectioned output."""
    return [
        (name[len(_SPEC) :], "\n".join(lines))
        for name, lines in parts.items()
        if name.startswith(_SPEC)
    ]
