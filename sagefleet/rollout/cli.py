"""``python -m sagefleet.rollout``: arguments, the checks before any host is
contacted (pins of every host, --limit, --image), then sagefleet.rollout.driver."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from . import driver, session
from .plan import format_preview, format_summary

EXIT_HALTED = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad arguments or data: nothing was contacted."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sagefleet.rollout",
        description="Roll an image out to the GPU nodes: build once, push, canary, batches.",
    )
    p.add_argument("action", nargs="?", choices=("deploy", "rollback"), default="deploy")
    p.add_argument("--dry", action="store_true", help="show current -> target; change nothing")
    p.add_argument("--batch-size", type=int, help="default: the pin rollout_batch_size")
    p.add_argument("--canary-group", help="default: the pin rollout_canary_group")
    p.add_argument("--limit", action="append", default=[], help="pyinfra --limit pattern")
    p.add_argument("--image", help="roll out this repo@sha256:... (no build, no push)")
    p.add_argument("--summary-json", help="also write the summary here")
    p.add_argument("--group-data", action="append", default=[], help="as pyinfra's")
    p.add_argument("--data", action="append", default=[], help="as pyinfra's: key=value")
    return p


def validated_pins(inventory, cwd: str) -> dict:
    """Every host's pins, validated before any contact (as the CLI run does)."""
    from ..pins import host_pins, validate_inventory

    errors = validate_inventory(inventory, cwd)
    if errors:
        raise UsageError("invalid pins, no host was contacted:\n  " + "\n  ".join(errors))
    return {h.name: host_pins(h, inventory, cwd) for h in inventory}


def select_nodes(inventory, limits: list[str]) -> list[str]:
    """GPU nodes (group gpu_nodes, in its order) matched by the --limit patterns."""
    nodes = [h.name for h in inventory.get_group("gpu_nodes", [])]
    if not nodes:
        raise UsageError("no GPU nodes (group gpu_nodes is empty or missing)")
    if not limits:
        return nodes
    matched = session.match(inventory, limits)
    for pattern, names in matched.items():
        if not set(names) & set(nodes):
            raise UsageError(f"--limit {pattern!r} matches no GPU node (group gpu_nodes)")
    wanted = {n for names in matched.values() for n in names}
    return [n for n in nodes if n in wanted]


def one_value(pins: dict, nodes: list[str], key: str):
    """A fleet-wide pin (pins.service): every selected node must have the same value."""
    values = {n: getattr(pins[n].service, key) for n in nodes}
    if len(set(values.values())) > 1:
        shown = ", ".join(f"{n}={v!r}" for n, v in values.items())
        raise UsageError(f"{key} differs between the selected GPU nodes: {shown}")
    return values[nodes[0]]


def settings(args, inventory, pins: dict, nodes: list[str]) -> driver.Settings:
    size = args.batch_size or one_value(pins, nodes, "rollout_batch_size")
    if size < 1:
        raise UsageError(f"--batch-size {size}: must be >= 1")
    group = args.canary_group or one_value(pins, nodes, "rollout_canary_group")
    canary = tuple(h.name for h in inventory.get_group(group, []))
    auto = one_value(pins, nodes, "rollout_auto_rollback")
    return driver.Settings(batch_size=size, canary=canary, auto_rollback=auto)


def resolve_target(args, target, inventory) -> str | None:
    """The digest to roll out: --image, else what the first build host publishes."""
    if args.action == "rollback":
        return None
    if args.image:
        from ..pins.check import DIGEST_REF, IMAGE_REF

        if not (DIGEST_REF.fullmatch(args.image) and IMAGE_REF.fullmatch(args.image)):
            raise UsageError(f"--image {args.image!r}: must be repo@sha256:<64 hex>")
        return args.image
    builders = [h.name for h in inventory.get_group("build_hosts", [])]
    if not builders:
        raise UsageError("no build host to publish from; pass --image REPO@sha256:...")
    image, note = driver.publish(target, builders[0], args.dry)
    driver.say(f"target {image}: {note}")
    return image


def run(args) -> int:
    from ..pins.validate import validated

    target = session.Target.from_cli(args.data, args.group_data)
    inventory = target.inventory_obj()
    pins = validated_pins(inventory, target.cwd)
    target = replace(target, validated={h.name: validated(h) for h in inventory})
    nodes = select_nodes(inventory, args.limit)
    conf = settings(args, inventory, pins, nodes)
    image = resolve_target(args, target, inventory)
    if args.action == "deploy" and not image and not args.dry:
        return EXIT_HALTED
    if args.dry:
        records, errors = driver.preview(target, nodes, image, args.action == "rollback")
        for node, why in errors.items():
            driver.say(f"{node}: no preview: {why}")
        print(format_preview(image, records, nodes), flush=True)
        return EXIT_HALTED if errors else 0
    summary = driver.roll(target, args.action, nodes, conf, image)
    print("\n" + format_summary(summary), flush=True)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    return 0 if summary.ok else EXIT_HALTED


def main(argv: list[str] | None = None) -> int:
    from pyinfra_cli.log import setup_logging

    from ..fleet import FleetError

    args = parser().parse_args(argv)
    setup_logging(logging.INFO)
    try:
        return run(args)
    except (UsageError, FleetError, ValueError) as e:
        print(f"sagefleet: {e}", file=sys.stderr)
        return EXIT_USAGE
