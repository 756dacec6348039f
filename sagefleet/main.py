"""The main job: `python -m sagefleet.main` (README: `make run`).

Runs `pyinfra inventory.py deploy.py` on the configured fleet, or on this
machine when none is configured. Where GitHub (the SageAttention releases) does
not resolve, it runs the offline demo profile instead — local base image, local
wheelhouse, STAND-IN wheels — and says so loudly.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from .fleet import OFFLINE_ENV, fleet_path
from .offline import group_file, offline_profile
from .project import PROJECT_ROOT, PYINFRA_CLI

OFFLINE_BANNER = """\
=====================================================================
 OFFLINE DEMO: {reason}.
 Building with the offline profile (group_data/offline.py):
   - base image sagefleet/base:bookworm (debootstrap, local)
   - core stage: local STAND-IN (tests/offline/offline.hcl), no torch
   - sageattention {sa} / sageattn3 {s3}: STAND-IN wheels with the pinned
     names and build tags, served from a local wheelhouse at {url}
 The real wheels are used where the release host resolves.
====================================================================="""


def release_host_resolves(url: str) -> bool:
    """DNS only: no packet goes to the release host from this check."""
    host = url.split("://", 1)[-1].split("/", 1)[0].split(":")[0]
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def bridge_gateway() -> str:
    out = subprocess.run(
        ["docker", "network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "172.17.0.1"


def run_deploy(extra_args: list[str], env: dict[str, str]) -> int:
    cmd = [PYINFRA_CLI, "-y", "inventory.py", "deploy.py", *extra_args]
    if "--dry" in extra_args:
        cmd.remove("-y")
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=PROJECT_ROOT, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offline", action="store_true", help="force the offline demo profile")
    parser.add_argument("pyinfra_args", nargs="*", help="passed to pyinfra (e.g. --dry --diff)")
    args = parser.parse_args(argv)
    env = dict(os.environ)

    fleet = fleet_path()
    print(
        f"sagefleet: fleet: {fleet or 'none configured -> this machine (@local) is the build host'}"
    )
    release_base = group_file("all")["sage_release_base"]
    offline = args.offline or env.get(OFFLINE_ENV) == "1"
    reason = "offline requested"
    if not offline and not release_host_resolves(release_base):
        offline, reason = True, f"{release_base.split('/')[2]} does not resolve from this machine"
    if not offline:
        return run_deploy(args.pyinfra_args, env)

    from .offline import build_wheelhouse, serve_wheelhouse, standin_sage_wheels
    from .pins import validate

    env[OFFLINE_ENV] = "1"
    with tempfile.TemporaryDirectory(prefix="sagefleet-wheelhouse-") as tmp:
        # A fixed port keeps the rendered URLs (and so the inputs hash) stable across runs.
        port = int(env.get("SAGEFLEET_WHEELHOUSE_PORT", "8765"))
        with serve_wheelhouse(Path(tmp), bridge_gateway(), port) as url:
            env["SAGEFLEET_WHEELHOUSE_URL"] = url
            os.environ["SAGEFLEET_WHEELHOUSE_URL"] = url
            pins = validate(offline_profile())
            build_wheelhouse(pins, Path(tmp))
            versions = {w.name: w.version for w in pins.image.wheels}
            print(
                OFFLINE_BANNER.format(
                    reason=reason,
                    sa=versions.get("sageattention"),
                    s3=versions.get("sageattn3"),
                    url=url,
                ),
                flush=True,
            )
            # The stand-ins' hashes, so pip verifies every wheel it installs.
            hashed = json.dumps(standin_sage_wheels(pins), separators=(",", ":"))
            rc = run_deploy([*args.pyinfra_args, "--data", f"sage_wheels={hashed}"], env)
    if rc == 0 and "--dry" not in args.pyinfra_args:
        show_report(env)
    return rc


def show_report(env: dict[str, str]) -> None:
    """The fleet report of what the hosts run now (reports/fleet.json, fleet.html)."""
    from .report.gather import main as gather_main

    os.environ.update({k: v for k, v in env.items() if k.startswith("SAGEFLEET_")})
    print("\nsagefleet: fleet report", flush=True)
    gather_main([])


if __name__ == "__main__":
    sys.exit(main())
