"""The GPUs of a host."""

from __future__ import annotations

import csv
from typing import Any

from pyinfra.api import FactBase

_QUERY = "name,compute_cap,driver_version,memory.total"


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
