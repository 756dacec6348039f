"""One pyinfra run in-process over some hosts, through pyinfra's Python API.

The inventory comes from the same ``inventory.py`` (fleet file + group_data, with
``--group-data`` directories and ``--data`` overrides) through pyinfra_cli's own
loader; ``--limit`` patterns go through pyinfra_cli's own matcher. Each run is one
``State``: connect, prepare (the deploy function per host, in parallel as the CLI
does), ``run_ops``, then per host: did it fail, why (the failing operation's
output, read from the state), and what the deploy function returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operations import run_ops
from pyinfra.api.state import BaseStateCallback, StateStage
from pyinfra.context import ctx_config, ctx_host, ctx_inventory, ctx_state

from ..project import PROJECT_ROOT

FAIL_PREFIX = "sagefleet: "
CONNECT_RETRIES = 2


@dataclass(frozen=True)
class Target:
    """Where hosts and their data come from, as pyinfra's CLI would load them."""

    inventory: str = str(PROJECT_ROOT / "inventory.py")
    cwd: str = str(PROJECT_ROOT)
    data: dict[str, Any] = field(default_factory=dict)  # --data, parsed as the CLI does
    group_data: tuple[str, ...] = ()  # --group-data directories
    # {host name: (data, Pins)} validated before any contact: each State's copy of a
    # host with the same data takes them instead of validating again.
    validated: dict[str, tuple] = field(default_factory=dict, compare=False)

    @classmethod
    def from_cli(cls, data_args: Iterable[str], group_data: Iterable[str]) -> Target:
        """From ``--data key=value`` and ``--group-data DIR`` as given to pyinfra."""
        from pyinfra_cli.cli import _set_override_data

        for arg in data_args:
            if "=" not in arg:
                raise ValueError(f"--data {arg!r}: expected key=value")
        data = _set_override_data(list(data_args), None, None, None, None, None)
        return cls(data=data, group_data=tuple(str(Path(d).resolve()) for d in group_data))

    def inventory_obj(self, state: State | None = None) -> Inventory:
        """A fresh Inventory (hosts are bound to one State each), loaded as the CLI
        loads it: inventory and group_data files run with the state in context."""
        from pyinfra_cli.inventory import make_inventory

        from ..pins.validate import adopt

        state = state or State()
        state.cwd = self.cwd
        with ctx_state.use(state):
            inventory = make_inventory(
                self.inventory,
                override_data=dict(self.data),
                cwd=self.cwd,
                group_data_directories=list(self.group_data),
            )
        for host in inventory:
            if host.name in self.validated:
                adopt(host, *self.validated[host.name])
        return inventory


def match(inventory: Inventory, patterns: Sequence[str]) -> dict[str, list[str]]:
    """{pattern: host names} by pyinfra's --limit rules (group name, else glob)."""
    from pyinfra_cli.cli import _get_inventory_pattern_matches

    return {
        p: sorted(h.name for h in _get_inventory_pattern_matches(inventory, [p], "--limit"))
        for p in patterns
    }


@dataclass
class HostRun:
    """One host's result of a Session."""

    name: str
    ok: bool
    value: Any = None  # what prepare (and then finish) returned
    error: str | None = None


class _Watch(BaseStateCallback):
    """Remembers each host's connect error and the operation it is in."""

    def __init__(self) -> None:
        self.connect_errors: dict[str, str] = {}
        self.current_op: dict[str, str] = {}

    def host_connect_error(self, state, host, error) -> None:  # type: ignore[override]
        self.connect_errors[host.name] = str(getattr(error, "args", [error])[0] or error)

    def operation_host_start(self, state, host, op_hash) -> None:  # type: ignore[override]
        self.current_op[host.name] = op_hash


def failure_of(state: State, host) -> str | None:
    """Why a host failed, from the state: the first failed operation's name and the
    ``sagefleet:`` line of its stderr (else its last stderr line)."""
    for op_hash in state.get_op_order():
        data = state.ops[host].get(op_hash)
        meta = data.operation_meta if data else None
        if meta is None or not meta.is_complete() or not meta.did_error():
            continue
        lines = [ln.strip() for ln in meta.stderr_lines if ln.strip()]
        tagged = [ln[len(FAIL_PREFIX) :] for ln in lines if ln.startswith(FAIL_PREFIX)]
        name = ", ".join(sorted(state.get_op_meta(op_hash).names))
        text = tagged[-1] if tagged else (lines[-1] if lines else "failed")
        return f"{text} [{name}]"
    return None


class Session:
    """One pyinfra State over ``names`` of target's inventory."""

    def __init__(self, target: Target, names: Sequence[str], plan: bool = False) -> None:
        self.target = target
        # plan: pyinfra's change detection runs each operation's decision while
        # preparing (as the CLI without -y); else facts are read once, when run.
        self.state = State(check_for_changes=plan)
        self.inventory = target.inventory_obj(self.state)
        hosts = {h.name: h for h in self.inventory}
        missing = [n for n in names if n not in hosts]
        if missing:
            raise ValueError(f"not in the inventory: {', '.join(missing)}")
        self.hosts = [hosts[n] for n in names]
        self.watch = _Watch()
        self.results: dict[str, HostRun] = {}

    def _fail(self, host, why: str) -> None:
        self.results[host.name] = HostRun(host.name, ok=False, error=why)
        try:
            self.state.fail_hosts({host})
        except PyinfraError:
            pass  # "No hosts remaining!": every host of this step failed

    def connect(self) -> None:
        config = Config()
        config.FAIL_PERCENT = None
        self.state.init(self.inventory, config, initial_limit=list(self.hosts))
        self.state.add_callback_handler(self.watch)
        ctx_inventory.set(self.inventory)
        self.state.set_stage(StateStage.Connect)
        with ctx_state.use(self.state):
            try:
                connect_all(self.state)
            except PyinfraError:
                pass  # every host failed to connect; recorded below
            self._reconnect()
        for host in self.hosts:
            if host in self.state.failed_hosts:
                why = self.watch.connect_errors.get(host.name, "could not connect")
                self.results[host.name] = HostRun(host.name, ok=False, error=f"connect: {why}")

    def _reconnect(self) -> None:
        """Hosts that failed to connect get CONNECT_RETRIES more tries, a second apart:
        a batch must not halt (or a rollback be skipped) on one dropped handshake."""
        for attempt in range(1, CONNECT_RETRIES + 1):
            failed = [h for h in self.hosts if h in self.state.failed_hosts]
            if not failed:
                return
            gevent.sleep(attempt)
            for host in failed:
                host.connect(reason=f"retry {attempt} of {CONNECT_RETRIES}")
                if host.connected:
                    self.state.failed_hosts.discard(host)
                    self.state.activate_host(host)

    def would_change(self, name: str) -> bool:
        """Planned runs: whether any operation of this host decided to do something."""
        host = next(h for h in self.hosts if h.name == name)
        return self.state.get_meta_for_host(host).ops_change > 0

    def _active(self) -> list:
        return [h for h in self.hosts if h.name not in self.results]

    def prepare(self, func: Callable[..., Any]) -> None:
        """Call func (a @deploy function or a facts-only reader) once per connected
        host, in parallel greenlets as pyinfra_cli does; an exception fails that host."""
        self.state.set_stage(StateStage.Prepare)

        def one(host):
            try:
                with ctx_config.use(self.state.config.copy()), ctx_host.use(host):
                    return HostRun(host.name, ok=True, value=func())
            except Exception as e:  # noqa: BLE001 - any error fails this host only
                return e

        with ctx_state.use(self.state):
            jobs = {self.state.pool.spawn(one, h): h for h in self._active()}
            gevent.joinall(list(jobs))
        for job, host in jobs.items():
            got = job.get()
            if isinstance(got, Exception):
                self._fail(host, f"{type(got).__name__}: {got}")
            else:
                self.results[host.name] = got

    def execute(self) -> None:
        """run_ops; then a host in failed_hosts gets the reason from its failed op."""
        active = [h for h in self.hosts if self.results.get(h.name) and self.results[h.name].ok]
        if not active:
            return
        self.state.set_stage(StateStage.Execute)
        crash = None
        try:
            run_ops(self.state)
        except PyinfraError as e:
            if "No hosts remaining" not in str(e):
                crash = e
        except Exception as e:  # noqa: BLE001 - an operation raised while executing
            crash = e
        from pyinfra_cli.prints import print_results

        print_results(self.state)  # pyinfra's own per-operation table, as the CLI prints it
        for host in active:
            why = failure_of(self.state, host)
            if host in self.state.failed_hosts or why:
                self.results[host.name].ok = False
                self.results[host.name].error = why or "failed (see pyinfra's log above)"
            elif crash is not None:
                op = self.watch.current_op.get(host.name)
                meta = self.state.ops[host].get(op) if op else None
                if meta is None or not meta.operation_meta.is_complete():
                    self.results[host.name].ok = False
                    self.results[host.name].error = f"{type(crash).__name__}: {crash}"

    def finish(self, func: Callable[[Any], Any]) -> None:
        """For each host that succeeded: value = func(value), with the host's context
        (facts may be read; the connection is still open). An exception fails it."""
        with ctx_state.use(self.state):
            for host in self.hosts:
                res = self.results.get(host.name)
                if not res or not res.ok:
                    continue
                try:
                    with ctx_host.use(host):
                        res.value = func(res.value)
                except Exception as e:  # noqa: BLE001
                    res.ok, res.error = False, f"{type(e).__name__}: {e}"

    def close(self) -> dict[str, HostRun]:
        if self.state.initialised:
            self.state.set_stage(StateStage.Disconnect)
            with ctx_state.use(self.state):
                disconnect_all(self.state)
        for host in self.hosts:
            self.results.setdefault(host.name, HostRun(host.name, ok=False, error="not run"))
        return self.results


def run(
    target: Target,
    names: Sequence[str],
    prepare: Callable[[], Any],
    execute: bool = True,
    finish: Callable[[Any], Any] | None = None,
) -> dict[str, HostRun]:
    """Connect to names, prepare each, run the operations (unless not execute: a
    facts-only look), optionally finish each; disconnect. Per host: ok, value, error."""
    session = Session(target, names)
    try:
        session.connect()
        session.prepare(prepare)
        if execute:
            session.execute()
        if finish is not None:
            session.finish(finish)
    finally:
        results = session.close()
    return results
