"""The fleet report's gathering step: read (never change) what each host runs (@deploy-free:
facts only), one JSON record per host on the control machine."""

from __future__ import annotations

import json
import os

from pyinfra import host

from ..facts.gpu import EngineGpuAccess, GpuHost
from ..facts.service import ServiceState
from ..facts.verify import ProbeResult
from ..gpu_access import choose
from ..pins import host_pins

REPORT_DIR_ENV = "SAGEFLEET_REPORT_DIR"


def write_result(results_dir: str | None, record: dict) -> None:
    """One JSON document per host on the control machine (atomic)."""
    if not results_dir:
        return
    os.makedirs(results_dir, exist_ok=True)
    path = os.path.join(results_dir, f"{record['host'].replace('/', '_')}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=2)
    os.replace(path + ".tmp", path)


def collect_host_record(out_dir: str | None = None) -> dict:
    """Read (never change) what this host runs, for the fleet report; written to
    <out_dir>/hosts/<host>.json on the control machine (default: $SAGEFLEET_REPORT_DIR,
    else reports/)."""
    out_dir = out_dir or os.environ.get(REPORT_DIR_ENV, "reports")
    record: dict = {"host": host.name, "groups": sorted(host.groups), "gpus": [], "image_id": None}
    record["gpus"] = host.get_fact(GpuHost)["gpus"]
    if "build_hosts" in host.groups:
        from ..inputs import build_inputs

        pins = host_pins(host)
        image_ref = build_inputs(pins).image_ref
        stored = host.get_fact(
            ProbeResult, image_ref=image_ref, results_dir=f"{pins.build.build_dir}/probe"
        )
        record.update(image_ref=image_ref, image_id=stored["image_id"], probe=stored["result"])
    elif "gpu_nodes" in host.groups:
        record.update(_node_record(host_pins(host)))
    write_result(os.path.join(out_dir, "hosts"), record)
    return record


def _node_record(pins) -> dict:
    """A GPU node's part of the report: the image its service runs, the node's own
    probe of that image, how containers get the GPU, and the service's CLI_ARGS."""
    svc = host.get_fact(
        ServiceState, container=pins.service.service_name, state_dir=pins.service.state_dir
    )
    container = svc["container"] or {}
    access = choose(host.get_fact(EngineGpuAccess), pins.service.gpu_access, gpu_node=True)
    out: dict = {
        "gpu_access": {"mode": access.mode, "flags": list(access.flags), "problem": access.problem},
        "service": {k: container.get(k) for k in ("image", "status", "restarts", "cli_args")}
        if container
        else None,
        "image_ref": container.get("image"),
        "probe": None,
    }
    if container.get("image"):
        stored = host.get_fact(
            ProbeResult,
            image_ref=container["image"],
            results_dir=f"{pins.service.state_dir}/probe",
        )
        out.update(image_id=stored["image_id"], probe=stored["result"])
    return out
