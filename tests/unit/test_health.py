"""The service health check: the wait (commands.await_service, run here by sh with
STAND-IN ``docker``, ``curl`` and ``sleep`` executables written below: a container
that restarts on cue is out of reach of a unit test) and the gate on what
ServiceHealth read (operations.service.health_check, on the strict fake host).
The fleet test runs both against the real service on real nodes."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fakehost import FakeHost, command_data, using
from pyinfra.context import ctx_state

from sagefleet import commands
from sagefleet.operations import service

STANDIN_DOCKER = """#!/bin/sh
# STAND-IN docker: `container inspect` prints "<restart count> <started at>" from files.
d=$(dirname "$0")
[ -f "$d/missing" ] && exit 1
echo "$(cat "$d/restarts") $(cat "$d/started")"
"""
STANDIN_CURL = """#!/bin/sh
# STAND-IN curl: the port answers when the file "answers" exists.
[ -f "$(dirname "$0")/answers" ]
"""
STANDIN_SLEEP = """#!/bin/sh
# STAND-IN sleep: records how long it was asked to sleep, returns at once.
echo "$1" >> "$(dirname "$0")/slept"
"""


def _stamp(ago: timedelta) -> str:
    return (datetime.now(UTC) - ago).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def node(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (
        ("docker", STANDIN_DOCKER),
        ("curl", STANDIN_CURL),
        ("sleep", STANDIN_SLEEP),
    ):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (bin_dir / "restarts").write_text("0")
    (bin_dir / "started").write_text(_stamp(timedelta(hours=1)))
    (bin_dir / "answers").touch()
    state_dir = tmp_path / "state"

    def run(settle_s: float = 2) -> list[str]:
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        cmd = commands.await_service("comfy ui", 8188, 1, settle_s, str(state_dir))
        subprocess.run(["sh", "-c", cmd], env=env, check=True, capture_output=True)
        slept = bin_dir / "slept"
        return slept.read_text().split() if slept.exists() else []

    run.bin, run.state_dir = bin_dir, state_dir  # type: ignore[attr-defined]
    return run


def test_a_container_running_for_long_is_not_watched_again(node):
    assert node(settle_s=30) == []
    assert (node.state_dir / "health-restarts").read_text().strip() == "0"


def test_a_fresh_container_is_watched_for_the_rest_of_the_window(node):
    (node.bin / "started").write_text(_stamp(timedelta(seconds=0)))
    (node.bin / "restarts").write_text("3")
    slept = node(settle_s=2)
    assert slept and 1 <= int(slept[-1]) <= 2
    assert (node.state_dir / "health-restarts").read_text().strip() == "3"


def test_no_container_no_recorded_count_and_nothing_to_watch(node):
    (node.state_dir).mkdir()
    (node.state_dir / "health-restarts").write_text("7")
    (node.bin / "missing").touch()
    (node.bin / "answers").unlink()
    slept = node(settle_s=2)
    assert not (node.state_dir / "health-restarts").exists()
    assert set(slept) == {"0.5"}  # the port polls only


def test_the_wait_quotes_the_container_name():
    cmd = commands.await_service("comfy; rm -rf /", 8188, 5, 2, "/var/lib/sagefleet")
    assert "'comfy; rm -rf /'" in cmd and "rm -rf / " not in cmd.replace("'comfy; rm -rf /'", "")


# --------------------------------------------------------------------------- the gate

ARGS = {"container": "comfyui", "port": 8188, "state_dir": "/var/lib/sagefleet"}
KEY = "container=comfyui, listen=127.0.0.1, port=8188, state_dir=/var/lib/sagefleet"


def _check(health: dict, executing: bool = True) -> tuple[list, list[str]]:
    host = FakeHost({"ServiceHealth": {KEY: health}} if executing else {})
    with using(host):
        ctx_state.get().is_executing = executing
        cmds = [command_data(c) for c in service.health_check._inner(**ARGS)]
    return cmds, host.noops


def test_healthy_is_a_noop_that_says_so():
    cmds, noops = _check({"healthy": True, "problems": [], "restarts_after": 0})
    assert cmds == [] and noops == ["comfyui healthy: port 8188 answers, restart count 0"]


def test_unhealthy_fails_the_host_with_every_problem():
    problems = ["container is exited, not running", "HTTP port did not answer"]
    cmds, _ = _check({"healthy": False, "problems": problems, "restarts_after": 1})
    assert cmds == [commands.fail("health check failed: " + "; ".join(problems))]


def test_while_planning_it_reads_nothing_and_is_no_change():
    cmds, noops = _check({}, executing=False)
    assert cmds == [] and noops == ["health of comfyui is checked when the operations run"]
