"""The benchmark fleet: N build hosts whose docker CLI talks to ONE shared engine.

A build host of the test fleet runs its own dockerd (~80 MiB, ~10 s to start and
load the base image). Fifty of those do not fit a 2-core machine next to the
benchmark itself, so here every host is a ``testhost-docker`` container started
WITHOUT its dockerd, with the outer engine's socket mounted at
/var/run/docker.sock. Each host still has its own sshd, filesystem, build_dir,
context marker, rendered requirements and its own image name (``REGISTRY_URL``
per host), so the label check of every host reads an image that this host built.

Shared image store: per-host idempotence passes here for a wrong reason only if
two hosts had the same image name, which they do not; but the build cache is
shared, so per-host bakes after the first reuse its layers (fine for timing the
no-change run, not for timing cold builds: bench/run.py times cold builds on a
real build host with its own engine).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fleet"))
import harness  # noqa: E402

SOCKET = "/var/run/docker.sock"


class SharedEngineFleet(harness.Fleet):
    """harness.Fleet whose build hosts use the outer engine instead of their own dockerd."""

    def _container_kwargs(self, host: harness.TestHost) -> dict[str, Any]:
        if host.kind != "docker":
            return super()._container_kwargs(host)
        return {
            "environment": {"TESTHOST_DOCKERD": "0"},
            "volumes": {SOCKET: {"bind": SOCKET, "mode": "rw"}},
        }

    def image_ref(self, name: str) -> str:
        return f"{self.registry(name)}/comfyui-docker/complete-cuda:latest"

    def registry(self, name: str) -> str:
        return f"localhost/sfbench-{self.run_id}-{name}"

    def bake_variables(self, name: str) -> dict[str, str]:
        """The offline profile's bake_variables with this host's own REGISTRY_URL."""
        from tests.offline_pins import group_file

        return {**group_file("offline")["bake_variables"], "REGISTRY_URL": self.registry(name)}

    def write_subset(
        self, path: Path, names: list[str], extra: dict[str, Any] | None = None
    ) -> Path:
        """A fleet file with only these hosts (all build_hosts), each with its own REGISTRY_URL."""
        lines = [f"# bench subset of run {self.run_id}", "[groups]"]
        lines.append(f"build_hosts = {json.dumps(names)}")
        for n in names:
            h = self.hosts[n]
            lines += [
                "",
                f"[hosts.{json.dumps(n)}]",
                f"ssh_hostname = {json.dumps(h.ip)}",
                "ssh_port = 22",
                'ssh_user = "root"',
                f"ssh_key = {json.dumps(str(self.key_file))}",
                f"ssh_known_hosts_file = {json.dumps(str(self.known_hosts))}",
                'ssh_strict_host_key_checking = "yes"',
                f"bake_variables = {_toml_table(self.bake_variables(n))}",
            ]
            for k, v in (extra or {}).items():
                lines.append(f"{k} = {json.dumps(v)}")
        path.write_text("\n".join(lines) + "\n")
        return path

    def remove_images(self) -> None:
        """Remove every image this fleet's hosts built on the shared engine."""
        for img in self.client.images.list():
            for tag in img.tags:
                if tag.startswith(f"localhost/sfbench-{self.run_id}-"):
                    try:
                        self.client.images.remove(tag, force=True)
                    except Exception:
                        pass


def _toml_table(d: dict[str, str]) -> str:
    """An inline TOML table of strings (a JSON string is a valid TOML basic string)."""
    return "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in d.items()) + "}"
