"""Test deploy: one sagefleet step that fails its host on purpose (as a failed health
check does), after one harmless command. For tests/integration/test_faults_local.py."""

from pyinfra import host
from pyinfra.operations import python, server

from sagefleet.faults import HostFailure


def _health_check() -> None:
    raise HostFailure(host.name, "health check failed: HTTP port did not answer")


server.shell(name="Harmless command", commands=["true"])
python.call(name="Health check", function=_health_check)
