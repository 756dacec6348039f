"""The stored result of the kernel probe (the probe itself is an operation)."""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

from ..commands import q
from .util import json_doc, sectioned, sections, text


class ProbeResult(FactBase):
    """
    The stored kernel-probe result of the image a tag points to now.

    Returns ``{"image_id": str | None, "result": dict | None}``: ``result`` is the
    probe's JSON document stored by ``sagefleet.operations.verify.probe`` for exactly
    this image ID, or None when this image has not been probed.
    """

    def command(self, image_ref: str, results_dir: str) -> str:
        return sectioned(
            {
                "image_id": (
                    f"id=$(docker image inspect -f '{{{{.Id}}}}' {q(image_ref)} 2>/dev/null)"
                    " && printf '%s\\n' \"$id\" || id=''"
                ),
                # The result is stored under the image ID (the file name is the ID).
                "result": (
                    f'[ -z "$id" ] || cat {q(results_dir)}/"${{id#sha256:}}".json 2>/dev/null'
                    " || true"
                ),
            }
        )

    def default(self) -> dict[str, Any]:
        return {"image_id": None, "result": None}

    def process(self, output: list[str]) -> dict[str, Any]:
        parts = sections(output)
        image_id = text(parts.get("image_id"))
        return {"image_id": image_id, "result": json_doc(parts.get("result")) if image_id else None}
