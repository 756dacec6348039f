"""Live bake progress on the control machine, per build host.

A bake runs on the build host with its progress in the host's log (plain, one
``#N ...`` line per event). While it runs, a greenlet on the control machine reads
the log's new bytes through the host's own pyinfra connector (one short ``tail``
per poll, base64 so partial lines and odd bytes survive), feeds them to
``sagefleet.bake.BakeProgress`` and shows each step: a one-line bar per host on a
terminal, plain lines otherwise. At the end it logs the steps, how many were
CACHED, and the slowest ones.

The bake command writes a fresh first line (``sagefleet-bake <pid>-<ns>``) into
the log inside the build lock; the follower reads the log only once that first
line differs from the one it saw before the bake began, so it never shows the
previous bake's log (or another run's, when the lock refuses this one).

The follower shares the host's SSH connection with the bake, so when the bake ends
it is stopped between polls, never killed inside one (``_Follower.stop``).
"""

from __future__ import annotations

import base64
import codecs
import sys
import time
from typing import Any, TextIO

import gevent
from gevent.event import Event
from pyinfra import logger
from pyinfra.api import FunctionCommand, StringCommand
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS
from pyinfra.api.util import print_host_combined_output

from ..bake import BakeProgress, Step, format_bar, format_step
from ..commands import q

POLL_S = 1.0
SLOWEST = 3
# How long the end of a bake waits for a poll in flight before cutting it off.
STOP_WAIT_S = 30.0


def first_line_command(log_path: str) -> str:
    """The log's first line (empty when there is no log yet)."""
    return f"head -n 1 {q(log_path)} 2>/dev/null || true"


def poll_command(log_path: str, before: str, offset: int) -> str:
    """The log's bytes from offset on, base64 on one line; nothing while the log's
    first line is still ``before`` (this bake has not started writing)."""
    return (
        f'if [ "$(head -n 1 {q(log_path)} 2>/dev/null)" != {q(before)} ]; then '
        f"tail -c +{int(offset) + 1} {q(log_path)} 2>/dev/null | base64 | tr -d '\\n'; fi"
    )


class Display:
    """Where one host's progress goes: a bar rewritten in place on a terminal,
    else one log line per step that starts or finishes."""

    def __init__(self, prefix: str, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.prefix = prefix
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.t0 = time.monotonic()
        self._shown: dict[str, tuple[bool, bool]] = {}

    def update(self, progress: BakeProgress, changed: list[Step]) -> None:
        elapsed = time.monotonic() - self.t0
        if self.tty:
            self.stream.write(f"\r\033[K{self.prefix}{format_bar(progress, elapsed=elapsed)}")
            self.stream.flush()
            return
        for step in changed:
            if not step.is_build_step:
                continue
            state = (step.started, step.done)
            if self._shown.get(step.id) == state:
                continue
            self._shown[step.id] = state
            logger.info(f"{self.prefix}bake: {format_step(step)}")

    def finish(self, progress: BakeProgress, ok: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()
        seconds = time.monotonic() - self.t0
        word = "finished" if ok else "failed"
        logger.info(f"{self.prefix}bake {word} after {seconds:.1f}s: {progress.summary(SLOWEST)}")


class _Follower:
    def __init__(self, host: Any, log_path: str, before: str, display: Display) -> None:
        self.host, self.log_path, self.before, self.display = host, log_path, before, display
        self.progress = BakeProgress("plain")
        self.offset = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stopping = Event()
        self._greenlet: Any = None

    def poll(self) -> None:
        ok, output = self.host.run_shell_command(
            StringCommand(poll_command(self.log_path, self.before, self.offset)),
            print_output=False,
            print_input=False,
        )
        text = "".join(output.stdout_lines).strip() if ok else ""
        if not text:
            return
        data = base64.b64decode(text)
        self.offset += len(data)
        changed = self.progress.feed(self._decoder.decode(data))
        if changed:
            self.display.update(self.progress, changed)

    def poll_logged(self) -> None:
        try:
            self.poll()
        except Exception as exc:  # a lost poll must never fail the bake
            logger.debug(f"{self.host.print_prefix}progress poll failed: {exc!r}")

    def start(self, poll_s: float) -> None:
        """Poll every poll_s in a greenlet of its own until stop()."""
        self._greenlet = gevent.spawn(self._run, poll_s)

    def _run(self, poll_s: float) -> None:
        while not self._stopping.is_set():
            self.poll_logged()
            self._stopping.wait(poll_s)

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """Stop between polls, never inside one (a greenlet killed while its poll
        holds the SSH connection, a channel half open and paramiko's lock taken,
        leaves that connection hung for every later command), then read the last
        lines."""
        self._stopping.set()
        self._greenlet.join(wait_s)
        if not self._greenlet.dead:  # a poll hung that long: the connection is gone anyway
            logger.warning(f"{self.host.print_prefix}progress poll hung; stopping it")
            self._greenlet.kill(block=False)
            return
        self.poll_logged()


def _connector_arguments(host: Any) -> dict:
    args = host.current_op_global_arguments or {}
    return {k: args[k] for k in CONNECTOR_ARGUMENT_KEYS if k in args}


def bake_with_progress(state: Any, host: Any, command: str, log_path: str, poll_s: float) -> bool:
    """Run the bake command on host while following its log; False when it fails
    (then its output is printed, as pyinfra prints a failed command's)."""
    conn = _connector_arguments(host)
    _, out = host.run_shell_command(
        StringCommand(first_line_command(log_path)), print_output=False, **conn
    )
    before = out.stdout_lines[0] if out.stdout_lines else ""
    follower = _Follower(host, log_path, before, Display(host.print_prefix))
    follower.start(poll_s)
    try:
        ok, output = host.run_shell_command(
            StringCommand(command),
            print_output=state.print_output,
            print_input=state.print_input,
            **conn,
        )
    finally:
        follower.stop()
    follower.display.finish(follower.progress, ok)
    if not ok and not state.print_output:
        print_host_combined_output(host, output)
    return ok


class BakeCommand(FunctionCommand):
    """The bake as a command: ``shell`` runs on the host, its progress is followed
    from the control machine (``bake_with_progress``)."""

    def __init__(self, shell: str, log_path: str, poll_s: float = POLL_S) -> None:
        super().__init__(bake_with_progress, (shell, log_path, poll_s), {})
        self.shell = shell
        self.log_path = log_path

    def __repr__(self) -> str:
        return f"BakeCommand({self.shell!r})"
