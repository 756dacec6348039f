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

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .build import BUILD_KEYS, BuildPins, check_build
from .check import MISSING, Checker, PinError, unknown_reason
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


# The order of group_data/all.py is the order of the sections' checks.
_KEY_ORDER = IMAGE_KEYS + BUILD_KEYS + VERIFY_KEYS + SERVICE_KEYS
KNOWN_KEYS: frozenset[str] = frozenset(_KEY_ORDER)
# Per-run parameters of a rollout (target digest, action) are arguments of
# sagefleet.rollout, never pins: group_data holds no such keys.
_OPTIONAL_KEYS = frozenset(
    {
        "build_context",
        "pip_ca_bundle",
        "bake_cache_ref",
        "requirements_path",
        "image_tag",
        *SERVICE_KEYS,
    }
)

# Keys that pyinfra itself and its connectors read from host.data.
_FOREIGN_PREFIXES = (
    "ssh_",
    "_",
    "winrm_",
    "docker_",
    "chroot_",
    "podman_",
    "dockerssh_",
    "terraform_",
    "vagrant_",
)
# No "local_" prefix: pyinfra's local connector reads no such keys, and a typo of
# local_wheelhouse must not pass silently.


def validate(
    data: Mapping[str, object],
    source_of: Callable[[str], str] = lambda key: "group_data/all.py",
    extra_keys: Iterable[str] = (),
) -> Pins:
    """Check the merged host data and return typed pins, or raise the first PinError.

    + data: the flat merged dict of one host (``dict(host.data)``)
    + source_of: names the file (or "--data", or "inventory host X") that supplied a
      top-level key; used in every PinError
    + extra_keys: keys of later features to accept without checking them here

    Keys of pyinfra and its connectors (``ssh_*``, ``_*``, ``docker_*``, ...) are ignored.
    A missing required key is reported with the value ``MISSING`` (shown as ``<missing>``).
    """
    c = Checker(source_of)
    allowed = set(extra_keys)
    for key, value in data.items():
        if key in KNOWN_KEYS or key in allowed:
            continue
        if isinstance(key, str) and key.startswith(_FOREIGN_PREFIXES):
            continue
        c.fail(
            str(key), value, unknown_reason(str(key), _KEY_ORDER, "not a key of group_data/all.py")
        )
    for key in _KEY_ORDER:
        if key not in data and key not in _OPTIONAL_KEYS:
            c.fail(key, MISSING, "required key is missing")
    return Pins(
        image=check_image(c, data),
        build=check_build(c, data),
        verify=check_verify(c, data),
        service=check_service(c, data),
    )


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

    def group_file(group: str) -> str:
        found = [d / f"{group}.py" for d in dirs if (d / f"{group}.py").exists()]
        return str(found[-1]) if found else f"group data of group {group!r}"

    def source_of(key: str) -> str:
        if key in inventory.get_override_data():
            return "--data"
        if key in inventory.get_host_data(host.name):
            return f"inventory host {host.name}"
        for group in reversed(host.groups):
            if key in inventory.get_group_data(group):
                return group_file(group)
        return group_file("all")

    return source_of


def host_pins(host, inventory=None, cwd: str | None = None) -> Pins:
    """Validate one pyinfra host's merged data; raises PinError naming the source."""
    if inventory is None:
        inventory = host.inventory
    return validate(host.data.dict(), source_finder(inventory, host, cwd))


def validate_inventory(inventory, cwd: str | None = None) -> list[str]:
    """Every distinct error over all hosts of a pyinfra inventory, as messages."""
    errors: list[str] = []
    for host in inventory:
        try:
            host_pins(host, inventory, cwd)
        except PinError as e:
            message = f"{e} (host {host.name})"
            if str(e) not in {m.rsplit(" (host ", 1)[0] for m in errors}:
                errors.append(message)
    return errors
