"""The fleet report from a live fleet: `python -m sagefleet.report.gather` (README: `make report`).

Runs `pyinfra inventory.py fleet_report.py` (facts only: GPUs, the image ID and its
stored probe result per host), then prints the table and writes reports/fleet.json
and reports/fleet.html with sagefleet.report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..deploys.report import REPORT_DIR_ENV
from ..project import PROJECT_ROOT, PYINFRA_CLI
from .document import write_reports
from .table import render_table


def gather(out_dir: Path, pyinfra_args: list[str]) -> tuple[int, list[dict]]:
    hosts_dir = out_dir / "hosts"
    shutil.rmtree(hosts_dir, ignore_errors=True)
    env = {**os.environ, REPORT_DIR_ENV: str(out_dir.resolve())}
    rc = subprocess.call(
        [PYINFRA_CLI, "-y", "inventory.py", "fleet_report.py", *pyinfra_args],
        cwd=PROJECT_ROOT,
        env=env,
    )
    records = [json.loads(p.read_text()) for p in sorted(hosts_dir.glob("*.json"))]
    return rc, records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(PROJECT_ROOT / "reports"))
    parser.add_argument("pyinfra_args", nargs="*")
    args = parser.parse_args(argv)
    out = Path(args.out)
    rc, records = gather(out, args.pyinfra_args)
    if not records:
        print("sagefleet: no host answered; no report written", file=sys.stderr)
        return rc or 1
    print(render_table(records))
    json_path, html_path = write_reports(records, out)
    print(f"\nwrote {json_path} and {html_path}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
