"""The service on a GPU node: its container, its health, the images present."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pyinfra.api import FactBase

from ..commands import HEALTH_FALLBACK_LINE, health_host, health_restarts_path, q
from ..gpu_access import engine_gpu
from . import engine
from .build import _path_value
from .gpu import ENGINE_PARTS, cdi_specs
from .util import json_doc, sectioned, sections, text


def _container(inspect: dict | None) -> dict[str, Any] | None:
    """The fields of ``docker container inspect`` the rollout looks at."""
    if not inspect:
        return None
    config, state = inspect.get("Config") or {}, inspect.get("State") or {}
    env = config.get("Env") or []
    return {
        "id": inspect.get("Id"),
        "image": config.get("Image"),
        "image_id": inspect.get("Image"),
        "labels": config.get("Labels") or {},
        "status": state.get("Status"),
        "restarts": inspect.get("RestartCount"),
        "started_at": state.get("StartedAt"),
        # CLI_ARGS as the container was started (shows --use-sage-attention or not).
        "cli_args": next((e.split("=", 1)[1] for e in env if e.startswith("CLI_ARGS=")), None),
    }


def _inspect(container: str) -> str:
    return engine.container(container)


class ServiceState(FactBase):
    """
    The service container on a node, the digest it ran before, and the engine.

    Returns ``{"docker": bool, "nvidia_runtime": bool, "container": None | {id, image,
    image_id, labels, status, restarts, cli_args}, "previous": str | None}``: ``image`` is the
    reference the container was started from (repo@sha256:... for a rollout),
    ``previous`` the one recorded before the last replacement (rollback target).
    """

    def command(self, container: str, state_dir: str) -> str:
        return sectioned(
            {
                "engine": engine.SELECT_AND_SAY,
                "runtimes": "docker info --format '{{json .Runtimes}}' 2>/dev/null || true",
                "container": _inspect(container),
                "previous": f"cat {q(state_dir + '/previous-image')} 2>/dev/null || true",
            }
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        parts = sections(output)
        runtimes = json_doc(parts.get("runtimes"))
        return {
            "docker": runtimes is not None,
            "nvidia_runtime": "nvidia" in (runtimes or {}),
            "container": _container(json_doc(parts.get("container"))),
            "previous": text(parts.get("previous")),
        }


class ServiceHealth(FactBase):
    """
    Health of the service container now: the HTTP port answers, it is not
    restart-looping, its log has no "using pytorch attention instead" fallback line.

    Read once, no waiting: ``sagefleet.operations.service.await_service`` waits for
    the port and records the restart count before its settle time. Returns
    ``{"healthy": bool, "problems": [str], "http", "status", "restarts_before",
    "restarts_after", "fallback_lines"}``.
    """

    def command(self, container: str, port: int, state_dir: str, listen: str = "127.0.0.1") -> str:
        return sectioned(health_parts(container, port, state_dir, listen))

    def process(self, output: list[str]) -> dict[str, Any]:
        parts = sections(output)
        return health_of(parts, _container(json_doc(parts.get("container"))))


def health_parts(container: str, port: int, state_dir: str, listen: str) -> dict[str, str]:
    """The parts of a health read (ServiceHealth's command; NodeState reads them too)."""
    url = f"http://{health_host(listen)}:{int(port)}/"
    return {
        "engine": engine.SELECT_AND_SAY,
        "http": f"curl -fsS -o /dev/null --max-time 2 {q(url)} 2>/dev/null && echo ok || true",
        "container": _inspect(container),
        "restarts_before": f"cat {q(health_restarts_path(state_dir))} 2>/dev/null || true",
        "fallback_lines": (
            f"{{ {engine.logs(container)}; }} | grep -aci {q(HEALTH_FALLBACK_LINE)} || true"
        ),
    }


def health_of(parts: dict[str, list[str]], container: dict[str, Any] | None) -> dict[str, Any]:
    """The health document from what health_parts printed."""
    before = text(parts.get("restarts_before"))
    return health(
        {
            "http": text(parts.get("http")) == "ok",
            "restarts_before": int(before) if before and before.isdigit() else None,
            "restarts_after": (container or {}).get("restarts"),
            "status": (container or {}).get("status") or "missing",
            "fallback_lines": int(text(parts.get("fallback_lines")) or 0),
        }
    )


def health(doc: dict[str, Any]) -> dict[str, Any]:
    """The verdict on what ServiceHealth read: healthy, or every problem found."""
    problems = []
    if doc.get("status") != "running":
        problems.append(f"container is {doc.get('status')}, not running")
    if not doc.get("http"):
        problems.append("HTTP port did not answer")
    before, after = doc.get("restarts_before"), doc.get("restarts_after")
    if before is not None and after is not None and after > before:
        problems.append(f"restart-looping (restart count {before} -> {after})")
    elif after:
        problems.append(f"container restarted {after} times")
    if doc.get("fallback_lines"):
        problems.append("log says 'using pytorch attention instead' (SageAttention fallback)")
    return {**doc, "healthy": not problems, "problems": problems}


def _up_s(container: dict[str, Any] | None, parts: dict[str, list[str]]) -> int | None:
    """Seconds the running container has run since its last start, by the node's clock."""
    now = text(parts.get("now"))
    if not container or container.get("status") != "running" or not now or not now.isdigit():
        return None
    try:
        started = datetime.fromisoformat(container.get("started_at") or "")
    except ValueError:
        return None
    return max(0, int(now) - int(started.timestamp()))


class ImagePresent(FactBase):
    """The local image ID of a reference (e.g. repo@sha256:...), or None if not pulled."""

    def command(self, image_ref: str) -> str:
        return f"docker image inspect -f '{{{{.Id}}}}' {q(image_ref)} 2>/dev/null || true"

    def process(self, output: list[str]) -> str | None:
        return text(output)


class NodeState(FactBase):
    """
    Everything a no-change run of ``rollout_node`` compares on a GPU node, in one round trip.

    Returns ``{"dirs": {path: mode}, "files": {path: {"sha1", "mode"}}, "service":
    ServiceState's document, "gpu": EngineGpuAccess's document, "image": None | {"id"},
    "probe": dict | None}``: the octal mode of each directory that exists, sha1 and mode
    of each file that exists, the service container and the digest it ran before, what
    the engine offers to hand GPUs to a container, the local ID of ``image_ref`` (None:
    not pulled) and the probe result stored in ``results_dir`` for exactly that ID;
    ``"health"``: ServiceHealth's document of that moment plus ``up_s``, how long the
    running container has run since its last start (None: not running).
    """

    def requires_command(self, **kwargs: Any) -> str:
        return "docker"

    def command(
        self,
        container: str,
        state_dir: str,
        image_ref: str,
        results_dir: str,
        dirs: list[str],
        files: list[str],
        port: int = 8188,
        listen: str = "127.0.0.1",
    ) -> str:
        dir_paths = " ".join(q(d) for d in dirs) or "''"
        paths = " ".join(q(f) for f in files) or "''"
        return sectioned(
            {
                **health_parts(container, port, state_dir, listen),
                "now": "date +%s",
                "dirs": f"stat -c '%a %n' -- {dir_paths} 2>/dev/null || true",
                "sha1": f"sha1sum -- {paths} 2>/dev/null || true",
                "mode": f"stat -c '%a %n' -- {paths} 2>/dev/null || true",
                **ENGINE_PARTS,  # its "engine" part is health_parts' own, already first
                "previous": f"cat {q(state_dir + '/previous-image')} 2>/dev/null || true",
                "image": (
                    f"img=$({engine.image(image_ref)}) && img=$(printf '%s\\n' \"$img\" | "
                    f"{engine.IMAGE_ID}) && printf '%s\\n' \"$img\" || img=''"
                ),
                # The probe result stored for exactly that ID (the file name is the ID).
                "probe": (
                    f'[ -z "$img" ] || cat {q(results_dir)}/"${{img#sha256:}}".json 2>/dev/null'
                    " || true"
                ),
            }
        )

    def default(self) -> dict[str, Any]:
        """No docker CLI on the node (pyinfra's requires_command)."""
        return self.process([])

    def process(self, output: list[str]) -> dict[str, Any]:
        parts = sections(output)
        sha1 = dict(_path_value(line) for line in parts.get("sha1") or [] if line.strip())
        mode = dict(_path_value(line) for line in parts.get("mode") or [] if line.strip())
        info = json_doc(parts.get("info"))
        runtimes = (info or {}).get("Runtimes")
        image_id = text(parts.get("image"))
        container = _container(json_doc(parts.get("container")))
        return {
            "dirs": dict(_path_value(line) for line in parts.get("dirs") or [] if line.strip()),
            "files": {p: {"sha1": sha1[p], "mode": mode.get(p)} for p in sha1},
            "service": {
                "docker": runtimes is not None,
                "nvidia_runtime": "nvidia" in (runtimes or {}),
                "container": container,
                "previous": text(parts.get("previous")),
            },
            "health": {**health_of(parts, container), "up_s": _up_s(container, parts)},
            "gpu": engine_gpu(info, cdi_specs(parts)),
            "image": {"id": image_id} if image_id else None,
            "probe": json_doc(parts.get("probe")) if image_id else None,
        }
