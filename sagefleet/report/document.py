"""reports/fleet.json and fleet.html, written atomically; records read back."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .analysis import REPORT_SCHEMA, Record, host_recommendation, host_summary, recommendation_label
from .page import render_html


def fleet_document(records: list[Record]) -> dict:
    hosts = []
    for r in records:
        rec = host_recommendation(r)
        hosts.append(
            {
                **r,
                "summary": host_summary(r),
                "recommendation": rec,
                "label": recommendation_label(r, rec),
            }
        )
    return {"schema": REPORT_SCHEMA, "hosts": hosts}


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_reports(records: list[Record], out_dir: str | Path = "reports") -> tuple[Path, Path]:
    """Write fleet.json and fleet.html under out_dir, each atomically (temp file + os.replace)."""
    out = Path(out_dir)
    json_path, html_path = out / "fleet.json", out / "fleet.html"
    _write_atomic(json_path, json.dumps(fleet_document(records), indent=2) + "\n")
    _write_atomic(html_path, render_html(records))
    return json_path, html_path


def load_records(path: str | Path) -> list[Record]:
    """A JSON list of records, or a fleet.json document ({"hosts": [...]}) read back."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict) and isinstance(data.get("hosts"), list):
        data = data["hosts"]
    if not isinstance(data, list) or not all(isinstance(r, dict) and "host" in r for r in data):
        raise ValueError(f"{path}: expected a list of host records with a 'host' key")
    return data
