"""The GPUs of a host."""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase


class GpuHost(FactBase):
    """
    The host's GPUs as nvidia-smi reports them, and whether Docker can hand them out.

    Returns ``{"gpus": [{"name", "capability", "driver", "memory_mib"}], "nvidia_smi": bool}``;
    no nvidia-smi (or no GPU) gives an empty list.
    """

    def command(self) -> str:
        return (
            "if command -v nvidia-smi >/dev/null 2>&1; then "
            'printf \'{"nvidia_smi": true, "gpus": [\'; '
            "nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total "
            "--format=csv,noheader,nounits 2>/dev/null | "
            'awk -F\', *\' \'{gsub(/"/, ""); printf "%s{\\"name\\": \\"%s\\", \\"capability\\": \\"%s\\", '
            '\\"driver\\": \\"%s\\", \\"memory_mib\\": %d}", (NR > 1 ? ", " : ""), $1, $2, $3, $4}\'; '
            "printf ']}\\n'; else printf '{\"nvidia_smi\": false, \"gpus\": []}\\n'; fi"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        return json.loads("\n".join(output))
