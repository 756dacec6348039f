"""The verification gate over SSH on the session fleet (issue 4's fleet tests).

One build host's image drifts from its pins (a bake overlay in tests/offline/): the
gate must fail that host with the reason, while the other build host passes; and a
run with an unchanged image must not run the probe again.
"""

from __future__ import annotations

import harness
import pytest
from fleet_deploy import DeployResult, FleetDeploy

pytestmark = pytest.mark.fleet

OFFLINE_BAKE = ["docker-bake.hcl", "tests/offline/offline.hcl"]


@pytest.fixture(scope="module")
def project(fleet: harness.Fleet) -> FleetDeploy:
    return FleetDeploy.of(fleet)


def _build_hosts(fleet: harness.Fleet) -> list[str]:
    return sorted(h.name for h in fleet.hosts.values() if "build_hosts" in h.groups)


def _probe_results(project: FleetDeploy, host: str, build_dir: str) -> dict[str, str]:
    res = project.fleet.exec(
        host, ["sh", "-c", f"stat -c '%n %Y.%Z' {build_dir}/probe/*.json 2>/dev/null || true"]
    )
    return dict(line.split(" ", 1) for line in res.output.splitlines() if line.strip())


def _drift(project: FleetDeploy, host: str, overlay: str, **extra) -> DeployResult:
    drift = ["tests/offline/drift.hcl", f"tests/offline/{overlay}"]
    data = {host: {"bake_files": [*OFFLINE_BAKE, *drift], **extra}}
    return project.run(host_data=data, limit=host)


def test_second_run_does_not_rerun_the_probe(fleet: harness.Fleet, project: FleetDeploy) -> None:
    first = project.run()
    assert first.ok, first.describe()
    build_dir = project.expected().build_dir
    before = {h: _probe_results(project, h, build_dir) for h in _build_hosts(fleet)}
    assert all(before.values()), before
    second = project.run()
    assert second.ok, second.describe()
    for host in _build_hosts(fleet):
        assert not second.changed(host), second.describe()
    after = {h: _probe_results(project, h, build_dir) for h in _build_hosts(fleet)}
    assert after == before


def test_gate_catches_sageattention_106_where_220_is_pinned(
    fleet: harness.Fleet, project: FleetDeploy
) -> None:
    host = _build_hosts(fleet)[0]
    result = _drift(project, host, "drift-sage106.hcl")
    try:
        assert result.rc != 0, result.describe()
        out = result.host_output(host) + result.output
        assert "verification failed" in out
        assert "sageattention is 1.0.6 in the image, pinned 2.2.0" in out
    finally:
        restored = project.run(limit=host)
        assert restored.ok, restored.describe()


def test_gate_catches_missing_sageattn3_where_the_group_requires_it(
    fleet: harness.Fleet, project: FleetDeploy
) -> None:
    host = _build_hosts(fleet)[-1]
    result = _drift(project, host, "drift-no-sageattn3.hcl", require_sageattn3=True)
    try:
        assert result.rc != 0, result.describe()
        out = result.host_output(host) + result.output
        assert "this host's group requires sageattn3, which is not installed" in out
    finally:
        restored = project.run(limit=host)
        assert restored.ok, restored.describe()
