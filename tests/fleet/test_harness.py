"""The test fleet itself: real pyinfra runs over SSH, host key pinning, scale, teardown."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import harness
import pytest
from conftest import require_fleet

pytestmark = pytest.mark.fleet

HERE = Path(__file__).resolve().parent


def _out(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def _succeeded(output: str, host: str) -> bool:
    return re.search(rf"^\s*\[{re.escape(host)}\]\s+Success\s*$", output, re.M) is not None


def test_image_tags_follow_their_inputs(tmp_path: Path) -> None:
    images = tmp_path / "images"
    shutil.copytree(harness.IMAGES_DIR, images)
    deb = tmp_path / "docker.io_1_amd64.deb"
    deb.write_bytes(b"deb")
    before = harness.image_tags("sha256:base", images, [deb])
    assert before == harness.image_tags("sha256:base", images, [deb])
    with open(images / "Dockerfile.docker", "a") as f:
        f.write("# changed\n")
    after = harness.image_tags("sha256:base", images, [deb])
    assert after["ssh"] == before["ssh"] and after["docker"] != before["docker"]
    with open(images / "Dockerfile.ssh", "a") as f:
        f.write("# changed\n")
    again = harness.image_tags("sha256:base", images, [deb])
    assert again["ssh"] != after["ssh"] and again["docker"] != after["docker"]
    assert harness.image_tags("sha256:other", images, [deb])["ssh"] != again["ssh"]


def test_pyinfra_exec_reaches_every_host(fleet: harness.Fleet) -> None:
    proc = fleet.pyinfra("exec", "--", "hostname")
    out = _out(proc)
    assert proc.returncode == 0, out
    for name in fleet.hosts:
        # Each container answers with its own hostname: the right host at the right IP.
        assert re.search(rf"^\[{re.escape(name)}\]\s+{re.escape(name)}$", out, re.M), out
        assert _succeeded(out, name), out


def test_build_host_bakes_with_named_context(fleet: harness.Fleet) -> None:
    assert fleet.names("docker"), (
        "the session fleet has no build host (SAGEFLEET_FLEET_BUILD_HOSTS=0)"
    )
    bake = textwrap.dedent(
        r"""
        set -e
        d=$(mktemp -d); cd "$d"
        cat > docker-bake.hcl <<'HCL'
        target "other" {
          dockerfile-inline = "FROM sagefleet/base:bookworm\nRUN echo other > /other\n"
        }
        target "app" {
          contexts = { base = "target:other" }
          dockerfile-inline = "FROM base\nRUN test -s /other && echo app > /app\n"
          tags = ["sagefleet/fleet-smoke:app"]
          output = ["type=docker"]
        }
        HCL
        docker buildx bake --progress plain app
        docker run --rm sagefleet/fleet-smoke:app cat /other /app | tr '\n' ' '
        """
    )
    proc = fleet.pyinfra("--limit", "build_hosts", "exec", "--", bake)
    out = _out(proc)
    assert proc.returncode == 0, out
    for name in fleet.names("docker"):
        assert re.search(rf"^\[{re.escape(name)}\]\s+other app\s*$", out, re.M), out


def test_host_key_mismatch_is_refused(fleet_factory) -> None:
    fleet = fleet_factory(n_ssh=3)
    victim, *others = fleet.names()
    fleet.replace_host_key(victim)
    proc = fleet.pyinfra("exec", "--", "true")
    out = _out(proc)
    assert proc.returncode != 0, out
    refusal = [line for line in out.splitlines() if f"[{victim}]" in line]
    assert any("host key" in line.lower() for line in refusal), out
    assert not _succeeded(out, victim), out
    for name in others:
        assert _succeeded(out, name), out
    # Pinning the new key lets the host in again.
    fleet.trust_host_key(victim)
    proc = fleet.pyinfra("exec", "--", "true")
    assert proc.returncode == 0, _out(proc)


def test_fault_helpers(fleet_factory) -> None:
    fleet = fleet_factory(n_ssh=2)
    a, b = fleet.names()
    fleet.kill_sshd(a)
    assert fleet.served_host_key(a) is None
    proc = fleet.pyinfra("exec", "--", "true")
    assert proc.returncode != 0 and not _succeeded(_out(proc), a), _out(proc)
    assert _succeeded(_out(proc), b), _out(proc)
    with pytest.raises(harness.FleetError, match=rf"^{a} .*sshd did not answer within 1s"):
        fleet.wait_ssh_host(a, timeout=1)
    fleet.start_sshd(a)
    fleet.stop(b)
    assert fleet.exec(a, "echo hi").output == "hi\n"
    fleet.start(b)
    proc = fleet.pyinfra("exec", "--", "true")
    assert proc.returncode == 0, _out(proc)


@pytest.mark.opt_in
@pytest.mark.skipif(
    os.environ.get("SAGEFLEET_FLEET_SCALE") != "1", reason="set SAGEFLEET_FLEET_SCALE=1 (20 hosts)"
)
def test_twenty_hosts(fleet_factory) -> None:
    t0 = time.monotonic()
    fleet = fleet_factory(n_ssh=20)
    up_s = time.monotonic() - t0
    t1 = time.monotonic()
    proc = fleet.pyinfra("exec", "--", "true")
    exec_s = time.monotonic() - t1
    out = _out(proc)
    assert proc.returncode == 0, out
    assert all(_succeeded(out, n) for n in fleet.names()), out
    stats = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}"],
        capture_output=True,
        text=True,
    ).stdout
    mine = [line for line in stats.splitlines() if fleet.run_id in line]
    print(f"20 hosts: up {up_s:.1f}s ({fleet.timings}), pyinfra exec {exec_s:.1f}s")
    print("\n".join(mine))


def test_teardown_removes_everything(tmp_path: Path) -> None:
    require_fleet()
    with pytest.raises(RuntimeError, match="boom"):
        with harness.Fleet(n_ssh=1, n_build=1, workdir=tmp_path / "f") as fleet:
            run_id = fleet.run_id
            assert harness.labelled(fleet.client, run_id) != ([], [])
            raise RuntimeError("boom")
    assert harness.labelled(harness.docker_client(), run_id) == ([], [])


def test_fixture_teardown_after_failing_test(tmp_path: Path) -> None:
    """A failing test that used fleet_factory leaves nothing behind (finalizer path)."""
    require_fleet()
    run_file = tmp_path / "run_id"
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            f"""
            import importlib.util
            spec = importlib.util.spec_from_file_location(
                "sagefleet_fleet_conftest", {str(HERE / "conftest.py")!r})
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            fleet_factory = mod.fleet_factory
            """
        )
    )
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            f"""
            def test_fails(fleet_factory):
                f = fleet_factory(n_ssh=1, n_build=1, ready=False)
                open({str(run_file)!r}, "w").write(f.run_id)
                raise AssertionError("inner test fails on purpose")
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        # the fleet conftest imports tests.conftest (need): the repository root on the path
        env={**os.environ, "PYTHONPATH": str(HERE.parents[1])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "inner test fails on purpose" in proc.stdout, proc.stdout
    run_id = run_file.read_text()
    assert harness.labelled(harness.docker_client(), run_id) == ([], [])


def test_orphans_of_a_killed_run_are_reaped(tmp_path: Path) -> None:
    require_fleet()
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(HERE)!r})
        import harness
        f = harness.Fleet(n_ssh=1, workdir={str(tmp_path)!r})
        f.up(ready=False)
        print(f.run_id, flush=True)
        os._exit(0)  # dies without teardown, like a killed pytest
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    run_id = proc.stdout.strip()
    assert proc.returncode == 0 and run_id, proc.stderr
    client = harness.docker_client()
    assert harness.labelled(client, run_id)[0], "the orphan should exist before reaping"
    harness.reap_orphans(client)
    assert harness.labelled(client, run_id) == ([], [])


def test_listing_survives_a_fleet_removed_by_another_run(tmp_path: Path) -> None:
    """Regression: a second test run reaping orphans at session start listed every test
    fleet while another run tore its own down; docker's list() inspects each listed
    container afterwards and failed with 404, failing that run's fixture setup."""
    require_fleet()
    client = harness.docker_client()
    with harness.Fleet(n_ssh=2, workdir=tmp_path / "f", client=client) as fleet:
        victim = fleet._container("gpu-1")
        listed = client.api.containers

        def list_then_lose_one(*args: object, **kwargs: object) -> object:
            found = listed(*args, **kwargs)
            victim.remove(force=True)  # the other run's teardown, between list and inspect
            return found

        client.api.containers = list_then_lose_one
        try:
            containers, _ = harness.labelled(client)
        finally:
            del client.api.containers
        names = {c.name for c in containers}
        assert fleet.hosts["gpu-2"].container in names
        assert victim.name not in names
