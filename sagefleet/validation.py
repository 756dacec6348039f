"""Pin validation wired into pyinfra: every host's merged data is validated
before the first connection is opened, so bad pins touch no host.

inventory.py calls ``validate_before_connect``; pyinfra calls host_before_connect
for each host, and the first call validates the whole inventory at once.
"""

from __future__ import annotations

import sys

from pyinfra.api.state import BaseStateCallback

from .pins import validate_inventory


class PinValidation(BaseStateCallback):
    """Stops the run before the first connection when any host's pins are invalid."""

    def __init__(self) -> None:
        self.checked = False

    def host_before_connect(self, state, host) -> None:  # type: ignore[override]
        if self.checked:
            return
        self.checked = True
        errors = validate_inventory(state.inventory, state.cwd)
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


def validate_before_connect() -> None:
    """From inventory.py: validate every host's pins before pyinfra connects to one."""
    from pyinfra.context import ctx_state

    if ctx_state.isset():
        register(ctx_state.get())
