"""Build hosts: the order of operations that builds and verifies the image (@deploy)."""

from __future__ import annotations

import hashlib
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyinfra import host, state
from pyinfra.api import deploy

from ..commands import content_mtime
from ..facts.build import BuildState
from ..gate import expectation
from ..inputs import JINJA_KWARGS, TEMPLATE, BuildInputs, build_inputs
from ..operations import build as build_ops
from ..operations import snapshot as file_ops
from ..operations import verify as verify_ops
from ..operations.snapshot import Snapshot
from ..pins import Pins, host_pins
from ..project import PROBE_SCRIPT


def deploy_file_known_to_inspect(path: str | None) -> str | None:
    """Give the deploy file pyinfra exec()s an entry in sys.modules (a bare module
    object that nothing imports); returns its name.

    pyinfra's CLI orders operations by their call site, so every operation call
    runs ``inspect.stack()``, and inspect maps each frame's file to a module
    through sys.modules. An exec()'d deploy file belongs to no module, so every
    such lookup scanned all loaded modules again: measured, about 45% of that cost
    (0.09 s of a no-change deploy of 20 hosts, 8 operations each)."""
    if not path:
        return None
    abspath = os.path.abspath(path)
    name = "sagefleet._deploy_file_" + hashlib.sha1(abspath.encode()).hexdigest()[:12]
    if name not in sys.modules:
        module = types.ModuleType(name, f"pyinfra deploy file {abspath} (see deploys.build)")
        module.__file__ = abspath
        sys.modules[name] = module
    return name


@dataclass(frozen=True)
class BuildRun:
    """What each step of ``build_image`` works from on one host."""

    pins: Pins
    inputs: BuildInputs
    snapshot: Snapshot

    @property
    def build_dir(self) -> str:
        return self.pins.build.build_dir


def requirements_path(pins: Pins, inputs: BuildInputs) -> str:
    """Where the rendered requirements go on the host (bake's answer: the target's context)."""
    return f"{pins.build.build_dir}/context/{inputs.requirements_path}"


def probe_path(work_dir: str) -> str:
    return f"{work_dir}/probe.py"


def watched_files(pins: Pins, inputs: BuildInputs) -> list[str]:
    """The files whose sha1 and mode the snapshot records."""
    ca = [inputs.ca_path] if inputs.ca_path else []
    return [requirements_path(pins, inputs), probe_path(pins.build.build_dir), *ca]


# A step returns the operation calls it stands for; build_image makes them. (pyinfra's
# CLI walks the call stack on every operation call: one frame less per call.)
Call = tuple[Callable[..., Any], dict[str, Any]]


def call(operation: Callable[..., Any], **kwargs: Any) -> Call:
    """One operation call, made later by build_image (or rollout_node)."""
    return operation, kwargs


def _context(run: BuildRun) -> list[Call]:
    git, tarball = run.inputs.git, run.inputs.tarball
    source = (
        {"git_url": git.git, "git_ref": git.ref}
        if git
        else {"tar": tarball.tar, "manifest": tarball.manifest}
    )
    return [
        call(
            build_ops.build_context,
            name="Build context",
            build_dir=run.build_dir,
            mode="755",
            digest=run.inputs.context_digest,
            snapshot=run.snapshot,
            keep=run.inputs.requirements_path,
            **source,
        )
    ]


def _requirements(run: BuildRun) -> list[Call]:
    return [
        call(
            file_ops.template,
            name="Render extra-requirements.txt",
            src=str(TEMPLATE),
            dest=requirements_path(run.pins, run.inputs),
            mode="644",
            snapshot=run.snapshot,
            create_remote_dir=False,  # the context unpacked it; saves a round trip per host
            jinja_env_kwargs=dict(JINJA_KWARGS),
            **run.pins.image.template_vars(),
        )
    ]


def _ca_bundle(run: BuildRun) -> list[Call]:
    if not run.inputs.ca_path:
        return []
    # Compared by hash: never diffed, read back or printed (--diff, -vvv).
    return [
        call(
            file_ops.secret_put,
            name="CA bundle for pip (BuildKit secret)",
            src=run.pins.build.pip_ca_bundle,
            dest=run.inputs.ca_path,
            mode="600",
            snapshot=run.snapshot,
        )
    ]


def bake_args(pins: Pins, inputs: BuildInputs) -> dict:
    """What bake builds, for the image and push operations alike (same values, so a push
    reuses the build's cache)."""
    return dict(
        build_dir=pins.build.build_dir,
        target=pins.image.bake_target,
        image_ref=inputs.image_ref,
        inputs=inputs.inputs,
        bake_files=pins.image.bake_files,
        variables=inputs.variables,
        ca_bundle_path=inputs.ca_path,
    )


def _image(run: BuildRun) -> list[Call]:
    cache_ref = run.pins.build.bake_cache_ref
    docker_config = None
    if cache_ref:
        from ..commands import registry_of
        from .rollout import registry_login

        docker_config = registry_login(run.pins, registry_of(cache_ref))
    mtimes = {run.inputs.requirements_path: content_mtime(run.inputs.requirements.encode())}
    return [
        call(
            build_ops.image,
            name=f"Bake {run.pins.image.bake_target}",
            min_free_gb=run.pins.build.min_free_disk_gb,
            force=run.pins.build.force_rebuild,
            snapshot=run.snapshot,
            targets=run.inputs.targets,
            cache_ref=cache_ref,
            docker_config=docker_config,
            file_mtimes=mtimes,
            **bake_args(run.pins, run.inputs),
        )
    ]


def _verify(run: BuildRun) -> list[Call]:
    return probe_and_gate(run.pins, run.build_dir, run.inputs.image_ref, False, run.snapshot)


# build_image runs every step on every run: each operation decides for itself (from the
# one BuildState read) whether it has anything to do. Add a step here, never a shortcut
# around them (tests/integration/test_deploy_local.py adds a dummy step to prove it).
BUILD_STEPS: list[Callable[[BuildRun], list[Call]]] = [
    _context,
    _requirements,
    _ca_bundle,
    _image,
    _verify,
]


def login_dir(pins: Pins) -> str:
    """Where a host keeps its registry login (DOCKER_CONFIG: config.json, mode 600)."""
    return f"{pins.service.state_dir}/registry"


@deploy("Build the ComfyUI image")
def build_image(publish: bool = False) -> BuildRun | None:
    """Put the build context on a build host, render the pinned requirements into
    it, bake the image when (and only when) an input changed, then probe and gate it.
    deploy.py calls it on every host: a host outside build_hosts has nothing to do.

    ``BuildState`` is read once (one round trip); each operation decides from it until
    one of them changes the host, then the later ones read their own facts. publish:
    the read covers the registry login and the last push too (``publish_image``'s
    steps decide from the same snapshot). Returns the run (its snapshot)."""
    if "build_hosts" not in host.groups:
        return None
    deploy_file_known_to_inspect(state.current_deploy_filename)
    pins = host_pins(host)
    inputs = build_inputs(pins)
    login = login_dir(pins)
    doc = host.get_fact(
        BuildState,
        build_dir=pins.build.build_dir,
        image_ref=inputs.image_ref,
        files=watched_files(pins, inputs) + ([f"{login}/config.json"] if publish else []),
        dirs=[login] if publish else [],
        push_dir=f"{pins.build.build_dir}/push" if publish else None,
    )
    run = BuildRun(pins, inputs, Snapshot(doc))
    for step in BUILD_STEPS:
        for operation, kwargs in step(run):
            operation(**kwargs)
    return run


def probe_and_gate(
    pins: Pins,
    work_dir: str,
    image_ref: str,
    create_dir: bool = True,
    snapshot: Snapshot | None = None,
    gpu_node: bool = False,
) -> list[Call]:
    """The calls that put the probe script in work_dir, probe image_ref there (once per
    image ID) and gate the stored result against the pins: build hosts and GPU nodes
    alike (a GPU node whose engine can give no GPU to a container is refused)."""
    where = dict(build_dir=work_dir, image_ref=image_ref, snapshot=snapshot)
    state_dir = call(
        file_ops.directory, name="State directory", path=work_dir, mode="755", snapshot=snapshot
    )
    return [
        *([state_dir] if create_dir else []),
        call(
            verify_ops.probe,
            name="Kernel probe",
            probe_path=probe_path(work_dir),
            quick=pins.verify.probe_quick,
            timeout_s=pins.verify.probe_timeout_s,
            workload_seq_lens=pins.verify.probe_workload_seq_lens,
            gpu_access=pins.service.gpu_access,
            gpu_node=gpu_node,
            script=str(PROBE_SCRIPT),
            # Build hosts: the Build context operation made work_dir already.
            create_dir=create_dir,
            **where,
        ),
        call(verify_ops.gate, name="Verification gate", expect=expectation(pins), **where),
    ]
