"""sagefleet.facts.engine.SELECT, run by sh: the engine's API is used only where the
docker CLI would talk to that same socket; anything that could point the CLI elsewhere,
or no curl, takes the CLI. A STAND-IN socket (a listening unix socket nobody answers on)
stands in for the engine's: SELECT only looks at it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from sagefleet.facts.engine import SELECT_AND_SAY


@pytest.fixture
def node(tmp_path: Path):
    sock_path = tmp_path / "docker.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    sock.listen()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("grep", "curl"):  # what SELECT runs, and nothing else on PATH
        found = shutil.which(tool)
        assert found, f"{tool} is needed on this machine for this test"
        (bin_dir / tool).symlink_to(found)
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    env = {"PATH": str(bin_dir), "HOME": str(home), "DOCKER_HOST": f"unix://{sock_path}"}

    def way(**changes) -> str:
        run_env = {k: v for k, v in {**env, **changes}.items() if v is not None}
        out = subprocess.run(
            ["/bin/sh", "-c", SELECT_AND_SAY], env=run_env, capture_output=True, text=True
        )
        return out.stdout.strip()

    way.bin, way.home, way.tmp = bin_dir, home, tmp_path  # type: ignore[attr-defined]
    yield way
    sock.close()


def test_the_local_socket_with_curl_takes_the_api(node):
    assert node() == "api"


def test_the_default_socket_path_when_docker_host_is_unset(node):
    # /var/run/docker.sock: the API exactly when it is a writable socket here.
    default = Path("/var/run/docker.sock")
    want = "api" if default.is_socket() and os.access(default, os.W_OK) else "cli"
    assert node(DOCKER_HOST=None) == want


@pytest.mark.parametrize(
    "change",
    [
        {"DOCKER_HOST": "tcp://10.0.0.5:2376"},
        {"DOCKER_HOST": "ssh://user@10.0.0.5"},
        {"DOCKER_CONTEXT": "remote"},
    ],
    ids=["tcp", "ssh", "context-env"],
)
def test_anything_that_points_the_cli_elsewhere_takes_the_cli(node, change):
    assert node(**change) == "cli"


def test_a_current_context_in_the_cli_config_takes_the_cli(node):
    (node.home / ".docker" / "config.json").write_text(json.dumps({"currentContext": "remote"}))
    assert node() == "cli"
    other = node.tmp / "other-config"
    other.mkdir()
    assert node(DOCKER_CONFIG=str(other)) == "api"  # DOCKER_CONFIG names the config read


def test_no_curl_or_no_socket_takes_the_cli(node):
    (node.bin / "curl").unlink()
    assert node() == "cli"
    (node.bin / "curl").symlink_to(shutil.which("curl"))
    plain = node.tmp / "not-a-socket"
    plain.write_text("")
    assert node(DOCKER_HOST=f"unix://{plain}") == "cli"
