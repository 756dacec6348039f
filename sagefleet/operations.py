"""sagefleet's own pyinfra operations: validate, read facts, then yield one quoted
command or say with host.noop why nothing needs doing.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from io import BytesIO

from pyinfra import host, logger, state
from pyinfra.api import OperationError, operation
from pyinfra.operations import files

from . import commands
from .facts import (
    BuildHost,
    ContextMarker,
    ImagePresent,
    ProbeResult,
    PublishedImage,
    ServiceState,
)
from .verify import Expectation, describe, gate_failures

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VAR_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _require_abs(name: str, path: str) -> None:
    if not isinstance(path, str) or not posixpath.isabs(path) or "\n" in path:
        raise OperationError(f"{name} must be an absolute path, got {path!r}")


@operation()
def context(
    build_dir: str,
    tar: bytes | None = None,
    digest: str | None = None,
    git_url: str | None = None,
    git_ref: str | None = None,
):
    """
    Put the build context in ``{build_dir}/context``.

    + build_dir: directory on the host that holds the context, logs and lock
    + tar: a tarball of local files (sagefleet.context.build_context)
    + digest: the tarball's (or the git URL+ref's) digest, recorded on the host
    + git_url: instead of a tarball, clone this repository ...
    + git_ref: ... at this ref (pin a commit: a moving branch is not re-checked
      until the digest changes, i.e. until url or ref change)

    Idempotence: the digest of the context in place is kept in
    ``{build_dir}/context.digest``; an equal digest means nothing to do. Files
    removed from the local context are not deleted on the host.

    **Example:**

    .. code:: python

        ctx = build_context(["services", "docker-bake.hcl"])
        operations.context(build_dir="/opt/sagefleet/build", tar=ctx.tar, digest=ctx.digest)
    """
    _require_abs("build_dir", build_dir)
    if (tar is None) == (git_url is None):
        raise OperationError("give either tar (local context) or git_url + git_ref")
    if not digest:
        raise OperationError("digest is required")
    if git_url is not None and not git_ref:
        raise OperationError("git_ref is required with git_url")
    context_dir = f"{build_dir}/context"
    marker = f"{build_dir}/context.digest"
    if host.get_fact(ContextMarker, marker_path=marker) == digest:
        host.noop(f"build context {digest[:12]} already in {context_dir}")
        return
    if git_url is not None:
        yield commands.git_context(git_url, git_ref, context_dir, marker, digest)
        return
    tar_path = f"{build_dir}/context.tar"
    yield from files.put._inner(src=BytesIO(tar), dest=tar_path, mode="600")
    yield commands.extract_context(tar_path, context_dir, marker, digest)


@operation()
def image(
    build_dir: str,
    target: str,
    image_ref: str,
    inputs: str,
    bake_files: Sequence[str] = ("docker-bake.hcl",),
    variables: Mapping[str, str] | None = None,
    ca_bundle_path: str | None = None,
    min_free_gb: float = 0,
    force: bool = False,
):
    """
    Build ``target`` with ``docker buildx bake --load`` when its inputs changed.

    + build_dir: holds ``context/`` (from ``sagefleet.operations.context``), the lock and ``bake.log``
    + target: the bake target, e.g. ``complete-cuda``
    + image_ref: the tag that target produces, e.g. ``ghcr.io/org/comfyui-docker/complete-cuda:latest``
    + inputs: the inputs hash (sagefleet.context.inputs_hash); passed to bake as
      ``SAGEFLEET_INPUTS`` and stamped on the image as label ``org.sagefleet.inputs``
    + bake_files: bake files, relative to the context
    + variables: further bake variables (``NAME: value``), passed in the environment
    + ca_bundle_path: path on the host of a CA bundle for pip, handed to BuildKit as secret ``pip_ca``
    + min_free_gb: refuse to build with less free disk under the Docker root
    + force: bake even when the label matches

    Idempotence: the image's ``org.sagefleet.inputs`` label is compared with
    ``inputs``; equal means nothing to do. Preflight (engine reachable, buildx
    present, free disk) fails the host with what to install before any change.
    A failed bake keeps the current tag on the current image; a successful one
    keeps the replaced image tagged ``<tag>-previous``. Concurrent runs on one
    host: the second refuses (exit 75) while the first holds the build lock.

    **Example:**

    .. code:: python

        operations.image(
            build_dir="/opt/sagefleet/build", target="complete-cuda",
            image_ref="ghcr.io/pixeloven/comfyui-docker/complete-cuda:latest",
            inputs="sha256:...",
        )
    """
    _require_abs("build_dir", build_dir)
    if not _NAME_RE.match(target or ""):
        raise OperationError(f"invalid bake target {target!r}")
    variables = dict(variables or {})
    for key in variables:
        if not _VAR_RE.match(key):
            raise OperationError(f"invalid bake variable name {key!r}")
    if not inputs:
        raise OperationError("inputs (the inputs hash) is required")

    facts = host.get_fact(BuildHost, image_ref=image_ref)
    current = facts["image"]
    if not facts["problems"] and current and current["inputs"] == inputs and not force:
        host.noop(
            f"{image_ref} is up to date: image {current['id'][:19]} was built from inputs {inputs[:19]}"
        )
        return
    # Disk is checked only when a bake would run: the last build may have used it.
    problems = list(facts["problems"])
    if facts["free_gb"] is not None and facts["free_gb"] < min_free_gb:
        problems.append(
            f"only {facts['free_gb']} GB free under {facts['docker_root']} "
            f"(min_free_disk_gb = {min_free_gb}): free space (docker system prune) or lower the threshold"
        )
    if problems:
        message = "preflight failed: " + "; ".join(problems)
        logger.warning(f"{host.print_prefix}{message}")
        yield commands.fail(message)
        return

    if current and not force:
        logger.info(
            f"{host.print_prefix}bake needed: {image_ref} has inputs "
            f"{(current['inputs'] or 'none')[:19]}, want {inputs[:19]}"
        )
    elif not current:
        logger.info(f"{host.print_prefix}bake needed: no image {image_ref} on this host yet")

    variables["SAGEFLEET_INPUTS"] = inputs
    if ca_bundle_path:
        variables["PIP_CA_BUNDLE"] = ca_bundle_path
    yield commands.bake(
        context_dir=f"{build_dir}/context",
        bake_files=bake_files,
        target=target,
        variables=variables,
        image_ref=image_ref,
        log_path=f"{build_dir}/bake.log",
        lock_path=f"{build_dir}/build.lock",
    )


@operation()
def probe(
    build_dir: str,
    image_ref: str,
    probe_path: str,
    quick: bool = True,
    timeout_s: float = 300,
):
    """
    Run the SageAttention kernel probe in the current image, once per image ID.

    + build_dir: results go to ``{build_dir}/probe/<image id>.json``
    + image_ref: the image to probe (the tag the bake produced)
    + probe_path: the probe script on the host (sagefleet/probe.py, put there first)
    + quick: 4 shapes per kernel instead of 16
    + timeout_s: per kernel; each kernel runs in its own subprocess

    Idempotence: a result stored for the image ID the tag points to means nothing
    to do; a rebuilt image (new ID) is probed again. ``--gpus all`` is passed where
    the engine has the NVIDIA runtime; elsewhere the probe reports "no GPU".
    Under ``--dry`` nothing runs: the kernels run only in this operation.
    """
    _require_abs("build_dir", build_dir)
    results_dir = f"{build_dir}/probe"
    stored = host.get_fact(ProbeResult, image_ref=image_ref, results_dir=results_dir)
    if stored["image_id"] and stored["result"] is not None:
        host.noop(f"probe result for image {stored['image_id'][:19]} already stored")
        return
    gpus = host.get_fact(BuildHost, image_ref=image_ref)["nvidia_runtime"]
    yield commands.probe(
        image_ref, probe_path, results_dir, gpus=gpus, quick=quick, timeout_s=timeout_s
    )


@operation()
def gate(build_dir: str, image_ref: str, expect: Expectation):
    """
    Fail the host unless the probed image matches the pins (the verification gate).

    + build_dir: where ``sagefleet.operations.probe`` stored its results
    + image_ref: the image whose stored result is checked
    + expect: a ``sagefleet.verify.Expectation`` (versions, wheel build tags,
      sageattn3 requirement, torch version, kernel accuracy bounds)

    Reads only the stored probe result: nothing runs in the image here. Passing is
    a noop that names what was verified; failing fails the host with every reason.
    """
    stored = host.get_fact(ProbeResult, image_ref=image_ref, results_dir=f"{build_dir}/probe")
    if stored["result"] is None:
        if state.is_executing:
            yield commands.fail(f"no probe result for image {stored['image_id']} of {image_ref}")
        else:
            host.noop("verification runs after the probe of the image")
        return
    failures = gate_failures(stored["result"], expect)
    image_id = (stored["image_id"] or "")[:19]
    if failures:
        message = f"verification failed for image {image_id}: " + "; ".join(failures)
        logger.warning(f"{host.print_prefix}{message}")
        yield commands.fail(message)
        return
    host.noop(f"verified image {image_id}: {describe(stored['result'])}")


@operation()
def unchanged(
    image_ref: str,
    image_id: str,
    inputs: str,
    stored_probe: dict,
    expect: Expectation,
    in_place: Sequence[str] = (),
):
    """
    Report a build host where nothing needs doing, decided from one ``BuildState`` read.

    + image_ref, image_id, inputs: the current image, its ID and its inputs label
    + stored_probe: the probe result stored for that image ID
    + expect: the verification gate's demands (``sagefleet.verify.Expectation``)
    + in_place: what was found already in place, for the noop messages

    ``sagefleet.deploys.build_image`` calls this instead of its eight operations
    only when every check they would make already holds (context digest, build
    directory, each file's sha1 and mode, image label, stored probe result), so
    a no-change run costs one round trip per host. The gate still applies to the
    stored result: a failing gate fails the host here as ``gate`` does.
    """
    failures = gate_failures(stored_probe, expect)
    if failures:
        message = f"verification failed for image {image_id[:19]}: " + "; ".join(failures)
        logger.warning(f"{host.print_prefix}{message}")
        yield commands.fail(message)
        return
    host.noop(
        f"{image_ref} is up to date: image {image_id[:19]} was built from inputs {inputs[:19]}"
    )
    if in_place:
        host.noop("already in place: " + ", ".join(in_place))
    host.noop(f"probe result for image {image_id[:19]} already stored")
    host.noop(f"verified image {image_id[:19]}: {describe(stored_probe)}")


# --------------------------------------------------------------------------- rollout

_DIGEST_REF_RE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


def _require_digest_ref(image: str) -> None:
    if not isinstance(image, str) or not _DIGEST_REF_RE.match(image):
        raise OperationError(
            f"image must be pinned by digest (repo@sha256:<64 hex>), got {image!r}: "
            "GPU nodes never run a moving tag"
        )


@operation()
def push(
    build_dir: str,
    target: str,
    image_ref: str,
    inputs: str,
    bake_files: Sequence[str] = ("docker-bake.hcl",),
    variables: Mapping[str, str] | None = None,
    ca_bundle_path: str | None = None,
    docker_config: str | None = None,
):
    """
    Push the image of ``target`` with ``docker buildx bake --push`` and keep bake's
    ``--metadata-file`` (its ``containerimage.digest`` is what GPU nodes pull).

    + build_dir: holds ``context/`` and ``push/`` (metadata.json, inputs)
    + target, image_ref, inputs, bake_files, variables, ca_bundle_path: as for
      ``sagefleet.operations.image`` (same values, so bake reuses the build cache)
    + docker_config: directory on the host with the registry login (config.json, mode 600)

    Idempotence: the inputs hash of the last successful push is kept in
    ``push/inputs``; equal inputs and a digest in ``push/metadata.json`` for the
    same image name mean nothing to do. Credentials go through ``DOCKER_CONFIG``,
    never the command line.
    """
    _require_abs("build_dir", build_dir)
    if not _NAME_RE.match(target or ""):
        raise OperationError(f"invalid bake target {target!r}")
    if not inputs:
        raise OperationError("inputs (the inputs hash) is required")
    push_dir = f"{build_dir}/push"
    published = host.get_fact(PublishedImage, push_dir=push_dir)
    digest = PublishedImage.digest(published, target)
    name = ((published.get("metadata") or {}).get(target) or {}).get("image.name")
    if published["inputs"] == inputs and digest and name == image_ref:
        host.noop(f"{image_ref} (inputs {inputs[:19]}) already pushed as {digest[:19]}")
        return
    variables = dict(variables or {})
    variables["SAGEFLEET_INPUTS"] = inputs
    if ca_bundle_path:
        variables["PIP_CA_BUNDLE"] = ca_bundle_path
    yield f"mkdir -p {commands.q(push_dir)}"
    yield commands.bake_push(
        context_dir=f"{build_dir}/context",
        bake_files=bake_files,
        target=target,
        variables=variables,
        metadata_path=f"{push_dir}/metadata.json",
        inputs_path=f"{push_dir}/inputs",
        inputs=inputs,
        log_path=f"{build_dir}/push.log",
        lock_path=f"{build_dir}/build.lock",
        docker_config=docker_config,
    )


@operation()
def pull(image: str, docker_config: str | None = None):
    """
    Pull exactly one digest (``repo@sha256:...``) onto a GPU node.

    + image: the image pinned by digest; a tag is refused
    + docker_config: directory on the host with the registry login

    Idempotence: an image already present under that digest means nothing to do.
    """
    _require_digest_ref(image)
    present = host.get_fact(ImagePresent, image_ref=image)
    if present:
        host.noop(f"{image.split('@')[1][:19]} already pulled (image {present[:19]})")
        return
    yield commands.pull(image, docker_config)


def service_settings(run_argv: Sequence[str]) -> str:
    """Hash of everything the container is started with (image included)."""
    import hashlib
    import json

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


def desired_service(
    container: str,
    image: str,
    port: int,
    restart: str,
    volumes: Sequence[tuple[str, str]],
    cli_args: Sequence[str],
    gpus: bool,
    use_sage: bool,
) -> tuple[list[str], str]:
    """(docker run argv, settings hash) of the service as it should run."""
    args = list(cli_args) + (["--use-sage-attention"] if use_sage else [])
    bare = commands.service_args(container, image, port, restart, volumes, args, gpus, "")
    settings = service_settings(bare)
    return commands.service_args(
        container, image, port, restart, volumes, args, gpus, settings
    ), settings


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
    + probe_dir: where ``sagefleet.operations.probe`` stored results on this node

    ``--gpus all`` is passed where the engine has the NVIDIA runtime. Idempotence:
    the running container's image reference and its ``org.sagefleet.settings``
    label (hash of the whole ``docker run`` line) are compared with what is
    wanted; equal and running means nothing to do, else the container is replaced.
    """
    _require_digest_ref(image)
    _require_abs("state_dir", state_dir)
    if not _NAME_RE.match(container or ""):
        raise OperationError(f"invalid container name {container!r}")
    for src, dst in volumes:
        _require_abs("volume host path", src)
        _require_abs("volume container path", dst)
    svc = host.get_fact(ServiceState, container=container, state_dir=state_dir)
    if not svc["docker"]:
        yield commands.fail("the Docker engine is not reachable on this GPU node: start dockerd")
        return
    use_sage = False
    if probe_dir:
        use_sage = use_sage_attention(
            host.get_fact(ProbeResult, image_ref=image, results_dir=probe_dir)
        )
    argv, settings = desired_service(
        container, image, port, restart, volumes, cli_args, svc["nvidia_runtime"], use_sage
    )
    reason = restart_reason(svc["container"], image, settings)
    if reason is None:
        host.noop(f"{container} already runs {image.split('@')[1][:19]} with these settings")
        return
    logger.info(f"{host.print_prefix}(re)start {container}: {reason}")
    yield commands.start_service(container, image, argv, volumes, state_dir)
