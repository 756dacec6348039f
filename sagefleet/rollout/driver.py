"""The rollout: publish on a build host, then the canary and the batches, each one
pyinfra State (sagefleet.rollout.session); halt at the first failed batch and roll
its replaced nodes back to the digest each ran before (rollout_auto_rollback)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..deploys.rollout import preview_node, publish_image, published_image, rollout_node
from . import session
from .plan import NodeResult, Summary, apply_batch, apply_rollback, plan_batches, rollback_targets


def say(message: str) -> None:
    print(f"sagefleet: {message}", flush=True)


@dataclass(frozen=True)
class Settings:
    """The rollout settings of a run: from the validated pins, CLI flags over them."""

    batch_size: int
    canary: tuple[str, ...]  # members of the canary group
    auto_rollback: bool


def node_result(run: session.HostRun) -> NodeResult:
    """A node's step, read from its run: failed (why), else moved / restarted /
    unchanged by whether the service operation replaced the container."""
    plan = run.value
    service = plan.service if plan else None
    done = bool(service and service.is_complete())
    # A failed service step may have removed the old container: count it as replaced.
    replaced = done and (service.did_change() or service.did_error())
    before = plan.before if plan else None
    if not run.ok:
        image = plan.image if plan else None
        return NodeResult("failed", image, run.error, before=before, replaced=replaced)
    if not replaced:
        status = "unchanged"
    else:
        status = "moved" if before != plan.image else "restarted"
    return NodeResult(status, image=plan.image, before=before, replaced=replaced)


def step(
    target: session.Target,
    nodes: Sequence[str],
    image: str | None = None,
    rollback: bool = False,
    images: Mapping[str, str] | None = None,
) -> dict[str, NodeResult]:
    """One State over nodes: each pulls image (or images[node], or its previous
    digest for a rollback), is verified, (re)started if needed, health-checked."""
    from pyinfra import host

    def prepare():
        return rollout_node(image=(images or {}).get(host.name, image), rollback=rollback)

    runs = session.run(target, nodes, prepare)
    return {n: node_result(runs[n]) for n in nodes}


def settled(
    target: session.Target, nodes: Sequence[str], image: str, deploy=rollout_node
) -> dict[str, NodeResult]:
    """One State over every node, planned: each operation decides while preparing
    (pyinfra's own change detection, as the CLI without -y). A node where no
    operation would change anything is settled: only its health check runs, here,
    and it needs no batch. Returns the settled nodes' results (unchanged or failed)."""
    from pyinfra import host

    quiet: set[str] = set()

    def prepare():
        name = host.name
        never = lambda: False  # noqa: E731 - the steps are only planned in this State
        return deploy(image=image, _if=never, health_if=lambda: name in quiet)

    s = session.Session(target, nodes, plan=True)
    try:
        s.connect()
        s.prepare(prepare)
        ready = [n for n in nodes if s.results.get(n) and s.results[n].ok]
        quiet.update(n for n in ready if not s.would_change(n))
        if quiet:
            s.execute()
    finally:
        runs = s.close()
    return {n: node_result(runs[n]) for n in nodes if n in quiet}


def auto_rollback(
    target: session.Target, summary: Summary, batch: Sequence[str], results: Mapping
) -> None:
    back = rollback_targets(batch, results)
    if not back:
        say("automatic rollback: no node of the failed batch was replaced")
        return
    say(f"automatic rollback of {', '.join(back)} to the digest each ran before")
    apply_rollback(summary, step(target, list(back), images=back))


def roll(
    target: session.Target,
    action: str,
    nodes: Sequence[str],
    settings: Settings,
    image: str | None,
) -> Summary:
    """A deploy first plans over every node (settled: nothing to do but the health
    check); then canary and batches over the rest; halt (and roll back a failed
    deploy batch) on failure. A batch of settled nodes only is not run again."""
    batches = plan_batches(nodes, settings.canary, settings.batch_size)
    summary = Summary(action=action, target=image, batches=batches)
    summary.auto_rollback = settings.auto_rollback and action == "deploy"
    t0 = time.monotonic()
    done = settled(target, nodes, image) if action == "deploy" and image else {}
    if done:
        say(f"settled (already on the target; health checked): {', '.join(done)}")
    for i, batch in enumerate(batches):
        label = "canary" if i == 0 and set(batch) <= set(settings.canary) else f"batch {i + 1}"
        todo = [n for n in batch if n not in done]
        results = {n: done[n] for n in batch if n in done}
        if todo:
            say(f"{action} {label}: {', '.join(todo)}")
            results.update(step(target, todo, image=image, rollback=action == "rollback"))
        if not apply_batch(summary, i, batch, results):
            if summary.auto_rollback:
                auto_rollback(target, summary, batch, results)
            break
    summary.seconds = time.monotonic() - t0
    return summary


def publish(target: session.Target, build_host: str, dry: bool) -> tuple[str | None, str]:
    """Build + push on one build host (dry: what it pushed last); (target, note)."""
    if dry:
        runs = session.run(target, [build_host], published_image, execute=False)
        run = runs[build_host]
        image, current = run.value if run.ok else (None, False)
        if not image:
            return None, f"{build_host} has pushed nothing yet (a build + push would run first)"
        note = "" if current else " (inputs changed: a build + push would run first)"
        return image, f"last pushed by {build_host}{note}"
    runs = session.run(target, [build_host], publish_image, finish=published_image)
    run = runs[build_host]
    if not run.ok:
        return None, f"publish on {build_host} failed: {run.error}"
    image, current = run.value
    if not image or not current:
        return None, f"publish on {build_host} failed: no pushed digest for the current inputs"
    return image, f"pushed by {build_host}"


def preview(
    target: session.Target, nodes: Sequence[str], image: str | None, rollback: bool
) -> tuple[dict[str, dict], dict[str, str]]:
    """Facts only, one State over every node: ({node: record}, {node: why no record})."""
    runs = session.run(
        target, nodes, lambda: preview_node(image=image, rollback=rollback), execute=False
    )
    records = {n: r.value for n, r in runs.items() if r.ok}
    return records, {n: r.error or "" for n, r in runs.items() if not r.ok}
