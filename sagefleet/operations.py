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
from .facts import BuildHost, ContextMarker, ProbeResult
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
