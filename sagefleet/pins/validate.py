"""Validation of group_data pins, before any host is contacted.

pyinfra merges group_data into one flat dict per host (``--data`` > host > group > all).
``validate`` checks that dict and returns ``Pins``: typed, frozen, with wheel file names and
URLs derived. Every value that later reaches a shell command or a URL is either refused here
or is a plain identifier/path from a narrow charset, so no quoting mistake downstream can turn
a pin into a command.

This module imports no pyinfra: it runs (and is tested) alone. ``host_pins`` reads a
pyinfra host's data through its public attributes only.
"""

from __future__ import annotations

import functools
import sys
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import keys, limits
from .build import BUILD_KEYS, BuildPins, check_build
from .check import MISSING, Checker, PinError
from .image import IMAGE_KEYS, ImagePins, check_image
from .service import SERVICE_KEYS, ServicePins, check_service
from .verify import VERIFY_KEYS, VerifyPins, check_verify


@dataclass(frozen=True)
class Pins:
    """Validated pins of one host: the image, its build, its verification, the service."""

    image: ImagePins
    build: BuildPins
    verify: VerifyPins
    service: ServicePins


# Every key sagefleet reads is declared once, in sagefleet.pins.keys (the allow-list);
# the sections' key tuples give the order of checks (that of group_data/all.py).
# Per-run parameters of a rollout (target digest, action) are arguments of
# sagefleet.rollout, never pins: group_data holds no such keys.
_KEY_ORDER = IMAGE_KEYS + BUILD_KEYS + VERIFY_KEYS + SERVICE_KEYS
KNOWN_KEYS: frozenset[str] = frozenset(keys.SAGEFLEET_KEYS)
HOST_SOURCE = "inventory host "  # how source_of names a host's table in the fleet file


def validate(
    data: Mapping[str, object],
    source_of: Callable[[str], str] = lambda key: "group_data/all.py",
    group_layers: Sequence[tuple[str, Mapping[str, object]]] = (),
    bake_platforms: Iterable[str] = (),
) -> Pins:
    """Check the merged host data and return typed pins, or raise the first PinError.

    + data: the flat merged dict of one host (``dict(host.data)``)
    + source_of: names the file (or "--data", or "inventory host X") that supplied a
      top-level key; used in every PinError
    + group_layers: (file, data) of each group of the host but all: what they require
      (agreement.LOCKED_BY_GROUP) host data and --data may not switch off
    + bake_platforms: the bake target's platforms, which the wheels must install on

    Every key must be declared in sagefleet.pins.keys (connector keys included; any
    other key, ``_``-prefixed ones too, is refused), and every value must pass the
    size limits (sagefleet.pins.limits) before anything parses it. A missing required
    key is reported with the value ``MISSING`` (shown as ``<missing>``).
    """
    c = Checker(source_of)
    for key, value in data.items():
        if reason := keys.refusal(key):
            c.fail(str(key), value, reason)
        limits.check(key, value, c.fail)
    for key, spec in keys.SAGEFLEET_KEYS.items():
        if spec.required and key not in data:
            c.fail(key, MISSING, "required key is missing")
    image = check_image(c, data, group_layers, bake_platforms)
    build = check_build(c, data)
    pins = Pins(
        image=image,
        build=build,
        verify=check_verify(c, data),
        service=check_service(c, data, own=(build.build_dir,)),
    )
    # The net under the checks above, and the only check of connector keys.
    for key, value in data.items():
        keys.check(key, value, c.fail, from_fleet_file=source_of(key).startswith(HOST_SOURCE))
    return pins


# --------------------------------------------------------------------------- per host


def _group_data_dirs(cwd: str | None) -> list[Path]:
    dirs = [Path(cwd or ".") / "group_data"]
    argv = sys.argv
    for i, arg in enumerate(argv):
        if arg == "--group-data" and i + 1 < len(argv):
            dirs.append(Path(argv[i + 1]))
        elif arg.startswith("--group-data="):
            dirs.append(Path(arg.split("=", 1)[1]))
    return dirs


def source_finder(inventory, host, cwd: str | None = None) -> Callable[[str], str]:
    """Return source_of(key): which file or flag supplied this host's value of key."""
    dirs = _group_data_dirs(cwd)

    @functools.cache  # asked once per key of the host's data: stat each file once
    def group_file(group: str) -> str:
        found = [d / f"{group}.py" for d in dirs if (d / f"{group}.py").exists()]
        return str(found[-1]) if found else f"group data of group {group!r}"

    def source_of(key: str) -> str:
        if key in inventory.get_override_data():
            return "--data"
        if key in inventory.get_host_data(host.name):
            return f"{HOST_SOURCE}{host.name}"
        for group in reversed(host.groups):
            if key in inventory.get_group_data(group):
                return group_file(group)
        return group_file("all")

    source_of.group_file = group_file  # type: ignore[attr-defined]
    return source_of


# Each host's validated pins, kept on the host object (while its data is unchanged):
# validated once before contact, reused by every deploy function that asks.
_VALIDATED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def host_pins(host, inventory=None, cwd: str | None = None) -> Pins:
    """Validate one pyinfra host's merged data; raises PinError naming the source.

    A host validated before (the check before contact) with the same data gets the
    same Pins back without a second validation."""
    data = host.data.dict()
    kept = _VALIDATED.get(host)
    if kept is not None and kept[0] == data:
        return kept[1]
    if inventory is None:
        inventory = host.inventory
    source_of = source_finder(inventory, host, cwd)
    layers = [
        (source_of.group_file(group), inventory.get_group_data(group))  # type: ignore[attr-defined]
        for group in host.groups
        if group != "all"
    ]
    pins = validate(data, source_of, group_layers=layers)
    _VALIDATED[host] = (data, pins)
    return pins


def validated(host) -> tuple[dict, Pins] | None:
    """(data, Pins) a host was validated with, or None."""
    return _VALIDATED.get(host)


def adopt(host, data: dict, pins: Pins) -> bool:
    """Give host the Pins validated for another object of the same host (a second
    State over the same inventory) when its data are the same; else False."""
    if host.data.dict() != data:
        return False
    _VALIDATED[host] = (data, pins)
    return True


def validate_inventory(inventory, cwd: str | None = None, pins: dict | None = None) -> list[str]:
    """Every distinct error over all hosts of a pyinfra inventory, as messages.

    Validation cannot crash the run: any exception while validating any host (not
    only PinError) is that host's refusal. pins, if given, receives each valid
    host's Pins by host name."""
    errors: list[str] = []
    seen: set[str] = set()
    for host in inventory:
        try:
            checked = host_pins(host, inventory, cwd)
        except PinError as e:
            error = str(e)
        except Exception as e:  # noqa: BLE001 - a refusal, never a traceback
            error = f"validation failed: {type(e).__name__}: {limits.shown(str(e))}"
        else:
            if pins is not None:
                pins[host.name] = checked
            continue
        if error not in seen:
            seen.add(error)
            errors.append(f"{error} (host {host.name})")
    return errors
