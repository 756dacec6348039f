"""The build context as a manifest of files (path, sha256, mode), and the
file-level difference between two manifests: what ``--dry --diff`` shows for a
context change (added / removed / changed paths, never archive bytes).

The host keeps the manifest of the context in place next to it
(``{build_dir}/context.manifest``, one ``<sha256> <mode> <path>`` line per file).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_LINE = re.compile(r"^(?P<sha>[0-9a-f]{64}) (?P<mode>[0-7]{3,4}) (?P<path>.+)$")


@dataclass(frozen=True)
class ContextChange:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]  # content or mode

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def lines(self, limit: int = 40) -> list[str]:
        """``+ path`` / ``- path`` / ``~ path`` lines, at most limit, then a count."""
        out = [f"+ {p}" for p in self.added]
        out += [f"- {p}" for p in self.removed]
        out += [f"~ {p}" for p in self.changed]
        if len(out) > limit:
            out = [*out[:limit], f"... and {len(out) - limit} more"]
        return out

    def summary(self) -> str:
        return f"{len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed"


def format_manifest(entries: Iterable[tuple[str, str, str]]) -> str:
    """``<sha256> <mode> <path>`` lines, sorted by path, from (path, sha256, mode)."""
    lines = []
    for path, sha, mode in sorted(entries):
        if "\n" in path or "\r" in path:
            raise ValueError(f"build context path {path!r} contains a line break")
        lines.append(f"{sha} {mode} {path}")
    return "".join(line + "\n" for line in lines)


def parse_manifest(text: str) -> dict[str, tuple[str, str]]:
    """path -> (sha256, mode); lines that do not parse are ignored (a damaged
    manifest then shows its files as added, and the context is replaced anyway)."""
    out = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            out[m["path"]] = (m["sha"], m["mode"])
    return out


def diff(
    before: Mapping[str, tuple[str, str]] | None, after: Mapping[str, tuple[str, str]]
) -> ContextChange:
    """What replacing a context with manifest ``before`` by ``after`` changes."""
    # Values may come back as lists from JSON (recorded facts): compare as tuples.
    before = {k: tuple(v) for k, v in (before or {}).items()}
    after = {k: tuple(v) for k, v in after.items()}
    return ContextChange(
        added=tuple(sorted(set(after) - set(before))),
        removed=tuple(sorted(set(before) - set(after))),
        changed=tuple(sorted(p for p in set(before) & set(after) if before[p] != after[p])),
    )
