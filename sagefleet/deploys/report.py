"""The fleet report's gathering step: read (never change) what each host runs (@deploy-free:
facts only), one JSON record per host on the control machine."""

from __future__ import annotations

import json
import os

from pyinfra import host

from ..facts.gpu import GpuHost
from ..facts.verify import ProbeResult
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
        pins = host_pins(host)
        stored = host.get_fact(
            ProbeResult, image_ref=pins.image.ref, results_dir=f"{pins.build.build_dir}/probe"
        )
        record.update(image_ref=pins.image.ref, image_id=stored["image_id"], probe=stored["result"])
    write_result(os.path.join(out_dir, "hosts"), record)
    return record
