"""Pure rollout planning: batches, what each node's result means for the rollout,
the summary. Imports no pyinfra; tested alone (tests/unit/test_rollout.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# What a node's step did: moved (new digest), restarted (same digest, new settings),
# unchanged, failed (why in reason).
STATUSES = ("moved", "restarted", "unchanged", "failed")


@dataclass(frozen=True)
class NodeResult:
    """One node's result of one step, as read from pyinfra's state."""

    status: str
    image: str | None = None  # what it runs now (moved/restarted/unchanged)
    reason: str | None = None  # why it failed
    before: str | None = None  # what it ran before this step
    replaced: bool = False  # its container was replaced in this step (also when it failed)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


def plan_batches(nodes: Sequence[str], canary: Sequence[str], batch_size: int) -> list[list[str]]:
    """The canary nodes (those of ``nodes`` in the canary group) as batch 0, then the
    rest in order, ``batch_size`` at a time. Every node is in exactly one batch."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    first = [n for n in nodes if n in set(canary)]
    rest = [n for n in nodes if n not in set(first)]
    batches = [first] if first else []
    batches += [rest[i : i + batch_size] for i in range(0, len(rest), batch_size)]
    return batches


def rollback_targets(batch: Sequence[str], results: Mapping[str, NodeResult]) -> dict[str, str]:
    """{node: digest to go back to} for a failed batch: every node of it whose
    container was replaced in this step and that ran a digest before."""
    out = {}
    for node in batch:
        res = results.get(node)
        if res and res.replaced and res.before and res.before != res.image:
            out[node] = res.before
    return out


@dataclass
class Summary:
    """What a rollout (or rollback) did, node by node."""

    action: str
    target: str | None
    batches: list[list[str]]
    moved: dict[str, str] = field(default_factory=dict)  # host -> new image
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # host -> why
    untouched: list[str] = field(default_factory=list)
    halted_at: int | None = None  # index of the batch that failed
    auto_rollback: bool = False
    rolled_back: dict[str, str] = field(default_factory=dict)  # host -> image it is back on
    rollback_failed: dict[str, str] = field(default_factory=dict)  # host -> why
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and self.halted_at is None

    def to_json(self) -> dict:
        return {
            "action": self.action,
            "target": self.target,
            "ok": self.ok,
            "batches": self.batches,
            "moved": self.moved,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "untouched": self.untouched,
            "halted_at_batch": self.halted_at,
            "auto_rollback": self.auto_rollback,
            "rolled_back": self.rolled_back,
            "rollback_failed": self.rollback_failed,
            "seconds": round(self.seconds, 1),
        }


def apply_batch(
    summary: Summary, index: int, batch: Sequence[str], results: Mapping[str, NodeResult]
) -> bool:
    """Fold one batch's per-node results into the summary; False: halt here.
    A node without a result failed (never continue blind)."""
    for node in batch:
        res = results.get(node) or NodeResult("failed", reason="no result from pyinfra")
        if res.status in ("moved", "restarted"):
            summary.moved[node] = res.image or ""
        elif res.status == "unchanged":
            summary.unchanged.append(node)
        else:
            summary.failed[node] = res.reason or "failed (no reason reported)"
    if any(n in summary.failed for n in batch):
        summary.halted_at = index
        summary.untouched = [n for b in summary.batches[index + 1 :] for n in b]
        return False
    return True


def apply_rollback(summary: Summary, results: Mapping[str, NodeResult]) -> None:
    """Record the automatic rollback of a failed batch: who is back where, who is not."""
    for node, res in results.items():
        if res.status == "failed":
            summary.rollback_failed[node] = res.reason or "rollback failed"
        else:
            summary.rolled_back[node] = res.image or ""
            summary.moved.pop(node, None)


def format_summary(s: Summary) -> str:
    lines = [f"sagefleet rollout summary ({s.action}, target {s.target or 'per-node previous'}):"]
    for host, image in s.moved.items():
        lines.append(f"  moved      {host}: now {image}")
    for host in s.unchanged:
        lines.append(f"  unchanged  {host}: already on the target")
    for host, why in s.failed.items():
        lines.append(f"  FAILED     {host}: {why}")
    for host, image in s.rolled_back.items():
        lines.append(f"  rolled back {host}: back on {image} (automatic rollback)")
    for host, why in s.rollback_failed.items():
        lines.append(f"  ROLLBACK FAILED {host}: {why}")
    for host in s.untouched:
        lines.append(f"  untouched  {host}: not reached (rollout halted)")
    if s.halted_at is not None:
        rollback = ""
        if s.rolled_back or s.rollback_failed:
            rollback = "automatic rollback of that batch; "
        elif s.auto_rollback:
            rollback = "no node of that batch was replaced, nothing to roll back; "
        lines.append(
            f"  halted at batch {s.halted_at + 1} of {len(s.batches)}; {rollback}fix the failure "
            "and re-run: nodes already on the target are no-ops"
        )
    lines.append(f"  {'OK' if s.ok else 'FAILED'} in {s.seconds:.1f}s")
    return "\n".join(lines)


def format_preview(target: str | None, records: Mapping[str, dict], nodes: Sequence[str]) -> str:
    lines = [f"sagefleet rollout preview (--dry: nothing changed), target {target or 'previous'}:"]
    for host in nodes:
        rec = records.get(host)
        if not rec:
            lines.append(f"  {host}: no preview (host unreachable? see pyinfra output)")
            continue
        cur, tgt = rec.get("current") or "(no service)", rec.get("target") or "(none)"
        verdict = f"would restart: {rec['reason']}" if rec.get("restart") else "no change"
        if not rec.get("restart") and rec.get("reason"):
            verdict = rec["reason"]
        lines.append(f"  {host}: {cur} -> {tgt}  [{verdict}]")
    return "\n".join(lines)
