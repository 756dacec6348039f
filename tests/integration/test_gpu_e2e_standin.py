"""scripts/gpu-e2e end to end on this machine, with a STAND-IN GPU.

Real: the engine unpacked from the .debs (its own dockerd, socket, data root and bridge),
CDI, the image built by scripts/gpu_image.py and loaded, the registry, docker push,
`python -m sagefleet.rollout --image REPO@DIGEST` on @local (pull by digest, probe in
the container, gate, service, health check), the second run, the fleet report.
STAND-IN: the GPU (the CDI device nvidia.com/gpu=all is /dev/null), the SageAttention
wheel (sagefleet.offline's stand-in: no kernels), and no torch. docs/gpu.md.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sagefleet.offline import standin_wheel_bytes
from sagefleet.pins import Wheel
from tests.conftest import require_engine

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu-e2e"
DEBS = {
    "docker.io": "/var/cache/sagefleet/trixie/debs",
    "docker-cli": "/var/cache/sagefleet/trixie/debs",
    "containerd": "/var/cache/apt/archives",
    "runc": "/var/cache/apt/archives",
    "docker-registry": "/var/cache/apt/archives",
}
ROOTFS = Path("/var/cache/sagefleet/bookworm-minbase-python3.tar")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bundle(tmp: Path) -> Path:
    bundle = tmp / "bundle"
    (bundle / "debs").mkdir(parents=True)
    (bundle / "sage").mkdir()
    missing = []
    for name, where in DEBS.items():
        found = sorted(Path(where).glob(f"{name}_*.deb"))
        if not found:
            missing.append(f"{where}/{name}_*.deb")
            continue
        (bundle / "debs" / found[0].name).symlink_to(found[0])
    assert not missing and ROOTFS.exists(), (
        f"missing {missing or [str(ROOTFS)]}: run make setup (scripts/setup-engine, "
        "scripts/setup-fleet-images)"
    )
    wheel = Wheel("sageattention", "1.0.6", "e2e", "1", "cp311", "linux_x86_64", "http://unused")
    (bundle / "sage" / wheel.filename).write_bytes(standin_wheel_bytes(wheel))
    return bundle


def test_gpu_e2e_with_a_standin_gpu(tmp_path):
    require_engine()
    bundle = _bundle(tmp_path)
    # The "torch" venv: without torch and pip, of the Python the rootfs image has too.
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    # Short: containerd's sockets live under it (unix socket paths stop at 104 bytes).
    root = Path(tempfile.mkdtemp(prefix="sfe2e-", dir="/tmp"))
    tag = f"{random.randrange(16**6):06x}"
    env = {
        **os.environ,
        "SAGEFLEET_E2E_ROOT": str(root),
        "SAGEFLEET_E2E_BRIDGE": f"sfe2e{tag}",
        "SAGEFLEET_E2E_BRIDGE_CIDR": f"10.{200 + random.randrange(50)}.{random.randrange(250)}.1/24",
        "SAGEFLEET_E2E_REGISTRY_PORT": str(_free_port()),
        "SAGEFLEET_E2E_PORT": str(_free_port()),
        "SAGEFLEET_E2E_STANDIN_GPU": "1",
        "SAGEFLEET_E2E_ROOTFS_TAR": str(ROOTFS),
        "SAGEFLEET_E2E_VENV": str(venv),
        "SAGEFLEET_E2E_PYTHON": sys.executable,
    }
    docker0 = subprocess.run(["ip", "link", "show", "docker0"], capture_output=True).returncode
    try:
        proc = subprocess.run(
            [
                str(SCRIPT),
                "--bundle",
                str(bundle),
                "--out",
                str(tmp_path / "out"),
                "--workload-seq-lens",
                "32768,16384",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        log = root / "out"
        print(proc.stderr[-4000:])
        assert proc.returncode == 0, proc.stderr[-3000:]
        key = "sageattention-1.0.6-1-cp311-cp311-linux_x86_64"
        run1 = json.loads((log / f"rollout-{key}-run1.json").read_text())
        run2 = json.loads((log / f"rollout-{key}-run2.json").read_text())
        # --workload-seq-lens became the node's pin (validated by the rollout's pin check).
        fleet = (log / f"fleet-{key}.toml").read_text()
        assert "\nprobe_workload_seq_lens = [32768, 16384]\n" in fleet, fleet
        # ... and reached the probe in the container, sorted by the pin check.
        (probe,) = [
            json.loads(p.read_text())
            for p in log.glob("*.json")
            if re.fullmatch(r"[0-9a-f]{64}\.json", p.name)
        ]
        assert probe["thresholds"]["workload_seq_lens"] == [16384, 32768], probe["thresholds"]
        assert run1["ok"] and list(run1["moved"]) == ["@local"], run1
        assert run2["ok"] and run2["unchanged"] == ["@local"] and not run2["moved"], run2
        text = (log / f"rollout-{key}-run1.log").read_text()
        # The node path itself found CDI and probed through it; the gate ran.
        assert "probe GPU access: cdi" in text and "Verification gate" in text
        # The digest was really pulled (publish dropped the registry's names locally).
        assert re.search(r"\| Pull sha256:\w+\s+1\s+1\s+-\s+-", text), text[-2000:]
        service = (log / f"service-{key}-run1.txt").read_text()
        assert '"DeviceIDs":["nvidia.com/gpu=all"],"Driver":"cdi"' in service
        assert "--network host" in service and "--device nvidia.com/gpu=all" in service
        assert "org.sagefleet.settings label: True" in service
        # Run 2 left the very container of run 1 alone.
        first = [ln for ln in service.splitlines() if ln.startswith("id=")]
        second = (log / f"service-{key}-run2.txt").read_text()
        assert first and first[0] in second
        report = json.loads((log / "report" / "fleet.json").read_text())
        (node,) = report["hosts"]
        assert node["gpu_access"]["mode"] == "cdi" and node["probe"] is not None
        assert (tmp_path / "out" / "gpu-e2e.tar.gz").stat().st_size > 0
    finally:
        subprocess.run([str(SCRIPT), "--down"], env=env, capture_output=True, timeout=120)
        subprocess.run(["umount", str(root / "exec" / "netns" / "default")], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        # A bridge-less engine here would have deleted the shared docker0.
        after = subprocess.run(["ip", "link", "show", "docker0"], capture_output=True).returncode
        assert after == docker0
