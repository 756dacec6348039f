"""Rollout: build hosts publish (build, verify, push); GPU nodes pull one digest and
(re)start the service (@deploy). Each writes one JSON result per host into
rollout_results_dir on the control machine, which sagefleet.rollout reads.
"""

from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, python, server

from ..commands import docker_config_json, registry_of
from ..facts.build import PublishedImage
from ..facts.gpu import EngineGpuAccess
from ..facts.service import ImagePresent, ServiceHealth, ServiceState
from ..facts.verify import ProbeResult
from ..gpu_access import choose
from ..inputs import build_inputs
from ..operations import build as build_ops
from ..operations import service as service_ops
from ..pins import host_pins
from .build import bake_args, build_image, probe_and_gate
from .report import write_result

# Build hosts push (publish_image); GPU nodes pull one digest and (re)start the
# service (rollout_node). Each writes one JSON result per host into
# rollout_results_dir on the control machine, which sagefleet.rollout reads.

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


def registry_login(pins, registry: str) -> str | None:
    """Upload the registry login as <state_dir>/registry/config.json (dir 700, file
    600) and return that DOCKER_CONFIG directory; None when no login is configured.
    The secret travels by SFTP, never on a command line or in pyinfra's output."""
    config = registry_config(pins, registry)
    if config is None:
        return None
    config_dir = f"{pins.service.state_dir}/registry"
    files.directory(name="Registry login directory", path=config_dir, mode="700")
    files.put(
        name=f"Registry login for {registry}",
        src=BytesIO(config),
        dest=f"{config_dir}/config.json",
        mode="600",
    )
    return config_dir


def _record_published(pins, inputs: str, results_dir: str | None) -> None:
    published = host.get_fact(PublishedImage, push_dir=f"{pins.build.build_dir}/push")
    digest = PublishedImage.digest(published, pins.image.bake_target)
    if not digest or published["inputs"] != inputs:
        raise RuntimeError(
            f"no pushed digest for inputs {inputs[:19]} in {pins.build.build_dir}/push"
        )
    repo = pins.image.ref.rsplit(":", 1)[0]
    write_result(
        results_dir,
        {
            "host": host.name,
            "action": "publish",
            "status": "published",
            "image": f"{repo}@{digest}",
            "inputs": inputs,
        },
    )


@deploy("Publish the image to the registry")
def publish_image():
    """Build (if inputs changed) and verify, then push with bake and record the digest."""
    pins = host_pins(host)
    build_image()
    docker_config = registry_login(pins, registry_of(pins.image.ref))
    inputs = build_inputs(pins)
    build_ops.push(
        name=f"Push {pins.image.ref}", docker_config=docker_config, **bake_args(pins, inputs)
    )
    python.call(
        name="Record the pushed digest",
        function=_record_published,
        pins=pins,
        inputs=inputs.inputs,
        results_dir=pins.rollout_results_dir,
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
    )


def _check_and_record(pins, action: str, image: str, before: dict, results_dir: str | None):
    """After the service step: health check, then this host's result (raise: host fails)."""
    health = host.get_fact(
        ServiceHealth,
        container=pins.service.service_name,
        port=pins.service.service_port,
        state_dir=pins.service.state_dir,
    )
    after = host.get_fact(
        ServiceState, container=pins.service.service_name, state_dir=pins.service.state_dir
    )
    was = before["container"] or {}
    now = after["container"] or {}
    if was.get("image") != now.get("image"):
        status = "moved"
    elif was.get("id") != now.get("id"):
        status = "restarted"
    else:
        status = "unchanged"
    record = {
        "host": host.name,
        "action": action,
        "status": status if health["healthy"] else "failed",
        "before": was.get("image"),
        "after": now.get("image"),
        "target": image,
        "previous": after["previous"],
        "health": health,
        "reason": "; ".join(health["problems"]) or None,
    }
    write_result(results_dir, record)
    if not health["healthy"]:
        raise RuntimeError(f"health check failed: {record['reason']}")


def _preview(pins, action: str) -> None:
    """Plan-time only (run under --dry): current -> target and whether it would restart."""
    svc = host.get_fact(
        ServiceState, container=pins.service.service_name, state_dir=pins.service.state_dir
    )
    current = (svc["container"] or {}).get("image")
    image = svc["previous"] if action == "rollback" else pins.target_image
    record = {"host": host.name, "action": "preview", "current": current, "target": image}
    if not image:
        record.update(restart=False, reason="no target (no previous digest recorded)")
    else:
        use_sage = False
        if pins.service.verify_on_nodes and host.get_fact(ImagePresent, image_ref=image):
            use_sage = service_ops.use_sage_attention(
                host.get_fact(
                    ProbeResult, image_ref=image, results_dir=f"{pins.service.state_dir}/probe"
                )
            )
        kw = _service_kwargs(pins, image)
        access = choose(host.get_fact(EngineGpuAccess), kw["gpu_access"], gpu_node=True)
        _, settings = service_ops.desired_service(
            kw["container"],
            image,
            kw["port"],
            kw["restart"],
            kw["volumes"],
            kw["cli_args"],
            access.flags,
            use_sage,
            kw["network"],
        )
        reason = service_ops.restart_reason(svc["container"], image, settings)
        record.update(restart=reason is not None, reason=reason, gpu_access=access.mode)
        if access.problem:
            record.update(restart=False, reason=access.problem)
    write_result(pins.rollout_results_dir, record)


@deploy("Roll out the ComfyUI service")
def rollout_node():
    """On a GPU node: pull the target digest (rollback: the recorded previous one),
    probe + gate it, (re)start the service only if its digest or settings changed,
    then the health check; the result goes to rollout_results_dir."""
    pins = host_pins(host)
    action = pins.rollout_action or "deploy"
    if action == "preview":
        return _preview(pins, "deploy" if pins.target_image else "rollback")
    before = host.get_fact(
        ServiceState, container=pins.service.service_name, state_dir=pins.service.state_dir
    )
    if action == "rollback":
        image = before["previous"]
        if not image:
            server.shell(
                name="Rollback target",
                commands=["echo 'sagefleet: no previous digest recorded on this node' >&2; exit 1"],
            )
            return
    else:
        image = pins.target_image
        if not image:
            raise ValueError("target_image (repo@sha256:...) is required for a rollout")
    docker_config = registry_login(pins, registry_of(image))
    service_ops.pull(
        name=f"Pull {image.split('@')[1][:19]}", image=image, docker_config=docker_config
    )
    if pins.service.verify_on_nodes:
        probe_and_gate(pins, pins.service.state_dir, image, gpu_node=True)
    service_ops.service(name=f"Service {pins.service.service_name}", **_service_kwargs(pins, image))
    service_ops.await_service(
        name=f"Wait for {pins.service.service_name}",
        container=pins.service.service_name,
        port=pins.service.service_port,
        state_dir=pins.service.state_dir,
        timeout_s=pins.service.health_timeout_s,
    )
    python.call(
        name="Health check",
        function=_check_and_record,
        pins=pins,
        action=action,
        image=image,
        before=before,
        results_dir=pins.rollout_results_dir,
    )


def publish_preview() -> None:
    """Plan-time only (--dry): the digest this build host pushed last, and whether
    its inputs still match the pins (else a build + push would run first)."""
    pins = host_pins(host)
    inputs = build_inputs(pins).inputs
    published = host.get_fact(PublishedImage, push_dir=f"{pins.build.build_dir}/push")
    digest = PublishedImage.digest(published, pins.image.bake_target)
    repo = pins.image.ref.rsplit(":", 1)[0]
    write_result(
        pins.rollout_results_dir,
        {
            "host": host.name,
            "action": "publish-preview",
            "image": f"{repo}@{digest}" if digest else None,
            "up_to_date": bool(digest) and published["inputs"] == inputs,
        },
    )


def rollout_host() -> None:
    """One rollout step on this host, as rollout.py's --data rollout_action asks."""
    action = host.data.get("rollout_action")
    if "build_hosts" in host.groups and action == "publish":
        publish_image()
    elif "build_hosts" in host.groups and action == "preview":
        publish_preview()
    elif "gpu_nodes" in host.groups and action != "publish":
        rollout_node()
