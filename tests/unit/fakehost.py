"""A strict fake pyinfra host: runs an operation's generator without a pyinfra run.

Like pyinfra's own tests/operations harness, but strict: a fact the fixture did not
provide raises instead of returning a default, so a fixture lists every read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from pyinfra.api import Config, FileUploadCommand, StringCommand
from pyinfra.api.util import get_kwargs_str
from pyinfra.context import ctx_host, ctx_state


class MissingFact(AssertionError):
    """The operation read a fact (or fact arguments) the fixture does not provide."""


class FakeHost:
    """Serves facts from {FactClassName: {"k=v, ...": value}} (pyinfra's kwargs string)."""

    name = "fakehost"
    print_prefix = "[fakehost] "
    current_op_global_arguments = None

    def __init__(self, facts: dict[str, Any]) -> None:
        self.facts = facts
        self.noops: list[str] = []
        self.logs: list[str] = []  # what host.log said
        self.fact_reads: list[tuple[str, str]] = []

    def get_fact(self, cls: type, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise MissingFact(f"{cls.__name__}: positional fact arguments {args!r}; use kwargs")
        key = get_kwargs_str(kwargs)
        self.fact_reads.append((cls.__name__, key))
        if cls.__name__ not in self.facts:
            raise MissingFact(f"fixture has no fact {cls.__name__} (wanted {key!r})")
        by_args = self.facts[cls.__name__]
        if not isinstance(by_args, dict) or key not in by_args:
            known = sorted(by_args) if isinstance(by_args, dict) else by_args
            raise MissingFact(f"fixture has no {cls.__name__}({key}); it has {known!r}")
        return by_args[key]

    def noop(self, description: str) -> None:
        self.noops.append(description)

    def log(self, message: str, log_func: Callable[[str], Any] | None = None) -> None:
        self.logs.append(message)

    def get_temp_filename(self, hash_key: str | None = None, **_: Any) -> str:
        return f"/tmp/pyinfra-fake-{hash_key}"


def command_data(command: Any) -> Any:
    """A yielded command as fixture data: a string, {"upload": dest}, or
    {"bake_followed": shell, "log": path} (a bake whose progress the control machine shows)."""
    if isinstance(command, str):
        return command.strip()  # as pyinfra.api.operation does before running it
    if isinstance(command, StringCommand):
        return command.get_raw_value()
    if isinstance(command, FileUploadCommand):
        return {"upload": command.dest}
    from sagefleet.operations.progress import BakeCommand

    if isinstance(command, BakeCommand):
        # Runs command.shell on the host while following its log from here.
        return {"bake_followed": command.shell, "log": command.log_path}
    raise TypeError(f"unexpected command {command!r}")


@contextmanager
def using(host: FakeHost, is_executing: bool = False) -> Iterator[FakeHost]:
    """Make host (and a state with default config) the current pyinfra context;
    is_executing: whether the run executes (True) or only plans (--dry, planning)."""
    state = SimpleNamespace(
        config=Config(), cwd=None, print_noop_info=False, is_executing=is_executing, inventory=None
    )
    with ctx_state.use(state), ctx_host.use(host):
        yield host
