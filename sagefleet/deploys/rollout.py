"""Rollout: what one host does (@deploy), called by sagefleet.rollout through
pyinfra's Python API. Build hosts publish (build, verify, push); GPU nodes pull one
digest, verify it and (re)start the service, then the health check. Per-run
parameters (the target digest, rollback) are arguments, never group_data; results
are read from pyinfra's state (the returned OperationMeta, failed hosts, the
failing operation's output).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operation import OperationMeta

from ..commands import ServiceRun, docker_config_json, registry_of
from ..facts.build import PublishedImage
from ..facts.service import NodeState, ServiceState
from ..gpu_access import choose
from ..inputs import build_inputs
from ..operations import build as build_ops
from ..operations import secure as secure_ops
from ..operations import service as service_ops
from ..operations import snapshot as file_ops
from ..operations.snapshot import Snapshot
from ..pins import Pins, host_pins
from .build import bake_args, build_image, login_dir, probe_and_gate, probe_path

REGISTRY_USER_ENV = "SAGEFLEET_REGISTRY_USER"
REGISTRY_PASSWORD_ENV = "SAGEFLEET_REGISTRY_PASSWORD"
REGISTRY_PASSWORD_FILE_ENV = "SAGEFLEET_REGISTRY_PASSWORD_FILE"


def registry_config(pins, registry: str, environ=None) -> bytes | None:
    """The docker config.json to log in to registry, from the control machine only:
    pins.service.registry_auth_file (a config.json), else $SAGEFLEET_REGISTRY_USER with
    $SAGEFLEET_REGISTRY_PASSWORD_FILE (or $SAGEFLEET_REGISTRY_PASSWORD); None: no login."""
    environ = os.environ if environ is None else environ
    if pins.service.registry_auth_file:
        return Path(pins.service.registry_auth_file).read_bytes()
    user = environ.get(REGISTRY_USER_ENV)
    if not user:
        return None
    if environ.get(REGISTRY_PASSWORD_FILE_ENV):
        password = Path(environ[REGISTRY_PASSWORD_FILE_ENV]).read_text().rstrip("\n")
    elif environ.get(REGISTRY_PASSWORD_ENV):
        password = environ[REGISTRY_PASSWORD_ENV]
    else:
        raise ValueError(
            f"{REGISTRY_USER_ENV} is set but neither {REGISTRY_PASSWORD_FILE_ENV} "
            f"nor {REGISTRY_PASSWORD_ENV}"
        )
    return docker_config_json(registry, user, password)


def registry_login(pins, registry: str, snapshot: Snapshot | None = None) -> str | None:
    """Upload the registry login as <state_dir>/registry/config.json (dir 700, file
    600) and return that DOCKER_CONFIG directory; None when no login is configured.
    The secret travels by SFTP, never on a command line or in pyinfra's output.
    snapshot: a GPU node's ``NodeState`` (the directory's mode, the file's sha1 and mode)."""
    config = registry_config(pins, registry)
    if config is None:
        return None
    config_dir = login_dir(pins)
    if snapshot is None:
        secure_ops.own_directory(name="Registry login directory", path=config_dir, mode="700")
    else:
        file_ops.directory(
            name="Registry login directory", path=config_dir, mode="700", snapshot=snapshot
        )
    # Compared by hash: never diffed, read back or printed (--diff, -vvv).
    file_ops.secret_put(
        name=f"Registry login for {registry}",
        src=config,
        dest=f"{config_dir}/config.json",
        mode="600",
        snapshot=snapshot,
    )
    return config_dir


def node_state(pins: Pins, image: str) -> dict:
    """The ``NodeState`` of a GPU node for this image: one round trip, the snapshot
    every operation of ``rollout_node`` decides from."""
    state_dir = pins.service.state_dir
    return host.get_fact(
        NodeState,
        container=pins.service.service_name,
        state_dir=state_dir,
        image_ref=image,
        results_dir=f"{state_dir}/probe",
        dirs=[state_dir, login_dir(pins)],
        files=[probe_path(state_dir), f"{login_dir(pins)}/config.json"],
        port=pins.service.service_port,
        listen=pins.service.service_listen,
    )


def _service_kwargs(pins, image: str) -> dict:
    return dict(
        container=pins.service.service_name,
        image=image,
        port=pins.service.service_port,
        state_dir=pins.service.state_dir,
        restart=pins.service.service_restart,
        volumes=pins.service.service_volumes,
        cli_args=pins.service.service_cli_args,
        probe_dir=f"{pins.service.state_dir}/probe" if pins.service.verify_on_nodes else None,
        gpu_access=pins.service.gpu_access,
        network=pins.service.service_network,
        listen=pins.service.service_listen,
    )


class RolloutError(PyinfraError):
    """A node cannot take part in this step; the message says why (shown in the summary)."""


@dataclass
class NodePlan:
    """What a node was asked to run, what it ran before, and the service operation
    (its OperationMeta says after the run whether the container was replaced)."""

    image: str
    before: str | None
    service: OperationMeta


@deploy("Roll out the ComfyUI service")
def rollout_node(
    image: str | None = None, rollback: bool = False, health_if: Callable | None = None
) -> NodePlan:
    """
    On a GPU node: pull ``image`` (``rollback``: the node's recorded previous digest),
    probe + gate it, (re)start the service only if its digest or settings changed,
    then the health check.

    + image: the target, ``repo@sha256:...``
    + rollback: run the digest recorded in ``<state_dir>/previous-image`` instead
    + health_if: pyinfra's ``_if`` for the wait and the health check alone (the
      other steps take the deploy's own ``_if``, if given)

    ``NodeState`` is read once (one round trip; a rollback reads ``ServiceState`` first
    for its target); each operation decides from it until one of them changes the
    node, then the later ones read their own facts. On a node where nothing changed,
    the wait and the health check decide from it too: no command runs there.
    """
    pins = host_pins(host)
    if rollback:
        svc = host.get_fact(
            ServiceState, container=pins.service.service_name, state_dir=pins.service.state_dir
        )
        image = svc["previous"]
        if not image:
            raise RolloutError("no previous digest recorded on this node")
    if not image:
        raise RolloutError("no target image (repo@sha256:...)")
    snapshot = Snapshot(node_state(pins, image))
    before = (snapshot.get()["service"]["container"] or {}).get("image")
    docker_config = registry_login(pins, registry_of(image), snapshot)
    service_ops.pull(
        name=f"Pull {image.split('@')[-1][:19]}",
        image=image,
        docker_config=docker_config,
        snapshot=snapshot,
    )
    if pins.service.verify_on_nodes:
        for operation, kwargs in probe_and_gate(
            pins, pins.service.state_dir, image, gpu_node=True, snapshot=snapshot
        ):
            operation(**kwargs)
    service = service_ops.service(
        name=f"Service {pins.service.service_name}",
        snapshot=snapshot,
        **_service_kwargs(pins, image),
    )
    check = {"_if": health_if} if health_if else {}
    service_ops.await_service(
        name=f"Wait for {pins.service.service_name}",
        container=pins.service.service_name,
        port=pins.service.service_port,
        state_dir=pins.service.state_dir,
        timeout_s=pins.service.health_timeout_s,
        listen=pins.service.service_listen,
        snapshot=snapshot,
        **check,
    )
    service_ops.health_check(
        name="Health check",
        container=pins.service.service_name,
        port=pins.service.service_port,
        state_dir=pins.service.state_dir,
        listen=pins.service.service_listen,
        snapshot=snapshot,
        **check,
    )
    return NodePlan(image=image, before=before, service=service)


def preview_node(image: str | None = None, rollback: bool = False) -> dict:
    """Facts only (nothing changes): current -> target and whether it would restart."""
    pins = host_pins(host)
    svc = None
    if rollback or not image:
        svc = host.get_fact(
            ServiceState, container=pins.service.service_name, state_dir=pins.service.state_dir
        )
    if rollback:
        image = svc["previous"]
    doc = node_state(pins, image) if image else None
    svc = doc["service"] if doc else svc
    current = (svc["container"] or {}).get("image")
    record = {"current": current, "target": image}
    if not image:
        return {**record, "restart": False, "reason": "no target (no previous digest recorded)"}
    use_sage = False
    if pins.service.verify_on_nodes and doc["image"]:
        use_sage = service_ops.use_sage_attention(
            {"image_id": doc["image"]["id"], "result": doc["probe"]}
        )
    kw = _service_kwargs(pins, image)
    access = choose(doc["gpu"], kw["gpu_access"], gpu_node=True)
    run = ServiceRun(
        name=kw["container"],
        image=image,
        port=kw["port"],
        restart=kw["restart"],
        volumes=kw["volumes"],
        cli_args=kw["cli_args"],
        gpu_flags=access.flags,
        network=kw["network"],
        listen=kw["listen"],
    )
    _, settings = service_ops.desired_service(run, use_sage)
    reason = service_ops.restart_reason(svc["container"], image, settings)
    if access.problem:
        return {**record, "restart": False, "reason": access.problem, "gpu_access": access.mode}
    return {**record, "restart": reason is not None, "reason": reason, "gpu_access": access.mode}


@deploy("Publish the image to the registry")
def publish_image() -> Snapshot:
    """Build (if inputs changed) and verify, then push with bake (if not pushed yet).
    Every step decides from the one ``BuildState`` read (returned: ``published_image``
    reads the push from it while nothing changed)."""
    pins = host_pins(host)
    run = build_image(publish=True)
    inputs = run.inputs
    docker_config = registry_login(pins, registry_of(inputs.image_ref), run.snapshot)
    build_ops.push(
        name=f"Push {inputs.image_ref}",
        docker_config=docker_config,
        snapshot=run.snapshot,
        **bake_args(pins, inputs),
    )
    return run.snapshot


def published_image(snapshot: Snapshot | None = None) -> tuple[str | None, bool]:
    """(``repo@sha256:...`` this build host pushed last or None, whether that push
    carried the inputs of the current pins). From snapshot (``publish_image``'s, while
    no step changed the host), else a fact read; nothing changes."""
    pins = host_pins(host)
    b = build_inputs(pins)
    doc = snapshot.get() if snapshot is not None else None
    published = (doc or {}).get("published") or host.get_fact(
        PublishedImage, push_dir=f"{pins.build.build_dir}/push"
    )
    digest = PublishedImage.digest(published, pins.image.bake_target)
    if not digest:
        return None, False
    repo = b.image_ref.rsplit(":", 1)[0]
    return f"{repo}@{digest}", published["inputs"] == b.inputs
