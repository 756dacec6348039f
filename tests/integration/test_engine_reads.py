"""sagefleet.facts.engine on this machine's real engine: each fact that reads the engine
gives the same fact through the API (curl on the socket) as through the docker CLI
(forced with DOCKER_CONTEXT=default, which the API way must never bypass), including
the container log that the API sends as a framed stream."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from sagefleet.commands import HEALTH_FALLBACK_LINE
from sagefleet.facts.build import BuildState
from sagefleet.facts.gpu import EngineGpuAccess
from sagefleet.facts.service import NodeState, ServiceHealth
from sagefleet.facts.util import sections
from tests.conftest import BASE_IMAGE, engine_problem, need

WAYS = {"api": {}, "cli": {"DOCKER_CONTEXT": "default"}}


def run_fact(fact, kwargs: dict, way: str) -> tuple[str, dict]:
    """(which way the command read the engine, the processed fact)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    out = subprocess.run(
        ["sh", "-c", fact.command(**kwargs)], env={**env, **WAYS[way]}, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    lines = out.stdout.splitlines()
    return (sections(lines).get("engine") or ["?"])[0], fact.process(lines)


@pytest.fixture(scope="module")
def chatty_container():
    """A running container whose log holds the fallback line twice, among other lines."""
    need(engine_problem(), "the local Docker engine")
    need(None if shutil.which("curl") else "no curl on PATH", "curl")
    name = f"sf-engine-reads-{uuid.uuid4().hex[:8]}"
    script = (
        "for i in 1 2 3; do echo starting $i; done; "
        f"echo 'Warning: {HEALTH_FALLBACK_LINE.upper()}' >&2; echo ready; "
        f"echo '{HEALTH_FALLBACK_LINE}'; exec sleep 600"
    )
    subprocess.run(
        ["docker", "run", "-d", "--name", name, BASE_IMAGE, "sh", "-c", script],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        for _ in range(50):
            logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
            if f"{HEALTH_FALLBACK_LINE}\n" in logs.stdout:
                break
            subprocess.run(["sleep", "0.1"])
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


@pytest.mark.parametrize("way", list(WAYS))
def test_service_health_reads_the_log_both_ways(chatty_container, way, tmp_path):
    used, fact = run_fact(
        ServiceHealth(), dict(container=chatty_container, port=9, state_dir=str(tmp_path)), way
    )
    assert used == way
    assert fact["fallback_lines"] == 2 and fact["status"] == "running"


def test_node_state_is_the_same_both_ways(chatty_container, tmp_path):
    image_id = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", BASE_IMAGE],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / f"{image_id.removeprefix('sha256:')}.json").write_text('{"schema": 2}')
    kwargs = dict(
        container=chatty_container, state_dir=str(tmp_path), image_ref=BASE_IMAGE,
        results_dir=str(tmp_path / "probe"), dirs=[str(tmp_path)], files=[], port=9,
    )  # fmt: skip
    got = {way: run_fact(NodeState(), kwargs, way) for way in WAYS}
    assert [got[w][0] for w in WAYS] == list(WAYS)
    api, cli = got["api"][1], got["cli"][1]
    api["health"].pop("up_s"), cli["health"].pop("up_s")  # read a moment apart
    assert api == cli
    assert api["image"] == {"id": image_id} and api["probe"] == {"schema": 2}
    assert api["service"]["container"]["status"] == "running"
    assert api["health"]["fallback_lines"] == 2 and api["gpu"]["docker"] is True


def test_build_state_and_engine_gpu_access_are_the_same_both_ways(tmp_path):
    need(engine_problem(), "the local Docker engine")
    kwargs = dict(build_dir=str(tmp_path), image_ref=BASE_IMAGE, files=[])
    got = {way: run_fact(BuildState(), kwargs, way) for way in WAYS}
    assert got["api"] == ("api", got["cli"][1]) and got["cli"][0] == "cli"
    assert got["api"][1]["image"]["id"].startswith("sha256:")
    engine = {way: run_fact(EngineGpuAccess(), {}, way) for way in WAYS}
    assert engine["api"][1] == engine["cli"][1] and engine["api"][1]["docker"] is True


def test_a_missing_object_reads_as_missing_both_ways(tmp_path):
    need(engine_problem(), "the local Docker engine")
    kwargs = dict(
        container="sf-no-such-container", state_dir=str(tmp_path),
        image_ref="localhost/sf/no-such-image:none", results_dir=str(tmp_path), dirs=[],
        files=[],
    )  # fmt: skip
    for way in WAYS:
        used, fact = run_fact(NodeState(), kwargs, way)
        assert used == way
        assert fact["image"] is None and fact["service"]["container"] is None
        assert fact["health"]["status"] == "missing" and fact["health"]["fallback_lines"] == 0
