"""Operations on GPU nodes: pull one digest, run the service from it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace

from pyinfra import host, logger, state
from pyinfra.api import OperationError, operation

from .. import commands
from ..facts.gpu import EngineGpuAccess
from ..facts.service import ImagePresent, ServiceHealth, ServiceState
from ..gpu_access import choose
from ..pins.service import GPU_ACCESS_MODES
from .snapshot import Snapshot, changed, found, passthrough
from .util import require_abs, require_digest_ref, require_name
from .verify import stored_probe


@operation()
def pull(image: str, docker_config: str | None = None, snapshot: Snapshot | None = None):
    """
    Pull exactly one digest (``repo@sha256:...``) onto a GPU node.

    + image: the image pinned by digest; a tag is refused
    + docker_config: directory on the host with the registry login
    + snapshot: the run's ``NodeState`` of this image (its ``image``); None: read ``ImagePresent``

    Idempotence: an image already present under that digest means nothing to do.
    """
    require_digest_ref(image)
    doc = found(snapshot)
    if doc is None:
        present = host.get_fact(ImagePresent, image_ref=image)
    else:
        present = (doc["image"] or {}).get("id")
    if present:
        host.noop(f"{image.split('@')[1][:19]} already pulled (image {present[:19]})")
        return
    yield from passthrough(snapshot, iter([commands.pull(image, docker_config)]))


def service_settings(run_argv: Sequence[str]) -> str:
    """Hash of everything the container is started with (image included)."""
    return "sha256:" + hashlib.sha256(json.dumps(list(run_argv)).encode()).hexdigest()


def restart_reason(container: dict | None, image: str, settings: str) -> str | None:
    """Why the service must be (re)started, or None when it runs as wanted (pure)."""
    if not container:
        return "no service container yet"
    if container.get("image") != image:
        return f"runs {container.get('image')}, want {image}"
    if (container.get("labels") or {}).get(commands.SETTINGS_LABEL) != settings:
        return "settings changed (port, volumes, CLI_ARGS, restart policy or GPUs)"
    if container.get("status") != "running":
        return f"container is {container.get('status')}"
    return None


def use_sage_attention(stored_probe: dict) -> bool:
    """The probe's own recommendation for this node and image (False when not probed)."""
    result = stored_probe.get("result") or {}
    return bool((result.get("recommendation") or {}).get("use_sage_attention"))


def desired_service(run: commands.ServiceRun, use_sage: bool) -> tuple[list[str], str]:
    """(docker run argv, settings hash) of the service as it should run: run, with
    ``--use-sage-attention`` added to its CLI_ARGS where use_sage."""
    if use_sage:
        run = replace(run, cli_args=[*run.cli_args, "--use-sage-attention"])
    settings = service_settings(commands.service_args(run, ""))
    return commands.service_args(run, settings), settings


@operation()
def service(
    container: str,
    image: str,
    port: int,
    state_dir: str,
    restart: str = "unless-stopped",
    volumes: Sequence[tuple[str, str]] = (),
    cli_args: Sequence[str] = (),
    probe_dir: str | None = None,
    gpu_access: str = "auto",
    network: str | None = None,
    snapshot: Snapshot | None = None,
    listen: str = "127.0.0.1",
):
    """
    Run the ComfyUI container from exactly ``image`` (repo@sha256:...).

    + container: the container's name
    + image: the image pinned by digest
    + port: published on the node and given to the image as ``COMFY_PORT``
    + state_dir: ``previous-image`` there records what ran before (rollback)
    + restart: Docker restart policy
    + volumes: (host path, container path) pairs; host paths are created
    + cli_args: ``CLI_ARGS``; ``--use-sage-attention`` is added where the node's
      stored probe of this image (``probe_dir``) recommends it
    + probe_dir: where ``sagefleet.operations.verify.probe`` stored results on this node
    + gpu_access: the ``gpu_access`` pin; the GPU reaches the container as for the
      probe (``sagefleet.gpu_access.choose`` on ``EngineGpuAccess``); a node whose
      engine can give no GPU fails with what to install (unless pinned ``none``)
    + network: None: the default bridge with ``-p port:port``; a network name
      (e.g. ``host``): ``--network NAME`` and no published port
    + snapshot: the run's ``NodeState`` of this image, read with this container,
      state_dir and probe_dir; while it holds, its ``service``, ``gpu`` and ``probe``
      stand for the ``ServiceState``, ``EngineGpuAccess`` and ``ProbeResult`` facts
    + listen: the node's address the port is published on (127.0.0.1 unless the
      pins say otherwise: ``service_listen``)

    Idempotence: the running container's image reference and its
    ``org.sagefleet.settings`` label (hash of the whole ``docker run`` line, GPU
    flags included) are compared with what is wanted; equal and running means
    nothing to do, else the container is replaced.
    """
    require_digest_ref(image)
    require_abs("state_dir", state_dir)
    require_name("container name", container)
    if gpu_access not in GPU_ACCESS_MODES:
        raise OperationError(f"gpu_access must be one of {', '.join(GPU_ACCESS_MODES)}")
    if network is not None:
        require_name("network name", network)
    for src, dst in volumes:
        require_abs("volume host path", src)
        require_abs("volume container path", dst)
    doc = found(snapshot)
    if doc is None:
        svc = host.get_fact(ServiceState, container=container, state_dir=state_dir)
    else:
        svc = doc["service"]
    if not svc["docker"]:
        yield commands.fail("the Docker engine is not reachable on this GPU node: start dockerd")
        return
    engine = host.get_fact(EngineGpuAccess) if doc is None else doc["gpu"]
    access = choose(engine, gpu_access, gpu_node=True)
    if access.problem:
        logger.warning(f"{host.print_prefix}{access.problem}")
        yield commands.fail(access.problem)
        return
    use_sage = bool(probe_dir) and use_sage_attention(stored_probe(doc, image, probe_dir))
    run = commands.ServiceRun(
        container, image, port, restart, volumes, cli_args, access.flags, network, listen
    )
    argv, settings = desired_service(run, use_sage)
    reason = restart_reason(svc["container"], image, settings)
    if reason is None:
        host.noop(f"{container} already runs {image.split('@')[1][:19]} with these settings")
        return
    logger.info(f"{host.print_prefix}(re)start {container}: {reason}")
    yield from passthrough(
        snapshot, iter([commands.start_service(container, image, argv, volumes, state_dir)])
    )


@operation()
def await_service(
    container: str,
    port: int,
    state_dir: str,
    timeout_s: float = 60,
    settle_s: float = 2,
    listen: str = "127.0.0.1",
    snapshot: Snapshot | None = None,
):
    """
    Wait for the service after a (re)start: its port answers, then it keeps running.

    + container, port: the service container and its published port
    + state_dir: the restart count before the settle time is kept there for ``ServiceHealth``
    + timeout_s: how long the port may take to answer
    + settle_s: how long the container must then keep running without a restart
    + listen: the address the port is published on (``service_listen``)
    + snapshot: the run's ``NodeState``: while it holds (nothing changed the node), a
      container that runs, answers and has run settle_s already needs no wait

    Runs whenever the operations run (it waits; it changes nothing), and counts as no
    change while pyinfra plans (change detection, ``--dry``). The ``ServiceHealth``
    fact, read after it by ``health_check``, says whether the service is healthy.
    """
    require_name("container name", container)
    require_abs("state_dir", state_dir)
    if not state.is_executing:
        host.noop(f"{container} is waited for when the operations run")
        return
    seen = (found(snapshot) or {}).get("health") or {}
    up = seen.get("up_s")
    if seen.get("http") and up is not None and up >= settle_s:
        host.noop(f"{container} answers and has run {up}s: nothing to wait for")
        return
    changed(snapshot)  # what the health check sees is after the wait, not the snapshot
    yield commands.await_service(container, port, timeout_s, settle_s, state_dir, listen)


@operation()
def health_check(
    container: str,
    port: int,
    state_dir: str,
    listen: str = "127.0.0.1",
    snapshot: Snapshot | None = None,
):
    """
    Fail the host unless its service is healthy (run after ``await_service``).

    + container, port: the service container and its published port
    + state_dir: where ``await_service`` recorded the restart count
    + listen: the address the port is published on (``service_listen``)
    + snapshot: the run's ``NodeState``: while it holds (no operation changed the
      node, no wait ran), its health read is the service as it is now

    Reads ``ServiceHealth`` once when the operations run (or the snapshot's): healthy
    is a noop that says so; unhealthy fails the host with ``health check failed:
    <every problem>``. While pyinfra plans it is no change (the check needs the
    service step done).
    """
    require_name("container name", container)
    require_abs("state_dir", state_dir)
    if not state.is_executing:
        host.noop(f"health of {container} is checked when the operations run")
        return
    found_health = (found(snapshot) or {}).get("health")
    if found_health is None:
        found_health = host.get_fact(
            ServiceHealth, container=container, port=port, state_dir=state_dir, listen=listen
        )
    if not found_health["healthy"]:
        yield commands.fail("health check failed: " + "; ".join(found_health["problems"]))
        return
    host.noop(
        f"{container} healthy: port {port} answers, restart count {found_health['restarts_after']}"
    )
