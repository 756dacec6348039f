"""bake's progress (``--progress=plain`` or ``--progress=rawjson``) as per-step events.

A long bake (complete-cuda runs for tens of minutes) writes its progress to the
build host's log; the control machine reads that log as it grows and feeds the new
text to ``BakeProgress.feed``, which returns the steps that changed. Each step
knows its target, its place in its Dockerfile ("step n of m"), its first line,
whether it was CACHED, how long it ran and its error. ``slowest`` and ``summary``
are for the end of a bake; ``format_step`` / ``format_bar`` for live display.

Pure: imports no pyinfra, reads no files; text in, steps out.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import datetime

# "[complete-cuda 2/3] RUN ..." or "[target stage 2/3] RUN ..." (multi-stage files).
_LABEL = re.compile(
    r"^\[(?P<target>[^\]\s]+)(?: (?P<stage>[^\]\s]+))? (?P<n>\d+)/(?P<m>\d+)\] (?P<cmd>.*)$",
    re.S,
)
_TARGET_ONLY = re.compile(r"^\[(?P<target>[^\]\s]+)(?: [^\]]*)?\] ")
_PLAIN = re.compile(r"^#(?P<n>\d+) (?P<rest>.*)$")
_DONE = re.compile(r"^DONE (?P<s>\d+(?:\.\d+)?)s$")
_LOG = re.compile(r"^\d+\.\d+ (?P<text>.*)$")
_WS = re.compile(r"\s+")
# A layer pulled for a step: "sha256:<hex> 7.00MB / 7.00MB 0.1s done".
_PULL = re.compile(r"^sha256:[0-9a-f]{64} \S+ / \S+(?: \S+)? done$")
FIRST_LINE_MAX = 72


@dataclass
class Step:
    """One vertex of the build graph as bake reported it (build steps and internal ones)."""

    id: str  # "#12" (plain) or the vertex digest (rawjson)
    name: str
    target: str | None = None
    stage: str | None = None
    index: int | None = None  # n of "n/m": the step's place in its Dockerfile
    total: int | None = None
    instruction: str = ""
    started: bool = False
    done: bool = False
    cached: bool = False
    error: str | None = None
    elapsed: float = 0.0
    log_lines: int = 0
    pulled: int = 0  # layers pulled for this step (plain: a registry cache hit)
    order: int = 0  # when it first appeared
    _intervals: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def is_build_step(self) -> bool:
        """A Dockerfile instruction ("[target n/m] ..."), not an internal vertex."""
        return self.index is not None

    @property
    def first_line(self) -> str:
        """The instruction on one line (continuations joined), shortened for display."""
        text = _WS.sub(" ", self.instruction or self.name).strip()
        return text if len(text) <= FIRST_LINE_MAX else text[: FIRST_LINE_MAX - 1] + "…"

    @property
    def from_cache(self) -> bool:
        """CACHED, or (plain log) a step that printed nothing and only pulled its layers.

        BuildKit's plain printer can drop the CACHED line of a step whose hit came
        from a registry cache: the vertex is reported again while its layers are
        pulled, and only that second report is printed. rawjson keeps the flag."""
        return self.cached or (self.pulled > 0 and self.log_lines == 0 and not self.error)

    @property
    def position(self) -> str:
        return f"{self.index}/{self.total}" if self.is_build_step else "-"


def _classify(step: Step) -> None:
    m = _LABEL.match(step.name)
    if m:
        step.target, step.stage = m["target"], m["stage"]
        step.index, step.total = int(m["n"]), int(m["m"])
        step.instruction = m["cmd"]
        return
    m = _TARGET_ONLY.match(step.name)
    if m:
        step.target = m["target"]
    step.instruction = step.name


def _ts(value: str | None) -> float | None:
    """RFC 3339 with nanoseconds -> POSIX seconds (Python parses microseconds)."""
    if not value or value.startswith("0001-"):
        return None
    m = re.match(r"^(.*?)(\.\d+)?(Z|[+-]\d\d:\d\d)$", value)
    if not m:
        return None
    frac = (m[2] or ".0")[:7]
    tz = "+00:00" if m[3] == "Z" else m[3]
    return datetime.fromisoformat(f"{m[1]}{frac}{tz}").timestamp()


class BakeProgress:
    """Incremental parser of one bake's progress; the format is detected from the
    first non-blank character ('{': rawjson, '#': plain).

    Examples:
        p = BakeProgress()
        for step in p.feed(new_text):      # steps that changed with this text
            print(format_step(step))
        p.slowest(3), p.summary()
    """

    def __init__(self, fmt: str | None = None) -> None:
        if fmt not in (None, "plain", "rawjson"):
            raise ValueError(f"unknown progress format {fmt!r} (plain or rawjson)")
        self.format = fmt
        self.steps: dict[str, Step] = {}
        self.warnings: list[str] = []
        self.final_error: str | None = None
        self._buf = ""
        self._decoder = json.JSONDecoder()

    # ---- feeding
    def feed(self, text: str) -> list[Step]:
        """Parse more of the log; return the steps this text changed (in log order)."""
        self._buf += text
        if self.format is None:
            stripped = self._buf.lstrip()
            if not stripped:
                return []
            self.format = "rawjson" if stripped[0] == "{" else "plain"
        changed: dict[str, Step] = {}
        if self.format == "plain":
            self._feed_plain(changed)
        else:
            self._feed_rawjson(changed)
        return sorted(changed.values(), key=lambda s: s.order)

    def _step(self, sid: str, name: str) -> Step:
        step = self.steps.get(sid)
        if step is None:
            step = Step(id=sid, name=name, order=len(self.steps))
            _classify(step)
            self.steps[sid] = step
        return step

    def _feed_plain(self, changed: dict[str, Step]) -> None:
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            line = line.rstrip("\r")
            m = _PLAIN.match(line)
            if not m:
                if line.startswith("ERROR: "):
                    self.final_error = line[len("ERROR: ") :]
                continue
            sid, rest = f"#{m['n']}", m["rest"]
            step = self.steps.get(sid)
            if step is None:
                step = self._step(sid, rest)
                step.started = True
                changed[sid] = step
                continue
            if rest == step.name or rest == "...":
                continue
            if rest == "CACHED":
                step.cached = step.done = True
            elif _DONE.match(rest):
                step.done = True
                step.elapsed += float(_DONE.match(rest)["s"])
            elif rest.startswith("ERROR: ") or rest == "ERROR":
                step.done = True
                step.error = rest[len("ERROR: ") :] if rest != "ERROR" else "failed"
            elif rest == "CANCELED":
                step.done = True
                step.error = step.error or "canceled"
            elif _LOG.match(rest):
                step.log_lines += 1
            elif _PULL.match(rest):
                step.pulled += 1
            else:
                continue  # a status line (transfer, extracting, naming ...)
            changed[sid] = step

    def _feed_rawjson(self, changed: dict[str, Step]) -> None:
        buf, pos = self._buf, 0
        while True:
            while pos < len(buf) and buf[pos].isspace():
                pos += 1
            if pos >= len(buf):
                break
            if buf[pos] != "{":
                # bake prints a few plain lines (e.g. "ERROR: ...") around the JSON.
                end = buf.find("\n", pos)
                if end < 0:
                    break
                line = buf[pos:end].strip()
                if line.startswith("ERROR: "):
                    self.final_error = line[len("ERROR: ") :]
                pos = end + 1
                continue
            try:
                doc, pos = self._decoder.raw_decode(buf, pos)
            except json.JSONDecodeError:
                break  # incomplete object: wait for more text
            self._apply_status(doc, changed)
        self._buf = buf[pos:]

    def _apply_status(self, doc: dict, changed: dict[str, Step]) -> None:
        for v in doc.get("vertexes") or []:
            step = self._step(v["digest"], v.get("name", ""))
            started, completed = _ts(v.get("started")), _ts(v.get("completed"))
            if started is not None:
                step.started = True
                if completed is not None:
                    step._intervals[str(started)] = completed - started
                    step.elapsed = sum(step._intervals.values())
            if v.get("cached"):
                step.cached = True
            if completed is not None:
                step.done = True
            if v.get("error"):
                step.error = v["error"]
            changed[step.id] = step
        for log in doc.get("logs") or []:
            step = self.steps.get(log.get("vertex", ""))
            if step is None:
                continue
            data = base64.b64decode(log.get("data") or "").decode(errors="replace")
            step.log_lines += data.count("\n")
            changed[step.id] = step
        for w in doc.get("warnings") or []:
            short = w.get("short")
            text = base64.b64decode(short).decode(errors="replace") if short else ""
            if text:
                self.warnings.append(text)

    # ---- queries
    def build_steps(self) -> list[Step]:
        """Dockerfile instructions, in order of appearance (FROM included)."""
        return [s for s in self.steps.values() if s.is_build_step]

    def cached_steps(self) -> list[Step]:
        """Steps that came from the cache, FROM lines left out."""
        return [s for s in self.build_steps() if s.from_cache and not _is_from(s)]

    def executed_steps(self) -> list[Step]:
        """Steps that ran (not CACHED), FROM lines left out (they only resolve the base)."""
        return [s for s in self.build_steps() if not s.from_cache and not _is_from(s)]

    def current(self) -> Step | None:
        """The latest build step that started and has not finished."""
        running = [s for s in self.build_steps() if s.started and not s.done]
        return running[-1] if running else None

    def failed(self) -> list[Step]:
        """Steps whose error failed the bake (cache import errors are left out: bake
        goes on without that cache)."""
        return [s for s in self.steps.values() if s.error and not _ignorable(s)]

    def ignored_errors(self) -> list[Step]:
        """Errors bake went on after: a cache that could not be imported."""
        return [s for s in self.steps.values() if s.error and _ignorable(s)]

    def slowest(self, n: int = 3) -> list[Step]:
        """The n build steps that took longest (ties: the earlier first)."""
        timed = [s for s in self.build_steps() if s.done and s.elapsed > 0]
        return sorted(timed, key=lambda s: (-s.elapsed, s.order))[:n]

    def summary(self, n: int = 3) -> str:
        """One line: steps, cached, failed, and the slowest steps."""
        parts = [
            f"{len(self.cached_steps()) + len(self.executed_steps())} steps, "
            f"{len(self.cached_steps())} cached"
        ]
        failed = self.failed()
        if failed:
            parts.append(f"failed: {failed[0].first_line}: {failed[0].error}")
        slow = self.slowest(n)
        if slow:
            parts.append(
                "slowest: "
                + "; ".join(f"{s.elapsed:.1f}s {_where(s)} {s.first_line}" for s in slow)
            )
        return ", ".join(parts[:1]) + ("; " + "; ".join(parts[1:]) if parts[1:] else "")


def _is_from(step: Step) -> bool:
    return step.instruction.upper().startswith("FROM ")


def _ignorable(step: Step) -> bool:
    return "importing cache manifest" in step.name


def _where(step: Step) -> str:
    return f"[{step.target} {step.position}]" if step.is_build_step else f"[{step.target}]"


def format_step(step: Step, elapsed: float | None = None) -> str:
    """A plain progress line: ``complete-cuda step 2/3 RUN pip install ... CACHED``."""
    if step.is_build_step:
        head = f"{step.target} step {step.position}"
    else:
        head = step.target or "bake"
    if step.error:
        state = f"ERROR {step.error.splitlines()[0][:120]}"
    elif step.from_cache:
        state = "CACHED"
    elif step.done:
        state = f"done {step.elapsed:.1f}s"
    else:
        state = f"{elapsed:.0f}s" if elapsed is not None else "running"
    return f"{head} {step.first_line} {state}"


def format_bar(progress: BakeProgress, width: int = 20, elapsed: float | None = None) -> str:
    """A one-line bar for a terminal: finished build steps of those seen so far, and
    the step running now."""
    steps = [s for s in progress.build_steps()]
    done = sum(1 for s in steps if s.done)
    total = max(len(steps), 1)
    filled = int(width * done / total)
    bar = "#" * filled + "-" * (width - filled)
    now = progress.current()
    tail = format_step(now, elapsed) if now else (steps and format_step(steps[-1])) or "starting"
    return f"[{bar}] {done}/{len(steps)} {tail}"
