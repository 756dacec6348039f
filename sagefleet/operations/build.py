"""sagefleet's own pyinfra operations: validate, read facts, then yield one quoted
command or say with host.noop why nothing needs doing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from io import BytesIO

from pyinfra import host, logger
from pyinfra.api import OperationError, operation
from pyinfra.operations import files

from .. import commands
from ..facts.build import BuildHost, ContextMarker, PublishedImage
from .snapshot import Snapshot, changed, found
from .util import NAME_RE, require_abs

_VAR_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")


@operation()
def build_context(
    build_dir: str,
    tar: bytes | None = None,
    digest: str | None = None,
    git_url: str | None = None,
    git_ref: str | None = None,
    snapshot: Snapshot | None = None,
):
    """
    Put the build context in ``{build_dir}/context``.

    + build_dir: directory on the host that holds the context, logs and lock
    + tar: a tarball of local files (sagefleet.inputs.context_tarball)
    + digest: the tarball's (or the git URL+ref's) digest, recorded on the host
    + git_url: instead of a tarball, clone this repository ...
    + git_ref: ... at this ref (pin a commit: a moving branch is not re-checked
      until the digest changes, i.e. until url or ref change)
    + snapshot: the run's ``BuildState`` (its ``marker``); None: read ``ContextMarker``

    Idempotence: the digest of the context in place is kept in
    ``{build_dir}/context.digest``; an equal digest means nothing to do. Files
    removed from the local context are not deleted on the host.

    **Example:**

    .. code:: python

        tarball = context_tarball(["services", "docker-bake.hcl"])
        build_context(build_dir="/opt/sagefleet/build", tar=tarball.tar, digest=tarball.digest)
    """
    require_abs("build_dir", build_dir)
    if (tar is None) == (git_url is None):
        raise OperationError("give either tar (local context) or git_url + git_ref")
    if not digest:
        raise OperationError("digest is required")
    if git_url is not None and not git_ref:
        raise OperationError("git_ref is required with git_url")
    context_dir = f"{build_dir}/context"
    marker = f"{build_dir}/context.digest"
    doc = found(snapshot)
    in_place = (
        doc["marker"] if doc is not None else host.get_fact(ContextMarker, marker_path=marker)
    )
    if in_place == digest:
        host.noop(f"build context {digest[:12]} already in {context_dir}")
        return
    changed(snapshot)
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
    snapshot: Snapshot | None = None,
):
    """
    Build ``target`` with ``docker buildx bake --load`` when its inputs changed.

    + build_dir: holds ``context/`` (from ``build_context``), the lock and ``bake.log``
    + target: the bake target, e.g. ``complete-cuda``
    + image_ref: the tag that target produces, e.g. ``ghcr.io/org/comfyui-docker/complete-cuda:latest``
    + inputs: the inputs hash (sagefleet.inputs.inputs_hash); passed to bake as
      ``SAGEFLEET_INPUTS`` and stamped on the image as label ``org.sagefleet.inputs``
    + bake_files: bake files, relative to the context
    + variables: further bake variables (``NAME: value``), passed in the environment
    + ca_bundle_path: path on the host of a CA bundle for pip, handed to BuildKit as secret ``pip_ca``
    + min_free_gb: refuse to build with less free disk under the Docker root
    + force: bake even when the label matches
    + snapshot: the run's ``BuildState`` (the image's ID and label); None: read ``BuildHost``

    Idempotence: the image's ``org.sagefleet.inputs`` label is compared with
    ``inputs``; equal means nothing to do. When a bake is needed, the preflight
    (engine reachable, buildx present, free disk) fails the host with what to
    install before any change.
    A failed bake keeps the current tag on the current image; a successful one
    keeps the replaced image tagged ``<tag>-previous``. Concurrent runs on one
    host: the second refuses (exit 75) while the first holds the build lock.

    **Example:**

    .. code:: python

        image(
            build_dir="/opt/sagefleet/build", target="complete-cuda",
            image_ref="ghcr.io/pixeloven/comfyui-docker/complete-cuda:latest",
            inputs="sha256:...",
        )
    """
    variables = _bake_env(build_dir, target, inputs, variables, ca_bundle_path)
    doc = found(snapshot)
    facts = host.get_fact(BuildHost, image_ref=image_ref) if doc is None else None
    current = doc["image"] if doc is not None else facts["image"]
    if current and current["inputs"] == inputs and not force:
        host.noop(
            f"{image_ref} is up to date: image {current['id'][:19]} was built from inputs {inputs[:19]}"
        )
        return
    changed(snapshot)
    # The engine and disk are checked only when a bake would run: the last build may
    # have used the disk, and an image in place needs no buildx.
    problems = _preflight(facts or host.get_fact(BuildHost, image_ref=image_ref), min_free_gb)
    if problems:
        message = "preflight failed: " + "; ".join(problems)
        logger.warning(f"{host.print_prefix}{message}")
        yield commands.fail(message)
        return
    if not current:
        logger.info(f"{host.print_prefix}bake needed: no image {image_ref} on this host yet")
    elif not force:
        have = (current["inputs"] or "none")[:19]
        logger.info(
            f"{host.print_prefix}bake needed: {image_ref} has inputs {have}, want {inputs[:19]}"
        )
    yield commands.bake(
        context_dir=f"{build_dir}/context",
        bake_files=bake_files,
        target=target,
        variables=variables,
        image_ref=image_ref,
        log_path=f"{build_dir}/bake.log",
        lock_path=f"{build_dir}/build.lock",
    )


def _bake_env(
    build_dir: str,
    target: str,
    inputs: str,
    variables: Mapping[str, str] | None,
    ca_bundle_path: str | None,
) -> dict[str, str]:
    """Check a bake's arguments; its bake variables with the inputs hash and CA path."""
    require_abs("build_dir", build_dir)
    if not NAME_RE.match(target or ""):
        raise OperationError(f"invalid bake target {target!r}")
    env = dict(variables or {})
    for key in env:
        if not _VAR_RE.match(key):
            raise OperationError(f"invalid bake variable name {key!r}")
    if not inputs:
        raise OperationError("inputs (the inputs hash) is required")
    env["SAGEFLEET_INPUTS"] = inputs
    if ca_bundle_path:
        env["PIP_CA_BUNDLE"] = ca_bundle_path
    return env


def _preflight(facts: dict, min_free_gb: float) -> list[str]:
    """What keeps this host from baking (BuildHost's problems, then free disk)."""
    problems = list(facts["problems"])
    if facts["free_gb"] is not None and facts["free_gb"] < min_free_gb:
        problems.append(
            f"only {facts['free_gb']} GB free under {facts['docker_root']} "
            f"(min_free_disk_gb = {min_free_gb}): free space (docker system prune) or lower the threshold"
        )
    return problems


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
      ``image`` (same values, so bake reuses the build cache)
    + docker_config: directory on the host with the registry login (config.json, mode 600)

    Idempotence: the inputs hash of the last successful push is kept in
    ``push/inputs``; equal inputs and a digest in ``push/metadata.json`` for the
    same image name mean nothing to do. Credentials go through ``DOCKER_CONFIG``,
    never the command line.
    """
    variables = _bake_env(build_dir, target, inputs, variables, ca_bundle_path)
    push_dir = f"{build_dir}/push"
    published = host.get_fact(PublishedImage, push_dir=push_dir)
    digest = PublishedImage.digest(published, target)
    name = ((published.get("metadata") or {}).get(target) or {}).get("image.name")
    if published["inputs"] == inputs and digest and name == image_ref:
        host.noop(f"{image_ref} (inputs {inputs[:19]}) already pushed as {digest[:19]}")
        return
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
