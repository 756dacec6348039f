"""Helpers for facts whose one command reads several things: each part's output goes
under a marker line, and process() splits them again. Every part prints the tool's
own output (JSON where the tool has it); no JSON is assembled in shell."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..commands import q

MARKER = "--- sagefleet part: "


def sectioned(parts: Mapping[str, str]) -> str:
    """One shell command running each part after its marker line, in order."""
    return "; ".join(f"echo {q(MARKER + name)}; {command}" for name, command in parts.items())


def sections(output: list[str]) -> dict[str, list[str]]:
    """The lines each part printed, by part name (a part that printed nothing: [])."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output:
        if line.startswith(MARKER):
            current = out.setdefault(line[len(MARKER) :].strip(), [])
        elif current is not None:
            current.append(line)
    return out


def text(lines: list[str] | None) -> str | None:
    """The part's output as one stripped string, None when it printed nothing."""
    joined = "\n".join(lines or []).strip()
    return joined or None


def json_doc(lines: list[str] | None) -> Any:
    """The part's output parsed as JSON, None when it printed nothing (or null)."""
    joined = text(lines)
    return json.loads(joined) if joined else None
