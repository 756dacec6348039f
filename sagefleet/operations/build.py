"""sagefleet's own pyinfra operations: validate, read facts, then yield one quoted
command or say with host.noop why nothing needs doing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from io import BytesIO

from pyinfra import host, logger, state
from pyinfra.api import FileUploadCommand, OperationError, operation

from .. import commands
from ..bake import cache_sets, label_set
from ..facts.build import BuildHost, ContextManifest, ContextMarker, PublishedImage
from ..inputs import REQUIREMENTS_PATH
from ..manifest import diff as manifest_diff
from ..manifest import parse_manifest
from .progress import BakeCommand
from .secure import MODES
from .snapshot import Snapshot, changed, found
from .util import NAME_RE, require_abs

_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_MOVES = (
    "not a full commit SHA: it can move, and sagefleet fetches it again only when url or "
    "ref change. Pin the commit."
)


@operation()
def build_context(
    build_dir: str,
    tar: bytes | None = None,
    digest: str | None = None,
    git_url: str | None = None,
    git_ref: str | None = None,
    snapshot: Snapshot | None = None,
    manifest: str | None = None,
    keep: str = REQUIREMENTS_PATH,
    mode: str = "755",
):
    """
    Put the build context in ``{build_dir}/context`` (and create ``build_dir``).

    + build_dir: directory on the host that holds the context, logs and lock
    + tar: a tarball of local files (sagefleet.inputs.context_tarball)
    + digest: the tarball's (or the git URL+ref's) digest, recorded on the host
    + git_url: instead of a tarball, clone this repository ...
    + git_ref: ... at this ref (pin a full commit SHA: a branch or tag moves, and is
      not re-checked until url or ref change; a warning says so)
    + manifest: the tarball's manifest (``<sha256> <mode> <path>`` lines), kept on the
      host; ``--diff`` compares it with the host's to list added, removed and
      changed paths
    + keep: the rendered requirements (relative to the context), carried over when
      the context is replaced (``files.template`` decides about it separately)
    + snapshot: the run's ``BuildState`` (its ``marker``); None: read ``ContextMarker``
    + mode: the mode of ``build_dir`` when this creates it (one that exists keeps its
      mode: sagefleet never changes the mode of a directory it did not create)

    Idempotence: the digest of the context in place is kept in
    ``{build_dir}/context.digest``; an equal digest means nothing to do. A tarball
    context is unpacked into a new directory and ``context`` (a symlink) is switched
    to it in one rename: files removed locally are gone on the host, and a failed
    upload or unpack leaves the old context in place.

    **Example:**

    .. code:: python

        tarball = context_tarball(["services", "docker-bake.hcl"])
        build_context(build_dir="/opt/sagefleet/build", tar=tarball.tar, digest=tarball.digest)
    """
    _check_context_args(build_dir, tar, digest, git_url, git_ref, keep, mode)
    if git_url is not None and not _FULL_SHA.match(git_ref):
        logger.warning(f"{host.print_prefix}build_context ref {git_ref!r}: {_MOVES}")
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
    # Logged before the first command: pyinfra's change detection (--dry) may stop there.
    if git_url is None and manifest is not None:
        _log_context_change(build_dir, digest, manifest)
    yield commands.own_directory(build_dir, mode)
    if git_url is not None:
        yield commands.git_context(git_url, git_ref, context_dir, marker, digest)
        return
    tar_path = f"{build_dir}/context.tar"
    manifest_tmp = f"{build_dir}/context.manifest.tmp"
    yield FileUploadCommand(
        BytesIO(tar), tar_path, remote_temp_filename=host.get_temp_filename(tar_path)
    )
    yield FileUploadCommand(
        BytesIO((manifest or "").encode()),
        manifest_tmp,
        remote_temp_filename=host.get_temp_filename(manifest_tmp),
    )
    yield commands.replace_context(build_dir, tar_path, manifest_tmp, digest, keep)


def _check_context_args(build_dir, tar, digest, git_url, git_ref, keep, mode) -> None:
    require_abs("build_dir", build_dir)
    if (tar is None) == (git_url is None):
        raise OperationError("give either tar (local context) or git_url + git_ref")
    if not digest:
        raise OperationError("digest is required")
    if git_url is not None and not git_ref:
        raise OperationError("git_ref is required with git_url")
    if mode not in MODES:
        raise OperationError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    if not keep or keep.startswith("/") or ".." in keep.split("/") or "\n" in keep:
        raise OperationError(f"keep must be a relative path inside the context, got {keep!r}")


def _log_context_change(build_dir: str, digest: str, manifest: str) -> None:
    """The file-level change of the context (with --diff: each path), never its bytes."""
    before = host.get_fact(ContextManifest, path=f"{build_dir}/context.manifest")
    change = manifest_diff(before, parse_manifest(manifest))
    host.log(f"build context {digest[:12]}: {change.summary()}", logger.info)
    if state.config.DIFF:
        for line in change.lines():
            logger.info(f"{host.print_prefix}  {line}")


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
    targets: Sequence[str] | None = None,
    cache_ref: str | None = None,
    docker_config: str | None = None,
    follow: bool = True,
    file_mtimes: Mapping[str, int] | None = None,
):
    """
    Build ``target`` with ``docker buildx bake --load`` when its inputs changed.

    + build_dir: holds ``context/`` (from ``build_context``), the lock and ``bake.log``
    + target: the bake target, e.g. ``complete-cuda``
    + image_ref: the image sagefleet checks: the target's first tag as ``bake --print``
      reports it (or the one ``image_tag`` names)
    + inputs: the inputs hash (sagefleet.inputs.inputs_hash), stamped on the image as
      label ``org.sagefleet.inputs`` through ``--set TARGET.labels...`` (the bake
      files are not edited and need not declare anything)
    + bake_files, variables: bake files (relative to the context); bake variables (env)
    + ca_bundle_path: path on the host of a CA bundle for pip, handed to BuildKit as secret ``pip_ca``
    + min_free_gb, force: refuse to bake with less free disk; bake even when the label matches
    + snapshot: the run's ``BuildState`` (the image's ID and label); None: read ``BuildHost``
    + targets, cache_ref: the targets one bake builds (``bake --print``); a registry repo:
      each target's cache-from/to become ``type=registry,ref=<repo>:<target>`` (mode=max)
    + docker_config: directory on the host with the login to the cache's registry
    + follow: show the bake's progress live on the control machine (False: plain command)
    + file_mtimes: context files (the rendered requirements) whose mtime is set from their
      content first (``commands.content_mtime``): one cache key for their COPY everywhere

    Idempotence: the image's ``org.sagefleet.inputs`` label is compared with
    ``inputs``; equal means nothing to do. When a bake is needed, the preflight
    (engine reachable, buildx present, free disk, cache export where a cache is
    set) fails the host with what to install before any change. The bake's plain
    progress is in ``bake.log``.
    A failed bake keeps the current tag on the current image; a successful one
    keeps the replaced image tagged ``<tag>-previous``. Concurrent runs on one
    host: the second refuses (exit 75) while the first holds the build lock.

    **Example:**

    .. code:: python

        image(build_dir="/opt/sagefleet/build", target="complete-cuda",
              image_ref="ghcr.io/me/complete:cuda-latest", inputs="sha256:...")
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
    facts = facts or host.get_fact(BuildHost, image_ref=image_ref)
    if problems := _preflight(facts, min_free_gb, cache_ref):
        message = "preflight failed: " + "; ".join(problems)
        logger.warning(f"{host.print_prefix}{message}")
        yield commands.fail(message)
        return
    _log_bake_needed(image_ref, current, inputs, force)
    shell = commands.bake(
        f"{build_dir}/context", bake_files, target, variables, image_ref,
        f"{build_dir}/bake.log", f"{build_dir}/build.lock",
        overrides=overrides(target, inputs, targets, cache_ref),
        docker_config=docker_config, file_mtimes=file_mtimes,
    )  # fmt: skip
    yield BakeCommand(shell, f"{build_dir}/bake.log") if follow else shell


def _log_bake_needed(image_ref: str, current: dict | None, inputs: str, force: bool) -> None:
    if not current:
        logger.info(f"{host.print_prefix}bake needed: no image {image_ref} on this host yet")
    elif not force:
        have = (current["inputs"] or "none")[:19]
        logger.info(
            f"{host.print_prefix}bake needed: {image_ref} has inputs {have}, want {inputs[:19]}"
        )


def overrides(
    target: str, inputs: str, targets: Sequence[str] | None, cache_ref: str | None
) -> list[str]:
    """bake ``--set`` values: the inputs label on target, and the registry cache."""
    try:
        out = [label_set(target, inputs)]
        if cache_ref:
            out += cache_sets(list(targets or [target]), cache_ref)
    except ValueError as exc:
        raise OperationError(str(exc)) from None
    return out


def _bake_env(
    build_dir: str,
    target: str,
    inputs: str,
    variables: Mapping[str, str] | None,
    ca_bundle_path: str | None,
) -> dict[str, str]:
    """Check a bake's arguments; its bake variables with the CA path (the inputs hash
    goes on as a label through ``--set``, see ``overrides``)."""
    require_abs("build_dir", build_dir)
    if not NAME_RE.match(target or ""):
        raise OperationError(f"invalid bake target {target!r}")
    env = dict(variables or {})
    for key in env:
        if not _VAR_RE.match(key):
            raise OperationError(f"invalid bake variable name {key!r}")
    if not inputs:
        raise OperationError("inputs (the inputs hash) is required")
    if ca_bundle_path:
        env["PIP_CA_BUNDLE"] = ca_bundle_path
    return env


def _preflight(facts: dict, min_free_gb: float, cache_ref: str | None = None) -> list[str]:
    """What keeps this host from baking (BuildHost's problems, free disk, cache export)."""
    problems = list(facts["problems"])
    if facts["free_gb"] is not None and facts["free_gb"] < min_free_gb:
        problems.append(
            f"only {facts['free_gb']} GB free under {facts['docker_root']} "
            f"(min_free_disk_gb = {min_free_gb}): free space (docker system prune) or lower the threshold"
        )
    if cache_ref and facts["docker"] and not facts.get("cache_export"):
        problems.append(
            f"bake_cache_ref needs a builder that can export a cache; this host's builder "
            f"({facts.get('builder_driver') or 'unknown'} driver, image store "
            f"{facts.get('image_store') or 'unknown'}) cannot: turn on Docker's containerd image "
            'store (/etc/docker/daemon.json: {"features": {"containerd-snapshotter": true}}, '
            "then restart dockerd) or make a docker-container builder the default"
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
    snapshot: Snapshot | None = None,
):
    """
    Push the image of ``target`` with ``docker buildx bake --push`` and keep bake's
    ``--metadata-file`` (its ``containerimage.digest`` is what GPU nodes pull).

    + build_dir: holds ``context/`` and ``push/`` (metadata.json, inputs)
    + target, image_ref, inputs, bake_files, variables, ca_bundle_path: as for
      ``image`` (same values, so bake reuses the build cache)
    + docker_config: directory on the host with the registry login (config.json, mode 600)
    + snapshot: the run's ``BuildState`` read with ``push_dir`` (its ``published``);
      None: read ``PublishedImage``

    Idempotence: the inputs hash of the last successful push is kept in
    ``push/inputs``; equal inputs and a digest in ``push/metadata.json`` for the
    same image name mean nothing to do. Credentials go through ``DOCKER_CONFIG``,
    never the command line.
    """
    variables = _bake_env(build_dir, target, inputs, variables, ca_bundle_path)
    push_dir = f"{build_dir}/push"
    doc = found(snapshot)
    published = (doc or {}).get("published") or host.get_fact(PublishedImage, push_dir=push_dir)
    digest = PublishedImage.digest(published, target)
    name = ((published.get("metadata") or {}).get(target) or {}).get("image.name")
    # bake names every tag of the target, comma-separated.
    if published["inputs"] == inputs and digest and image_ref in (name or "").split(","):
        host.noop(f"{image_ref} (inputs {inputs[:19]}) already pushed as {digest[:19]}")
        return
    changed(snapshot)
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
        overrides=overrides(target, inputs, None, None),
    )
