"""The order of operations: @deploy functions called from deploy.py."""

from __future__ import annotations

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
    build_context,
    inputs_hash,
    render_requirements,
)
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


@deploy("Build the ComfyUI image")
def build_image():
    """Put the build context on a build host, render the pinned requirements into
    it, and bake the image when (and only when) an input changed."""
    pins = host_pins(host)
    build_dir = pins.build_dir
    context_dir = f"{build_dir}/context"
    requirements = render_requirements(pins.template_context())

    git = pins.build_context if isinstance(pins.build_context, GitContext) else None
    if git:
        digest = f"git:{git.git}@{git.ref}"
        context_digest = digest
    else:
        ctx = build_context(pins.build_context or DEFAULT_CONTEXT, PROJECT_ROOT)
        digest = context_digest = ctx.digest

    files.directory(name="Build directory", path=build_dir, mode="755")
    operations.context(
        name="Build context",
        build_dir=build_dir,
        digest=digest,
        **({"git_url": git.git, "git_ref": git.ref} if git else {"tar": ctx.tar}),
    )
    files.template(
        name="Render extra-requirements.txt",
        src=str(TEMPLATE),
        dest=f"{context_dir}/{REQUIREMENTS_PATH}",
        mode="644",
        jinja_env_kwargs=dict(JINJA_KWARGS),
        **pins.template_context(),
    )
    ca_path = None
    if pins.pip_ca_bundle:
        ca_path = f"{build_dir}/secrets/pip-ca.pem"
        files.put(
            name="CA bundle for pip (BuildKit secret)",
            src=str(Path(pins.pip_ca_bundle)),
            dest=ca_path,
            mode="600",
        )
    variables = bake_variables(pins)
    inputs = inputs_hash(context_digest, requirements, pins.bake_files, pins.bake_target, variables)
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
    probe_path = f"{pins.build_dir}/probe.py"
    files.put(
        name="Probe script",
        src=str(PROJECT_ROOT / "sagefleet" / "probe.py"),
        dest=probe_path,
        mode="644",
    )
    operations.probe(
        name="Kernel probe",
        build_dir=pins.build_dir,
        image_ref=pins.image_ref,
        probe_path=probe_path,
        quick=pins.probe_quick,
        timeout_s=pins.probe_timeout_s,
    )
    operations.gate(
        name="Verification gate",
        build_dir=pins.build_dir,
        image_ref=pins.image_ref,
        expect=expectation(pins),
    )


def collect_host_record(out_dir: str) -> dict:
    """Read (never change) what this host runs, for the fleet report; written to
    <out_dir>/hosts/<host>.json on the control machine."""
    import json
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
    path = os.path.join(out_dir, "hosts", f"{host.name.replace('/', '_')}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=2)
    os.replace(path + ".tmp", path)
    return record
