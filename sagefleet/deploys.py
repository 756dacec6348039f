"""The order of operations: @deploy functions called from deploy.py."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

from . import operations
from .context import (
    DEFAULT_CONTEXT,
    JINJA_KWARGS,
    PROJECT_ROOT,
    REQUIREMENTS_PATH,
    TEMPLATE,
    BuildContext,
    build_context,
    inputs_hash,
    render_requirements,
)
from .facts import BuildState
from .pins import GitContext
from .validation import host_pins
from .verify import expectation


def bake_variables(pins) -> dict[str, str]:
    """Bake variables that define the image (all go into the inputs hash)."""
    return {
        "REGISTRY_URL": pins.registry_url,
        "IMAGE_LABEL": pins.image_label,
        "BASE_IMAGE": pins.base_image,
        "TORCH_VERSION": pins.torch_version,
        "TORCH_INDEX_URL": pins.torch_index_url,
    }


PROBE_SCRIPT = PROJECT_ROOT / "sagefleet" / "probe.py"


@functools.lru_cache(maxsize=8)
def _local_context(paths: tuple[str, ...]):
    """The context tarball, made once per pyinfra run rather than once per host."""
    return build_context(paths, PROJECT_ROOT)


@dataclass(frozen=True)
class BuildInputs:
    """Everything a bake of one host depends on, computed locally once."""

    git: GitContext | None
    context: BuildContext | None  # the local tarball; None for a git context
    context_digest: str
    requirements: str
    variables: dict[str, str]
    inputs: str
    ca_path: str | None


def build_inputs(pins) -> BuildInputs:
    """The rendered requirements, context digest, bake variables and inputs hash."""
    requirements = render_requirements(pins.template_context())
    git = pins.build_context if isinstance(pins.build_context, GitContext) else None
    ctx = None if git else _local_context(tuple(pins.build_context or DEFAULT_CONTEXT))
    context_digest = f"git:{git.git}@{git.ref}" if git else ctx.digest
    variables = bake_variables(pins)
    return BuildInputs(
        git=git,
        context=ctx,
        context_digest=context_digest,
        requirements=requirements,
        variables=variables,
        inputs=inputs_hash(
            context_digest, requirements, pins.bake_files, pins.bake_target, variables
        ),
        ca_path=f"{pins.build_dir}/secrets/pip-ca.pem" if pins.pip_ca_bundle else None,
    )


@functools.lru_cache(maxsize=8)
def _sha1_file(path: str) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def _report_unchanged(
    pins, digest: str, requirements: str, ca_path: str | None, inputs: str
) -> bool:
    """Read BuildState (one round trip); when every check of build_image's operations
    already holds, report the host unchanged with one operation and return True."""
    build_dir = pins.build_dir
    want = {
        f"{build_dir}/context/{REQUIREMENTS_PATH}": (
            hashlib.sha1(requirements.encode()).hexdigest(),
            "644",
        ),
        f"{build_dir}/probe.py": (_sha1_file(str(PROBE_SCRIPT)), "644"),
    }
    if ca_path:
        want[ca_path] = (_sha1_file(str(Path(pins.pip_ca_bundle))), "600")
    found = host.get_fact(
        BuildState, build_dir=build_dir, image_ref=pins.image_ref, files=list(want)
    )
    image = found["image"]
    if (
        found["marker"] != digest
        or found["build_dir_mode"] != "755"
        or not image
        or image["inputs"] != inputs
        or found["probe"] is None
        or any(found["files"].get(p) != {"sha1": s, "mode": m} for p, (s, m) in want.items())
    ):
        return False
    operations.unchanged(
        name="Up to date (build context, requirements, image, probe, gate)",
        image_ref=pins.image_ref,
        image_id=image["id"],
        inputs=inputs,
        stored_probe=found["probe"],
        expect=expectation(pins),
        in_place=[f"build context {digest[:12]}", *want],
    )
    return True


@deploy("Build the ComfyUI image")
def build_image():
    """Put the build context on a build host, render the pinned requirements into
    it, and bake the image when (and only when) an input changed."""
    pins = host_pins(host)
    build_dir = pins.build_dir
    context_dir = f"{build_dir}/context"
    b = build_inputs(pins)
    git, digest, requirements = b.git, b.context_digest, b.requirements
    variables, inputs, ca_path = b.variables, b.inputs, b.ca_path
    if not pins.force_rebuild and _report_unchanged(pins, digest, requirements, ca_path, inputs):
        return

    files.directory(name="Build directory", path=build_dir, mode="755")
    operations.context(
        name="Build context",
        build_dir=build_dir,
        digest=digest,
        **({"git_url": git.git, "git_ref": git.ref} if git else {"tar": b.context.tar}),
    )
    files.template(
        name="Render extra-requirements.txt",
        src=str(TEMPLATE),
        dest=f"{context_dir}/{REQUIREMENTS_PATH}",
        mode="644",
        create_remote_dir=False,  # the context unpacked it; saves a round trip per host
        jinja_env_kwargs=dict(JINJA_KWARGS),
        **pins.template_context(),
    )
    if ca_path:
        files.put(
            name="CA bundle for pip (BuildKit secret)",
            src=str(Path(pins.pip_ca_bundle)),
            dest=ca_path,
            mode="600",
        )
    operations.image(
        name=f"Bake {pins.bake_target}",
        build_dir=build_dir,
        target=pins.bake_target,
        image_ref=pins.image_ref,
        inputs=inputs,
        bake_files=pins.bake_files,
        variables=variables,
        ca_bundle_path=ca_path,
        min_free_gb=pins.min_free_disk_gb,
        force=pins.force_rebuild,
    )
    verify_image(pins)


@deploy("Verify the ComfyUI image")
def verify_image(pins=None):
    """Probe the built image once per image ID, then gate it against the pins."""
    pins = pins or host_pins(host)
    probe_and_gate(pins, pins.build_dir, pins.image_ref, create_dir=False)


def probe_and_gate(pins, work_dir: str, image_ref: str, create_dir: bool = True) -> None:
    """Put the probe script in work_dir, probe image_ref there (once per image ID)
    and gate the stored result against the pins: build hosts and GPU nodes alike."""
    probe_path = f"{work_dir}/probe.py"
    if create_dir:
        files.directory(name="State directory", path=work_dir, mode="755")
    files.put(
        name="Probe script",
        src=str(PROBE_SCRIPT),
        dest=probe_path,
        mode="644",
        # Build hosts: the Build directory operation made work_dir already.
        create_remote_dir=create_dir,
    )
    operations.probe(
        name="Kernel probe",
        build_dir=work_dir,
        image_ref=image_ref,
        probe_path=probe_path,
        quick=pins.probe_quick,
        timeout_s=pins.probe_timeout_s,
    )
    operations.gate(
        name="Verification gate",
        build_dir=work_dir,
        image_ref=image_ref,
        expect=expectation(pins),
    )


def collect_host_record(out_dir: str) -> dict:
    """Read (never change) what this host runs, for the fleet report; written to
    <out_dir>/hosts/<host>.json on the control machine."""
    import os

    from .facts import GpuHost, ProbeResult

    record: dict = {"host": host.name, "groups": sorted(host.groups), "gpus": [], "image_id": None}
    record["gpus"] = host.get_fact(GpuHost)["gpus"]
    if "build_hosts" in host.groups:
        pins = host_pins(host)
        stored = host.get_fact(
            ProbeResult, image_ref=pins.image_ref, results_dir=f"{pins.build_dir}/probe"
        )
        record.update(image_ref=pins.image_ref, image_id=stored["image_id"], probe=stored["result"])
    write_result(os.path.join(out_dir, "hosts"), record)
    return record


# --------------------------------------------------------------------------- rollout
# Build hosts push (publish_image); GPU nodes pull one digest and (re)start the
# service (rollout_node). Each writes one JSON result per host into
# rollout_results_dir on the control machine, which sagefleet.rollout reads.

REGISTRY_USER_ENV = "SAGEFLEET_REGISTRY_USER"
REGISTRY_PASSWORD_ENV = "SAGEFLEET_REGISTRY_PASSWORD"
REGISTRY_PASSWORD_FILE_ENV = "SAGEFLEET_REGISTRY_PASSWORD_FILE"


def registry_config(pins, registry: str, environ=None) -> bytes | None:
    """The docker config.json to log in to registry, from the control machine only:
    pins.registry_auth_file (a config.json), else $SAGEFLEET_REGISTRY_USER with
    $SAGEFLEET_REGISTRY_PASSWORD_FILE (or $SAGEFLEET_REGISTRY_PASSWORD); None: no login."""
    import os

    from .commands import docker_config_json

    environ = os.environ if environ is None else environ
    if pins.registry_auth_file:
        return Path(pins.registry_auth_file).read_bytes()
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
    from io import BytesIO

    config = registry_config(pins, registry)
    if config is None:
        return None
    config_dir = f"{pins.state_dir}/registry"
    files.directory(name="Registry login directory", path=config_dir, mode="700")
    files.put(
        name=f"Registry login for {registry}",
        src=BytesIO(config),
        dest=f"{config_dir}/config.json",
        mode="600",
    )
    return config_dir


def bake_inputs(pins) -> tuple[dict[str, str], str, str | None]:
    """(bake variables, inputs hash, CA path on the host) as build_image uses them."""
    b = build_inputs(pins)
    return b.variables, b.inputs, b.ca_path


def write_result(results_dir: str | None, record: dict) -> None:
    """One JSON document per host on the control machine (atomic)."""
    import json
    import os

    if not results_dir:
        return
    os.makedirs(results_dir, exist_ok=True)
    path = os.path.join(results_dir, f"{record['host'].replace('/', '_')}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=2)
    os.replace(path + ".tmp", path)


def _record_published(pins, inputs: str, results_dir: str | None) -> None:
    from .facts import PublishedImage

    published = host.get_fact(PublishedImage, push_dir=f"{pins.build_dir}/push")
    digest = PublishedImage.digest(published, pins.bake_target)
    if not digest or published["inputs"] != inputs:
        raise RuntimeError(f"no pushed digest for inputs {inputs[:19]} in {pins.build_dir}/push")
    repo = pins.image_ref.rsplit(":", 1)[0]
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
    from pyinfra.operations import python

    from .commands import registry_of

    pins = host_pins(host)
    build_image()
    docker_config = registry_login(pins, registry_of(pins.image_ref))
    variables, inputs, ca_path = bake_inputs(pins)
    operations.push(
        name=f"Push {pins.image_ref}",
        build_dir=pins.build_dir,
        target=pins.bake_target,
        image_ref=pins.image_ref,
        inputs=inputs,
        bake_files=pins.bake_files,
        variables=variables,
        ca_bundle_path=ca_path,
        docker_config=docker_config,
    )
    python.call(
        name="Record the pushed digest",
        function=_record_published,
        pins=pins,
        inputs=inputs,
        results_dir=pins.rollout_results_dir,
    )


def _service_kwargs(pins, image: str) -> dict:
    return dict(
        container=pins.service_name,
        image=image,
        port=pins.service_port,
        state_dir=pins.state_dir,
        restart=pins.service_restart,
        volumes=pins.service_volumes,
        cli_args=pins.service_cli_args,
        probe_dir=f"{pins.state_dir}/probe" if pins.verify_on_nodes else None,
    )


def _check_and_record(pins, action: str, image: str, before: dict, results_dir: str | None):
    """After the service step: health check, then this host's result (raise: host fails)."""
    from .facts import ServiceHealth, ServiceState

    health = host.get_fact(
        ServiceHealth,
        container=pins.service_name,
        port=pins.service_port,
        timeout_s=pins.health_timeout_s,
    )
    after = host.get_fact(ServiceState, container=pins.service_name, state_dir=pins.state_dir)
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
    from .facts import ImagePresent, ProbeResult, ServiceState

    svc = host.get_fact(ServiceState, container=pins.service_name, state_dir=pins.state_dir)
    current = (svc["container"] or {}).get("image")
    image = svc["previous"] if action == "rollback" else pins.target_image
    record = {"host": host.name, "action": "preview", "current": current, "target": image}
    if not image:
        record.update(restart=False, reason="no target (no previous digest recorded)")
    else:
        use_sage = False
        if pins.verify_on_nodes and host.get_fact(ImagePresent, image_ref=image):
            use_sage = operations.use_sage_attention(
                host.get_fact(ProbeResult, image_ref=image, results_dir=f"{pins.state_dir}/probe")
            )
        kw = _service_kwargs(pins, image)
        _, settings = operations.desired_service(
            kw["container"],
            image,
            kw["port"],
            kw["restart"],
            kw["volumes"],
            kw["cli_args"],
            svc["nvidia_runtime"],
            use_sage,
        )
        reason = operations.restart_reason(svc["container"], image, settings)
        record.update(restart=reason is not None, reason=reason)
    write_result(pins.rollout_results_dir, record)


@deploy("Roll out the ComfyUI service")
def rollout_node():
    """On a GPU node: pull the target digest (rollback: the recorded previous one),
    probe + gate it, (re)start the service only if its digest or settings changed,
    then the health check; the result goes to rollout_results_dir."""
    from pyinfra.operations import python, server

    from .commands import registry_of
    from .facts import ServiceState

    pins = host_pins(host)
    action = pins.rollout_action or "deploy"
    if action == "preview":
        return _preview(pins, "deploy" if pins.target_image else "rollback")
    before = host.get_fact(ServiceState, container=pins.service_name, state_dir=pins.state_dir)
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
    operations.pull(
        name=f"Pull {image.split('@')[1][:19]}", image=image, docker_config=docker_config
    )
    if pins.verify_on_nodes:
        probe_and_gate(pins, pins.state_dir, image)
    operations.service(name=f"Service {pins.service_name}", **_service_kwargs(pins, image))
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
    from .facts import PublishedImage

    pins = host_pins(host)
    _, inputs, _ = bake_inputs(pins)
    published = host.get_fact(PublishedImage, push_dir=f"{pins.build_dir}/push")
    digest = PublishedImage.digest(published, pins.bake_target)
    repo = pins.image_ref.rsplit(":", 1)[0]
    write_result(
        pins.rollout_results_dir,
        {
            "host": host.name,
            "action": "publish-preview",
            "image": f"{repo}@{digest}" if digest else None,
            "up_to_date": bool(digest) and published["inputs"] == inputs,
        },
    )
