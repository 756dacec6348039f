"""Live bake progress on the control machine: the poll command in a real shell, the
follower reading a growing log through a host whose commands run in a local shell
(a stand-in for the SSH connector), and what the operator sees without a terminal."""

from __future__ import annotations

import base64
import io
import logging
import subprocess
from pathlib import Path
from types import SimpleNamespace

from sagefleet.bake import BakeProgress
from sagefleet.operations.progress import (
    Display,
    _Follower,
    first_line_command,
    poll_command,
)

DATA = Path(__file__).parent / "data" / "bake" / "progress"


def sh(command: str) -> str:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout


class LocalHost:
    """Runs commands in a local shell, returning what pyinfra's connectors return."""

    print_prefix = "[local] "
    current_op_global_arguments = None

    def run_shell_command(self, command, **_):
        out = sh(command.get_raw_value())
        lines = [SimpleNamespace(buffer_name="stdout", line=line) for line in out.splitlines()]
        return True, SimpleNamespace(stdout_lines=[x.line for x in lines])


def test_poll_reads_nothing_until_the_log_has_a_new_first_line(tmp_path):
    log = tmp_path / "bake.log"
    log.write_text("sagefleet-bake 1-1\n#1 old bake\n")
    before = sh(first_line_command(str(log))).strip()
    assert before == "sagefleet-bake 1-1"
    assert sh(poll_command(str(log), before, 0)) == ""
    log.write_text("sagefleet-bake 2-2\n#1 [t 1/1] RUN x\n")
    got = base64.b64decode(sh(poll_command(str(log), before, 0)))
    assert got == b"sagefleet-bake 2-2\n#1 [t 1/1] RUN x\n"
    rest = base64.b64decode(sh(poll_command(str(log), before, len(b"sagefleet-bake 2-2\n"))))
    assert rest == b"#1 [t 1/1] RUN x\n"
    assert sh(first_line_command(str(tmp_path / "missing.log"))) == ""


def test_follower_feeds_a_growing_log_in_pieces(tmp_path, caplog):
    recorded = (DATA / "fixture-first.plain.log").read_text()
    log = tmp_path / "bake.log"
    log.write_text("sagefleet-bake 0-0\n")
    display = Display("[local] ", stream=io.StringIO(), tty=False)
    follower = _Follower(LocalHost(), str(log), "sagefleet-bake 0-0", display)
    follower.poll()
    assert follower.offset == 0  # still the old bake's log
    text = "sagefleet-bake 9-9\n" + recorded
    cut = len(text) // 2 + 3  # mid-line
    log.write_text(text[:cut])
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        follower.poll()
        log.write_text(text)
        follower.poll()
        follower.poll()  # nothing new
        display.finish(follower.progress, ok=True)
    whole = BakeProgress()
    whole.feed(recorded)
    assert follower.offset == len(text.encode())
    assert [s.first_line for s in follower.progress.executed_steps()] == [
        s.first_line for s in whole.executed_steps()
    ]
    lines = [r.getMessage() for r in caplog.records]
    assert any("bake: complete-cuda step 2/3 RUN umask 022" in x for x in lines), lines
    assert lines[-1].startswith("[local] bake finished after ") and "slowest: 2.3s" in lines[-1]
    # one line per step and state: a step that started and finished shows twice at most
    assert len([x for x in lines if "RUN umask 022" in x]) <= 2


def test_a_terminal_gets_one_bar_rewritten_in_place():
    stream = io.StringIO()
    display = Display("[b1] ", stream=stream, tty=True)
    p = BakeProgress()
    display.update(p, p.feed("#5 [complete-cuda 2/3] RUN pip install -r x\n"))
    display.update(p, p.feed("#5 DONE 3.0s\n"))
    out = stream.getvalue()
    assert out.count("\r\033[K[b1] [") == 2 and "\n" not in out
    assert "1/1 complete-cuda step 2/3 RUN pip install -r x done 3.0s" in out


class SlowPollHost(LocalHost):
    """A stand-in for the SSH connector where a command holds the connection for a
    while (paramiko opens a channel under its lock): it records every command that
    was cut off inside, which on a real connection leaves it hung."""

    def __init__(self, bake_s: float, poll_s: float) -> None:
        self.bake_s, self.poll_s = bake_s, poll_s
        self.polls = self.cut = 0

    def run_shell_command(self, command, **_):
        import gevent

        raw = command.get_raw_value()
        bake = raw == "the bake"
        self.polls += "base64" in raw
        try:
            gevent.sleep(self.bake_s if bake else self.poll_s)
        except BaseException:
            self.cut += 1
            raise
        return (not bake), SimpleNamespace(stdout_lines=[])


def test_the_end_of_a_bake_never_cuts_a_poll_off():
    """A bake that ends (a refusal: at once) while the follower's poll holds the
    connection waits for that poll; the follower stops between polls."""
    import gevent

    from sagefleet.operations.progress import bake_with_progress

    state = SimpleNamespace(print_output=True, print_input=False)
    for bake_s in (0.0, 0.01, 0.05, 0.12):
        host = SlowPollHost(bake_s=bake_s, poll_s=0.03)
        assert bake_with_progress(state, host, "the bake", "/nowhere/bake.log", 0.02) is False
        gevent.sleep(0.1)  # a kill that was only scheduled lands now
        assert host.cut == 0, f"bake of {bake_s}s cut a poll off"
        assert host.polls >= 1


def test_the_end_of_a_bake_reads_its_last_lines(tmp_path, caplog):
    """Lines the bake wrote after the follower's last poll are read once it ends."""
    from sagefleet.operations.progress import bake_with_progress

    log = tmp_path / "bake.log"
    log.write_text("sagefleet-bake 0-0\n")
    recorded = tmp_path / "recorded.log"
    recorded.write_text("sagefleet-bake 1-1\n" + (DATA / "fixture-first.plain.log").read_text())
    bake = f"cp {recorded} {log}"  # the whole bake between two polls (they are 60 s apart)
    state = SimpleNamespace(print_output=True, print_input=False)
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        assert bake_with_progress(state, LocalHost(), bake, str(log), 60.0) is True
    lines = [r.getMessage() for r in caplog.records]
    assert any("bake: complete-cuda step 2/3 RUN umask 022" in x for x in lines), lines
