"""The stored result of the kernel probe (the probe itself is an operation)."""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase

from ..commands import q


class ProbeResult(FactBase):
    """
    The stored kernel-probe result of the image a tag points to now.

    Returns ``{"image_id": str | None, "result": dict | None}``: ``result`` is the
    probe's JSON document stored by ``sagefleet.operations.probe`` for exactly
    this image ID, or None when this image has not been probed.
    """

    def command(self, image_ref: str, results_dir: str) -> str:
        return (
            f"id=$(docker image inspect -f '{{{{.Id}}}}' {q(image_ref)} 2>/dev/null) || "
            '{ printf \'{"image_id": null, "result": null}\\n\'; exit 0; }; '
            f'f={q(results_dir)}/"${{id#sha256:}}".json; '
            'if [ -s "$f" ]; then printf \'{"image_id": "%s", "result": \' "$id"; cat "$f"; printf \'}\\n\'; '
            'else printf \'{"image_id": "%s", "result": null}\\n\' "$id"; fi'
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        return json.loads("\n".join(output))
