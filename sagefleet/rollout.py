"""Rollout to GPU nodes: build once, push, then canary and batches; halt; rollback.

    python -m sagefleet.rollout [--dry] [--batch-size N] [--image REPO@sha256:...]
    python -m sagefleet.rollout rollback [--limit HOST|GROUP] [--dry]

1. publish: the first build host builds (when inputs changed), verifies and pushes
   with ``bake --push``; the digest from bake's metadata file is the target.
2. the canary group, then the other GPU nodes in batches, each one
   ``pyinfra -y inventory.py rollout.py --limit <batch> --data target_image=<digest>``.
   A failed node (pull, verification gate, start, health check) stops the rollout:
   later batches are not touched, the exit status is 1.
3. a summary: moved / unchanged / failed (why) / not touched; also as JSON.

Re-running continues: nodes already on the target digest with the same settings are
no-ops. ``rollback`` starts each node's recorded previous digest. ``--dry`` runs
pyinfra with --dry and prints current -> target per node; nothing changes.

The planning (batches, summary, failure reasons) is pure and tested alone; only
``main`` and ``run_step`` start processes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .project import PROJECT_ROOT, PYINFRA_CLI

EXIT_HALTED = 1
EXIT_USAGE = 2

# --------------------------------------------------------------------------- pure planning


def group_members(groups: Mapping[str, Sequence]) -> dict[str, list[str]]:
    """{group: [host names]} from load_fleet's {group: [name | (name, data)]}."""
    return {
        g: [h if isinstance(h, str) else h[0] for h in members] for g, members in groups.items()
    }


def select(
    groups: Mapping[str, list[str]], limits: Sequence[str], base: str = "gpu_nodes"
) -> list[str]:
    """Hosts of ``base`` named by limits (host or group names), in ``base`` order."""
    nodes = list(groups.get(base, []))
    if not limits:
        return nodes
    wanted: set[str] = set()
    for limit in limits:
        if limit in groups:
            wanted.update(groups[limit])
        elif limit in nodes:
            wanted.add(limit)
        else:
            raise ValueError(f"--limit {limit!r}: no such host in {base} and no such group")
    return [n for n in nodes if n in wanted]


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


_HOST_LINE = re.compile(r"^\s*\[(?P<host>[^\]]+)\]\s*(?P<text>.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failure_reasons(output: str, hosts: Iterable[str]) -> dict[str, str]:
    """The most telling line pyinfra printed for each host: the last ``sagefleet:``
    message, else its last error line. Hosts with nothing get no entry."""
    hosts = set(hosts)
    found: dict[str, str] = {}
    errors: dict[str, str] = {}
    for raw in output.splitlines():
        line = _ANSI.sub("", raw)
        m = _HOST_LINE.match(line)
        if not m or m.group("host") not in hosts:
            continue
        host, text = m.group("host"), m.group("text").strip()
        text = re.sub(r"^(>>>|stderr:|stdout:)\s*", "", text)
        if "sagefleet:" in text:
            found[host] = text[text.index("sagefleet:") + len("sagefleet:") :].strip()
        elif re.search(r"error|failed|denied|unauthorized|x509|health check", text, re.I):
            errors[host] = text
    return {h: found.get(h) or errors[h] for h in hosts if h in found or h in errors}


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
            "seconds": round(self.seconds, 1),
        }


def apply_batch(
    summary: Summary,
    index: int,
    batch: Sequence[str],
    results: Mapping[str, dict],
    rc: int,
    reasons: Mapping[str, str],
) -> bool:
    """Fold one batch's per-host results into the summary; False: halt here."""
    for host in batch:
        rec = results.get(host)
        status = rec.get("status") if rec else None
        if status in ("moved", "restarted"):
            summary.moved[host] = rec.get("after") or ""
        elif status == "unchanged":
            summary.unchanged.append(host)
        elif status == "failed":
            summary.failed[host] = rec.get("reason") or "health check failed"
        else:
            summary.failed[host] = reasons.get(host) or (
                f"no result (pyinfra exited {rc}; see its output above)"
            )
    if rc != 0 and not any(h in summary.failed for h in batch):
        # pyinfra failed without a failing node we know of: never continue blind.
        summary.failed.update({h: f"pyinfra exited {rc}" for h in batch})
    if any(h in summary.failed for h in batch):
        summary.halted_at = index
        summary.untouched = [h for b in summary.batches[index + 1 :] for h in b]
        return False
    return True


def format_summary(s: Summary) -> str:
    lines = [f"sagefleet rollout summary ({s.action}, target {s.target or 'per-node previous'}):"]
    for host, image in s.moved.items():
        lines.append(f"  moved      {host}: now {image}")
    for host in s.unchanged:
        lines.append(f"  unchanged  {host}: already on the target")
    for host, why in s.failed.items():
        lines.append(f"  FAILED     {host}: {why}")
    for host in s.untouched:
        lines.append(f"  untouched  {host}: not reached (rollout halted)")
    if s.halted_at is not None:
        lines.append(
            f"  halted at batch {s.halted_at + 1} of {len(s.batches)}; fix the failure and re-run: "
            "nodes already on the target are no-ops"
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


# --------------------------------------------------------------------------- running pyinfra


@dataclass
class Step:
    rc: int
    output: str
    results: dict[str, dict]


def run_step(
    limits: Sequence[str],
    data: Mapping[str, str],
    extra: Sequence[str] = (),
    dry: bool = False,
    env: Mapping[str, str] | None = None,
) -> Step:
    """One ``pyinfra inventory.py rollout.py`` over limits; per-host results from files."""
    with tempfile.TemporaryDirectory(prefix="sagefleet-rollout-") as results_dir:
        cmd = [PYINFRA_CLI, *([] if dry else ["-y"]), "inventory.py", "rollout.py"]
        cmd += ["--dry"] if dry else []
        for limit in limits:
            cmd += ["--limit", limit]
        for key, value in {**data, "rollout_results_dir": results_dir}.items():
            cmd += ["--data", f"{key}={value}"]
        cmd += list(extra)
        print("+ " + " ".join(cmd), flush=True)
        proc = subprocess.Popen(
            cmd,
            cwd=PROJECT_ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        out = []
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            sys.stdout.write(line)
        rc = proc.wait()
        sys.stdout.flush()
        results = {}
        for path in Path(results_dir).glob("*.json"):
            rec = json.loads(path.read_text())
            results[rec["host"]] = rec
    return Step(rc, "".join(out), results)


def _defaults() -> dict:
    import runpy

    data = runpy.run_path(str(PROJECT_ROOT / "group_data" / "all.py"))
    return {"batch_size": data["rollout_batch_size"], "canary": data["rollout_canary_group"]}


def publish(build_host: str, extra: Sequence[str], dry: bool) -> tuple[str | None, str]:
    """Build + push on one build host; (target image repo@digest or None, why not)."""
    step = run_step([build_host], {"rollout_action": "preview" if dry else "publish"}, extra, dry)
    rec = step.results.get(build_host)
    if dry:
        if rec and rec.get("image"):
            note = (
                "" if rec.get("up_to_date") else " (inputs changed: a build + push would run first)"
            )
            return rec["image"], f"last pushed by {build_host}{note}"
        return None, f"{build_host} has pushed nothing yet (a build + push would run first)"
    if step.rc != 0 or not rec:
        why = failure_reasons(step.output, [build_host]).get(
            build_host, f"pyinfra exited {step.rc}"
        )
        return None, f"publish on {build_host} failed: {why}"
    return rec["image"], f"pushed by {build_host}"


def run_rollout(
    action: str,
    nodes: Sequence[str],
    canary: Sequence[str],
    batch_size: int,
    target: str | None,
    extra: Sequence[str],
) -> Summary:
    batches = plan_batches(nodes, canary, batch_size)
    summary = Summary(action=action, target=target, batches=batches)
    t0 = time.monotonic()
    data = {"rollout_action": action}
    if target:
        data["target_image"] = target
    for i, batch in enumerate(batches):
        label = "canary" if i == 0 and set(batch) <= set(canary) else f"batch {i + 1}"
        print(f"\nsagefleet: {action} {label}: {', '.join(batch)}", flush=True)
        step = run_step(batch, data, extra)
        reasons = failure_reasons(step.output, batch)
        if not apply_batch(summary, i, batch, step.results, step.rc, reasons):
            break
    summary.seconds = time.monotonic() - t0
    return summary


def main(argv: list[str] | None = None) -> int:
    defaults = _defaults()
    parser = argparse.ArgumentParser(
        prog="python -m sagefleet.rollout", description=__doc__.splitlines()[0]
    )
    parser.add_argument("action", nargs="?", choices=("deploy", "rollback"), default="deploy")
    parser.add_argument(
        "--dry", action="store_true", help="show current -> target per node; change nothing"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"default rollout_batch_size ({defaults['batch_size']})",
    )
    parser.add_argument("--canary-group", default=defaults["canary"])
    parser.add_argument(
        "--limit", action="append", default=[], help="GPU node or group (repeatable)"
    )
    parser.add_argument(
        "--image", help="roll out this repo@sha256:... instead of building and pushing"
    )
    parser.add_argument("--summary-json", help="also write the summary here")
    parser.add_argument("--group-data", action="append", default=[], help="passed to pyinfra")
    parser.add_argument("--data", action="append", default=[], help="passed to pyinfra (key=value)")
    args = parser.parse_args(argv)

    from .fleet import FleetError, load_fleet

    try:
        groups = group_members(load_fleet())
        nodes = select(groups, args.limit)
    except (FleetError, ValueError) as e:
        print(f"sagefleet: {e}", file=sys.stderr)
        return EXIT_USAGE
    if not nodes:
        print("sagefleet: no GPU nodes selected (group gpu_nodes)", file=sys.stderr)
        return EXIT_USAGE
    extra = [a for g in args.group_data for a in ("--group-data", g)]
    extra += [a for d in args.data for a in ("--data", d)]
    batch_size = args.batch_size or defaults["batch_size"]
    canary = groups.get(args.canary_group, [])

    target = args.image
    if args.action == "deploy" and not target:
        builders = groups.get("build_hosts", [])
        if not builders:
            print(
                "sagefleet: no build host to publish from; pass --image REPO@sha256:...",
                file=sys.stderr,
            )
            return EXIT_USAGE
        target, note = publish(builders[0], extra, args.dry)
        print(f"sagefleet: target {target}: {note}", flush=True)
        if not target and not args.dry:
            return EXIT_HALTED

    if args.dry:
        data = {"rollout_action": "preview"}
        if args.action == "deploy" and target:
            data["target_image"] = target
        step = run_step(nodes, data, extra, dry=True)
        print(format_preview(target if args.action == "deploy" else None, step.results, nodes))
        return 0 if step.rc == 0 else EXIT_HALTED

    summary = run_rollout(args.action, nodes, canary, batch_size, target, extra)
    print("\n" + format_summary(summary), flush=True)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    return 0 if summary.ok else EXIT_HALTED


if __name__ == "__main__":
    sys.exit(main())
