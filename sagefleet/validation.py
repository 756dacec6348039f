"""Pin validation wired into pyinfra: every host's merged data is validated
before the first connection is opened, so bad pins touch no host.

inventory.py calls ``validate_before_connect``; pyinfra calls host_before_connect
for each host, and the first call validates the whole inventory at once.
"""

from __future__ import annotations

import sys

import gevent
from pyinfra.api.state import BaseStateCallback

from .pins import Pins, validate_inventory
from .pins.limits import shown


class PinValidation(BaseStateCallback):
    """Stops the run before the first connection when any host's pins are invalid."""

    def __init__(self) -> None:
        self.errors: list[str] | None = None
        self.refused = False

    def host_before_connect(self, state, host) -> None:  # type: ignore[override]
        if self.errors is None:
            pins: dict[str, Pins] = {}
            try:
                self.errors = validate_inventory(state.inventory, state.cwd, pins)
            except Exception as e:  # noqa: BLE001 - the inventory itself is unusable
                self.errors = [f"validation failed: {type(e).__name__}: {shown(str(e))}"]
            if self.errors:
                print("sagefleet: invalid pins, no host was contacted:", file=sys.stderr)
                for message in self.errors:
                    print(f"  {message}", file=sys.stderr)
                sys.stderr.flush()
            elif "--dry" in sys.argv:
                for line in dry_notes(state, pins):
                    print(f"sagefleet: {line}", file=sys.stderr)
        if self.errors:  # every host's connect stops here, not only the first one's
            if self.refused:
                # The run is exiting (SystemExit below); gevent may still start other
                # hosts' connects at shutdown: end those greenlets quietly, unconnected.
                raise gevent.GreenletExit
            self.refused = True
            raise SystemExit(2)


def dry_notes(state, pins: dict[str, Pins]) -> list[str]:
    """What --dry says besides pyinfra's plan: hosts whose key is trusted on first
    use, and wheels pip cannot verify (no sha256 pinned)."""
    notes = []
    tofu = sorted(
        h.name
        for h in state.inventory
        if h.data.get("ssh_strict_host_key_checking") == "accept-new"
    )
    if tofu:
        notes.append(
            "host keys trusted on first use (fleet file: ssh_strict_host_key_checking = "
            f"'accept-new'): {', '.join(tofu)}"
        )
    unhashed: dict[str, list[str]] = {}
    for name, p in sorted(pins.items()):
        for w in p.image.wheels:
            if not w.sha256:
                unhashed.setdefault(w.filename, []).append(name)
    for filename, hosts in unhashed.items():
        notes.append(
            f"warning: no sha256 pinned for {filename} (hosts {', '.join(hosts)}): pip cannot "
            "verify it; python -m sagefleet.pins.hashes computes one"
        )
    return notes


def register(state) -> None:
    """Add PinValidation to a pyinfra state, also when called before State.init.

    pyinfra's CLI loads inventory.py before State.init, and init resets the
    callback handlers; so from there we hook init on this one state object.
    """
    from .faults import install

    if getattr(state, "callback_handlers", None) is not None:
        if not any(isinstance(h, PinValidation) for h in state.callback_handlers):
            state.add_callback_handler(PinValidation())
        install(state)
        return
    original_init = state.init

    def init(*args, **kwargs):
        original_init(*args, **kwargs)
        state.add_callback_handler(PinValidation())
        install(state)

    state.init = init


def validate_before_connect() -> None:
    """From inventory.py: validate every host's pins before pyinfra connects to one."""
    from pyinfra.context import ctx_state

    if ctx_state.isset():
        register(ctx_state.get())
