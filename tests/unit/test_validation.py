"""Pins are validated before pyinfra contacts any host: the real pyinfra CLI, a host whose
SSH port is a socket of this test.

pyinfra 3.10 offers no supported hook between loading the inventory and the first
connection; sagefleet.validation relies on the order of its CLI (inventory.py, then
State.init, then connect_all). These tests fail the day that order changes: with bad
pins the socket must see no connection at all, with good pins it must see one (so the
socket does notice contact).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from sagefleet.project import PROJECT_ROOT, PYINFRA_CLI


class Listener:
    """A TCP socket on 127.0.0.1 that counts connections (and closes each at once)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def victim(tmp_path: Path):
    listener = Listener()
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        '[groups]\nbuild_hosts = ["victim"]\n\n'
        f'[hosts.victim]\nssh_hostname = "127.0.0.1"\nssh_port = {listener.port}\n'
        'ssh_user = "nobody"\n'
    )
    yield listener, fleet
    listener.close()


def _deploy(fleet: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SAGEFLEET_FLEET": str(fleet)}
    env.pop("SAGEFLEET_OFFLINE", None)
    return subprocess.run(
        [PYINFRA_CLI, "-y", "inventory.py", "deploy.py", *extra],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bad_pins_stop_the_run_before_any_connection(victim):
    listener, fleet = victim
    proc = _deploy(fleet, "--data", "bake_target=bad;label")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "invalid pins, no host was contacted" in output
    assert "--data: bake_target = 'bad;label'" in output
    assert listener.connections == 0, output


def test_good_pins_do_reach_the_host(victim):
    listener, fleet = victim
    proc = _deploy(fleet)
    output = proc.stdout + proc.stderr
    assert "invalid pins" not in output
    assert listener.connections >= 1, output
