"""Pin validation wired into pyinfra: every host's merged data is validated
before the first connection is opened, so bad pins touch no host.

inventory.py registers PinValidation; pyinfra calls host_before_connect for each
host, and the first call validates the whole inventory at once.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pyinfra.api.state import BaseStateCallback

from .pins import PinError, Pins, validate

# Keys sagefleet features beyond the build add to group_data (kept in one place).
EXTRA_KEYS: tuple[str, ...] = ()


def _group_data_dirs(cwd: str | None) -> list[Path]:
    dirs = [Path(cwd or ".") / "group_data"]
    argv = sys.argv
    for i, arg in enumerate(argv):
        if arg == "--group-data" and i + 1 < len(argv):
            dirs.append(Path(argv[i + 1]))
        elif arg.startswith("--group-data="):
            dirs.append(Path(arg.split("=", 1)[1]))
    return dirs


def source_finder(inventory, host, cwd: str | None = None):
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
    """Validate one host's merged data; raises PinError naming the source."""
    if inventory is None:
        inventory = host.inventory
    return validate(host.data.dict(), source_finder(inventory, host, cwd), extra_keys=EXTRA_KEYS)


def validate_inventory(state) -> list[str]:
    """Every distinct error over all hosts of the inventory, as messages."""
    errors: list[str] = []
    for host in state.inventory:
        try:
            host_pins(host, state.inventory, state.cwd)
        except PinError as e:
            message = f"{e} (host {host.name})"
            if str(e) not in {m.rsplit(" (host ", 1)[0] for m in errors}:
                errors.append(message)
    return errors


class PinValidation(BaseStateCallback):
    """Stops the run before the first connection when any host's pins are invalid."""

    def __init__(self) -> None:
        self.checked = False

    def host_before_connect(self, state, host) -> None:  # type: ignore[override]
        if self.checked:
            return
        self.checked = True
        errors = validate_inventory(state)
        if errors:
            print("sagefleet: invalid pins, no host was contacted:", file=sys.stderr)
            for message in errors:
                print(f"  {message}", file=sys.stderr)
            sys.stderr.flush()
            raise SystemExit(2)


def register(state) -> None:
    """Add PinValidation to a pyinfra state, also when called before State.init.

    pyinfra's CLI loads inventory.py before State.init, and init resets the
    callback handlers; so from there we hook init on this one state object.
    """
    if getattr(state, "callback_handlers", None) is not None:
        if not any(isinstance(h, PinValidation) for h in state.callback_handlers):
            state.add_callback_handler(PinValidation())
        return
    original_init = state.init

    def init(*args, **kwargs):
        original_init(*args, **kwargs)
        state.add_callback_handler(PinValidation())

    state.init = init
