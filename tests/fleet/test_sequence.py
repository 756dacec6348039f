"""The Molecule sequence against the real deploy over SSH: create -> converge ->
idempotence -> verify -> destroy.

`pyinfra -y inventory.py deploy.py` (offline profile, this session's wheelhouse) on
the session fleet: SAGEFLEET_FLEET_SIZE hosts (default 5: 2 build hosts + 3 GPU
nodes; SAGEFLEET_FLEET_SIZE=20 runs it on 20). Build hosts bake in their own
dockerd; GPU nodes only answer facts for now (deploy.py builds on build_hosts).
Each step can run alone: converge is a module fixture the later steps use.
"""

from __future__ import annotations

import hashlib
import time

import harness
import pytest
from fleet_deploy import BASE_BUILD, DeployResult, FleetDeploy, offenders

pytestmark = pytest.mark.fleet


@pytest.fixture(scope="module")
def project(fleet: harness.Fleet) -> FleetDeploy:
    return FleetDeploy.of(fleet)


@pytest.fixture(scope="module")
def converge(project: FleetDeploy) -> DeployResult:
    t0 = time.monotonic()
    result = project.run()
    print(f"converge of {len(project.fleet.hosts)} hosts: {time.monotonic() - t0:.1f}s")
    return result


def _build_hosts(fleet: harness.Fleet) -> list[str]:
    return [h.name for h in fleet.hosts.values() if "build_hosts" in h.groups]


def _gpu_nodes(fleet: harness.Fleet) -> list[str]:
    return [h.name for h in fleet.hosts.values() if "build_hosts" not in h.groups]


def test_create(fleet: harness.Fleet, project: FleetDeploy) -> None:
    """Every host answers the real inventory over SSH (pinned host keys); every build
    host passes the bake preflight (engine, buildx, disk)."""
    names = project.fact("server.Hostname")
    assert names == {n: n for n in fleet.hosts}, names
    ref = project.expected().image_ref
    preflight = project.fact(
        "sagefleet.facts.build.BuildHost", f"image_ref={ref}", limit="build_hosts"
    )
    assert set(preflight) == set(_build_hosts(fleet))
    for host, fact in preflight.items():
        assert fact["problems"] == [], f"{host}: {fact['problems']}"


def test_converge(fleet: harness.Fleet, converge: DeployResult) -> None:
    """The deploy succeeds on every host; each build host bakes (or already holds) the image."""
    assert converge.ok, converge.describe()
    assert converge.failed_hosts == []
    for host in _build_hosts(fleet):
        # It bakes, or (converged by an earlier test) one "Up to date" operation says so.
        assert converge.touched(host) and not converge.errors(host), converge.describe()
    for host in fleet.hosts:
        assert any(line.endswith("Connected") for line in converge.lines(host)), host


def test_idempotence(project: FleetDeploy, converge: DeployResult) -> None:
    """A second converge changes nothing on any host; offenders are named host: operation."""
    assert converge.ok, converge.describe()
    t0 = time.monotonic()
    again = project.run()
    print(f"no-change run: {time.monotonic() - t0:.1f}s")
    assert again.ok, again.describe()
    for host in _build_hosts(project.fleet):  # raises when no operation ran there
        assert not again.changed(host), f"{host}:\n{offenders(again)}"
    assert not again.changed(), (
        "the second converge changed (host: operation):\n"
        + offenders(again)
        + "\n"
        + again.describe()
    )
    assert "bake needed" not in again.output


def test_verify(fleet: harness.Fleet, project: FleetDeploy, converge: DeployResult) -> None:
    """Facts (through pyinfra, over SSH) show on every build host the image label and the
    rendered requirements the pins call for; the image holds those requirements and its
    probe result passed the gate. GPU nodes report their (absent) GPUs."""
    assert converge.ok, converge.describe()
    exp = project.expected()
    build = _build_hosts(fleet)
    images = project.fact(
        "sagefleet.facts.build.BuildHost", f"image_ref={exp.image_ref}", limit="build_hosts"
    )
    sha1 = project.fact("files.Sha1File", f"path={exp.requirements_path}", limit="build_hosts")
    probes = project.fact(
        "sagefleet.facts.verify.ProbeResult",
        f"image_ref={exp.image_ref}",
        f"results_dir={exp.build_dir}/probe",
        limit="build_hosts",
    )
    want_sha1 = hashlib.sha1(exp.requirements.encode()).hexdigest()
    for host in build:
        image = images[host]["image"]
        assert image and image["inputs"] == exp.inputs, f"{host}: {image}"
        assert sha1[host] == want_sha1, f"{host}: rendered requirements differ from the pins"
        in_image = fleet.exec(
            host, ["docker", "run", "--rm", exp.image_ref, "cat", "/app/extra-requirements.txt"]
        ).output
        assert in_image == exp.requirements, f"{host}: image holds other requirements"
        probe = probes[host]
        assert probe["image_id"] == image["id"] and probe["result"], f"{host}: {probe}"
        sage = probe["result"]["packages"]["sageattention"]
        assert (sage["version"], sage["build_tag"]) == ("2.2.0", BASE_BUILD), f"{host}: {sage}"
    gpu = _gpu_nodes(fleet)
    if gpu:
        gpus = project.fact("sagefleet.facts.gpu.GpuHost", limit="gpu_nodes")
        assert gpus == {h: {"nvidia_smi": False, "gpus": []} for h in gpu}, gpus


def test_destroy(fleet: harness.Fleet, request: pytest.FixtureRequest, fleet_factory) -> None:
    """Destroy removes every container and volume of a fleet. The session fleet is
    destroyed here when no later test needs it; else a fleet of its own (1 SSH host +
    1 build host) is, and the session fleet's teardown checks the same afterwards."""
    items = request.session.items
    later = [i for i in items[items.index(request.node) + 1 :] if "fleet" in i.fixturenames]
    target = fleet_factory(n_ssh=1, n_build=1, ready=False) if later else fleet
    assert harness.labelled(target.client, target.run_id) != ([], []), "nothing to destroy"
    t0 = time.monotonic()
    target.down()
    print(f"destroy of {len(target.hosts)} hosts: {time.monotonic() - t0:.1f}s")
    assert harness.labelled(target.client, target.run_id) == ([], [])
