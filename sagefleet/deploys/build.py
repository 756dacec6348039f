"""Build hosts: the order of operations that builds and verifies the image (@deploy)."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

from ..facts.build import BuildState
from ..gate import expectation
from ..inputs import JINJA_KWARGS, REQUIREMENTS_PATH, TEMPLATE, build_inputs
from ..operations import build as build_ops
from ..operations import verify as verify_ops
from ..pins import host_pins
from ..project import PROBE_SCRIPT


@functools.lru_cache(maxsize=8)
def _sha1_file(path: str) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def _report_unchanged(
    pins, digest: str, requirements: str, ca_path: str | None, inputs: str
) -> bool:
    """Read BuildState (one round trip); when every check of build_image's operations
    already holds, report the host unchanged with one operation and return True."""
    build_dir = pins.build.build_dir
    want = {
        f"{build_dir}/context/{REQUIREMENTS_PATH}": (
            hashlib.sha1(requirements.encode()).hexdigest(),
            "644",
        ),
        f"{build_dir}/probe.py": (_sha1_file(str(PROBE_SCRIPT)), "644"),
    }
    if ca_path:
        want[ca_path] = (_sha1_file(str(Path(pins.build.pip_ca_bundle))), "600")
    found = host.get_fact(
        BuildState, build_dir=build_dir, image_ref=pins.image.ref, files=list(want)
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
    build_ops.unchanged(
        name="Up to date (build context, requirements, image, probe, gate)",
        image_ref=pins.image.ref,
        image_id=image["id"],
        inputs=inputs,
        stored_probe=found["probe"],
        expect=expectation(pins),
        in_place=[f"build context {digest[:12]}", *want],
    )
    return True


def deploy_build_hosts() -> None:
    """deploy.py: build hosts build and verify the image; other hosts have nothing to do."""
    if "build_hosts" in host.groups:
        build_image()


@deploy("Build the ComfyUI image")
def build_image():
    """Put the build context on a build host, render the pinned requirements into
    it, and bake the image when (and only when) an input changed."""
    pins = host_pins(host)
    build_dir = pins.build.build_dir
    context_dir = f"{build_dir}/context"
    b = build_inputs(pins)
    git, digest, requirements = b.git, b.context_digest, b.requirements
    variables, inputs, ca_path = b.variables, b.inputs, b.ca_path
    if not pins.build.force_rebuild and _report_unchanged(
        pins, digest, requirements, ca_path, inputs
    ):
        return

    files.directory(name="Build directory", path=build_dir, mode="755")
    build_ops.build_context(
        name="Build context",
        build_dir=build_dir,
        digest=digest,
        **({"git_url": git.git, "git_ref": git.ref} if git else {"tar": b.tarball.tar}),
    )
    files.template(
        name="Render extra-requirements.txt",
        src=str(TEMPLATE),
        dest=f"{context_dir}/{REQUIREMENTS_PATH}",
        mode="644",
        create_remote_dir=False,  # the context unpacked it; saves a round trip per host
        jinja_env_kwargs=dict(JINJA_KWARGS),
        **pins.image.template_vars(),
    )
    if ca_path:
        files.put(
            name="CA bundle for pip (BuildKit secret)",
            src=str(Path(pins.build.pip_ca_bundle)),
            dest=ca_path,
            mode="600",
        )
    build_ops.image(
        name=f"Bake {pins.image.bake_target}",
        build_dir=build_dir,
        target=pins.image.bake_target,
        image_ref=pins.image.ref,
        inputs=inputs,
        bake_files=pins.image.bake_files,
        variables=variables,
        ca_bundle_path=ca_path,
        min_free_gb=pins.build.min_free_disk_gb,
        force=pins.build.force_rebuild,
    )
    verify_image(pins)


@deploy("Verify the ComfyUI image")
def verify_image(pins=None):
    """Probe the built image once per image ID, then gate it against the pins."""
    pins = pins or host_pins(host)
    probe_and_gate(pins, pins.build.build_dir, pins.image.ref, create_dir=False)


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
    verify_ops.probe(
        name="Kernel probe",
        build_dir=work_dir,
        image_ref=image_ref,
        probe_path=probe_path,
        quick=pins.verify.probe_quick,
        timeout_s=pins.verify.probe_timeout_s,
    )
    verify_ops.gate(
        name="Verification gate",
        build_dir=work_dir,
        image_ref=image_ref,
        expect=expectation(pins),
    )
