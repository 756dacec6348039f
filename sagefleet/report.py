"""Fleet report: a text table, reports/fleet.json and a self-contained reports/fleet.html.

Input is a list of host records, gathered elsewhere (pyinfra facts)::

    {"host": "gpu-01",
     "gpus": [{"name": "NVIDIA H100 80GB HBM3", "capability": "9.0", "driver": "580.159.04",
               "memory_mib": 81559}],
     "image_id": "sha256:…" | None,
     "probe": <sagefleet.probe JSON, kernels or inventory mode> | None}

The recommendation is decided in ONE place, ``sagefleet.probe.recommend``: the probe calls it in
the image, and this module calls the same function for probes that carry no recommendation
(inventory mode, or records assembled by hand). The probe imports nothing from sagefleet; the
report importing the probe is the allowed direction.

Examples:
    python -m sagefleet.report records.json --out reports
    >>> table = render_table(records)
    >>> json_path, html_path = write_reports(records, "reports")
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from sagefleet import probe as probe_mod

REPORT_SCHEMA = 1
ENTRY_KERNEL = "sageattn"  # what ComfyUI's --use-sage-attention calls
KERNEL_ABBREV = {
    "sageattn": "auto",
    "sageattn_qk_int8_pv_fp16_triton": "f16tri",
    "sageattn_qk_int8_pv_fp16_cuda": "f16cu",
    "sageattn_qk_int8_pv_fp8_cuda": "f8cu",
    "sageattn_qk_int8_pv_fp8_cuda_sm90": "f8sm90",
    "sageattn3_blackwell": "sa3",
}
STATUS_ABBREV = {
    "ok": "ok",
    "unsupported-arch": "arch",
    "not-installed": "-",
    "error": "ERR",
    "no-gpu": "nogpu",
}
COLUMNS = (
    "host",
    "GPU",
    "CC",
    "driver",
    "image",
    "sageattention",
    "sageattn3",
    "kernels",
    "min cosine",
    "speedup vs SDPA",
    "recommendation",
)

Record = dict[str, Any]


# --------------------------------------------------------------------------- analysis


def _keep(reason: str) -> dict:
    return {"use_sage_attention": False, "kernel": None, "reason": reason}


def has_gpu(record: Record) -> bool:
    probe = record.get("probe") or {}
    gpu = probe.get("gpu")
    if gpu is not None:
        return bool(gpu.get("available"))
    return bool(record.get("gpus"))


def host_summary(record: Record) -> dict:
    """The probe's per-kernel summary, computed from its kernels when it carries none."""
    probe = record.get("probe") or {}
    if probe.get("summary") is not None:
        return probe["summary"]
    long_seq = (probe.get("thresholds") or {}).get("long_seq", probe_mod.DEFAULT_LONG_SEQ)
    return probe_mod.summarize(probe.get("kernels") or [], long_seq)


def host_recommendation(record: Record) -> dict:
    """The probe's own recommendation if present, else the same decision made here."""
    probe = record.get("probe")
    if not probe:
        if not record.get("gpus"):
            return _keep("no GPU")
        return _keep("not probed")
    if probe.get("recommendation") is not None:
        return probe["recommendation"]
    if probe.get("fatal"):
        return _keep(f"probe failed: {probe['fatal']}")
    gpu = probe.get("gpu") or {"available": bool(record.get("gpus")), "reason": "unknown"}
    version = ((probe.get("packages") or {}).get("sageattention") or {}).get("version")
    th = probe.get("thresholds") or {}
    return probe_mod.recommend(
        host_summary(record) if probe.get("kernels") else {},
        gpu,
        probe_mod.sageattn_dispatch(gpu.get("capability"), version),
        th.get("min_cosine", probe_mod.DEFAULT_MIN_COSINE),
        th.get("max_rel_l1", probe_mod.DEFAULT_MAX_REL_L1),
        th.get("min_speedup", probe_mod.DEFAULT_MIN_SPEEDUP),
        th.get("long_seq", probe_mod.DEFAULT_LONG_SEQ),
    )


def recommendation_label(record: Record, rec: dict | None = None) -> str:
    rec = rec or host_recommendation(record)
    if rec.get("use_sage_attention"):
        return f"--use-sage-attention (kernel {rec.get('kernel') or ENTRY_KERNEL})"
    if not has_gpu(record):
        return "no GPU"
    return f"keep SDPA: {rec.get('reason') or 'unknown'}"


def chart_kernel(record: Record) -> dict | None:
    """The kernel whose shapes are charted: the entry point, the one the recommendation is about."""
    for k in (record.get("probe") or {}).get("kernels") or []:
        if k.get("kernel") == ENTRY_KERNEL and k.get("shapes"):
            return k
    return None


def shape_label(s: dict) -> str:
    causal = " causal" if s.get("causal") else ""
    return f"s{s.get('seq_len')} d{s.get('head_dim')} {s.get('dtype')}{causal}"


# ------------------------------------------------------------------------------ cells


def _gpu_cells(record: Record) -> tuple[str, str, str]:
    gpus = record.get("gpus") or []
    pgpu = (record.get("probe") or {}).get("gpu") or {}
    if gpus:
        names = {g.get("name") or "?" for g in gpus}
        name = "/".join(sorted(names)) + (f" x{len(gpus)}" if len(gpus) > 1 else "")
        return name, str(gpus[0].get("capability") or "-"), str(gpus[0].get("driver") or "-")
    if pgpu.get("available"):
        count = pgpu.get("count") or 1
        name = str(pgpu.get("name")) + (f" x{count}" if count > 1 else "")
        return name, str(pgpu.get("capability") or "-"), "-"
    return "-", "-", "-"


def _short_image(image_id: str | None) -> str:
    if not image_id:
        return "-"
    return image_id.split(":", 1)[-1][:12]


def _pkg(record: Record, name: str) -> str:
    info = ((record.get("probe") or {}).get("packages") or {}).get(name) or {}
    if not record.get("probe"):
        return "?"
    return info.get("version") or "-"


def _kernel_cell(record: Record) -> str:
    kernels = (record.get("probe") or {}).get("kernels")
    if not kernels:
        return "not measured"
    statuses = {k.get("status") for k in kernels}
    if statuses == {"no-gpu"}:
        return "no-gpu"
    parts = []
    for k in kernels:
        name = KERNEL_ABBREV.get(k.get("kernel"), k.get("kernel"))
        parts.append(f"{name}={STATUS_ABBREV.get(k.get('status'), k.get('status'))}")
    return " ".join(parts)


def _entry_summary(record: Record) -> dict | None:
    summary = host_summary(record)
    entry = summary.get(ENTRY_KERNEL)
    return entry if entry and entry.get("shapes") else None


def _cosine_cell(record: Record) -> str:
    entry = _entry_summary(record)
    if not entry or entry.get("min_cosine") is None:
        return "-"
    return f"{entry['min_cosine']:.4f}"


def _speedup_cell(record: Record) -> str:
    entry = _entry_summary(record)
    if not entry:
        return "-"
    med = entry.get("median_speedup_long")
    if med is None:
        med = entry.get("median_speedup")
    return "-" if med is None else f"{med:.2f}x"


def table_rows(records: list[Record]) -> list[list[str]]:
    rows = []
    for r in records:
        gpu, cc, driver = _gpu_cells(r)
        rows.append(
            [
                str(r.get("host")),
                gpu,
                cc,
                driver,
                _short_image(r.get("image_id")),
                _pkg(r, "sageattention"),
                _pkg(r, "sageattn3"),
                _kernel_cell(r),
                _cosine_cell(r),
                _speedup_cell(r),
                recommendation_label(r),
            ]
        )
    return rows


def render_table(records: list[Record]) -> str:
    """A plain-text table, one row per host; speedup is the median over seq >= 4096 shapes."""
    rows = [list(COLUMNS), *table_rows(records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ files


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


def chart_bars(records: list[Record]) -> list[dict]:
    """One bar per (host, shape) with a measured speedup."""
    bars = []
    for r in records:
        k = chart_kernel(r)
        if not k:
            continue
        for s in k["shapes"]:
            if s.get("speedup") is None or s.get("error"):
                continue
            bars.append(
                {
                    "host": str(r.get("host")),
                    "kernel": k.get("kernel"),
                    "shape": shape_label(s),
                    "speedup": float(s["speedup"]),
                    "cosine": s.get("cosine"),
                }
            )
    return bars


def render_svg(bars: list[dict]) -> str:
    esc = html.escape
    if not bars:
        return '<p class="empty">No kernel measurements to chart.</p>'
    label_w, bar_w, row_h, top = 330, 420, 18, 28
    scale_max = max(2.0, max(b["speedup"] for b in bars) * 1.1)
    height = top + row_h * len(bars) + 10
    x0 = label_w
    one = x0 + bar_w * (1.0 / scale_max)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 70}" '
        f'height="{height}" role="img" aria-label="speedup vs SDPA per host and shape">',
        f'<text x="{x0}" y="14" class="axis">speedup vs torch SDPA (same dtype); '
        "line = 1.0x</text>",
    ]
    for i, b in enumerate(bars):
        y = top + i * row_h
        w = max(1.0, bar_w * b["speedup"] / scale_max)
        cls = "bar faster" if b["speedup"] > 1.0 else "bar slower"
        cos = "n/a" if b["cosine"] is None else f"{b['cosine']:.5f}"
        tip = f"{b['host']} {b['kernel']} {b['shape']}: {b['speedup']:.2f}x, cosine {cos}"
        out.append(
            f'<text x="{x0 - 6}" y="{y + 12}" text-anchor="end" class="label">'
            f"{esc(b['host'])} · {esc(b['shape'])}</text>"
        )
        out.append(
            f'<rect class="{cls}" x="{x0}" y="{y + 2}" width="{w:.1f}" height="{row_h - 5}">'
            f"<title>{esc(tip)}</title></rect>"
        )
        out.append(
            f'<text x="{x0 + w + 4:.1f}" y="{y + 12}" class="value">{b["speedup"]:.2f}x</text>'
        )
    out.append(
        f'<line x1="{one:.1f}" x2="{one:.1f}" y1="{top - 4}" y2="{height - 6}" class="one"/>'
    )
    out.append("</svg>")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f0f0f0}
td.use{color:#0a6b2b;font-weight:600} td.keep{color:#8a4b00} td.nogpu{color:#777}
svg text{font-size:11px;font-family:ui-monospace,monospace}
rect.faster{fill:#2e9e5b} rect.slower{fill:#e08a2c}
line.one{stroke:#333;stroke-dasharray:3 3}
"""


def render_html(records: list[Record]) -> str:
    esc = html.escape
    rows = table_rows(records)
    head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
    body = []
    for r, row in zip(records, rows, strict=True):
        rec = host_recommendation(r)
        cls = "use" if rec.get("use_sage_attention") else ("keep" if has_gpu(r) else "nogpu")
        cells = "".join(f"<td>{esc(c)}</td>" for c in row[:-1])
        body.append(
            f'<tr data-host="{esc(str(r.get("host")))}">{cells}'
            f'<td class="{cls}">{esc(row[-1])}</td></tr>'
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>sagefleet: SageAttention fleet report</title>"
        f"<style>{_CSS}</style></head><body>\n"
        "<h1>SageAttention fleet report</h1>\n"
        "<p>Speedup: median over shapes with seq &gt;= 4096 of torch SDPA time / kernel time, "
        "same dtype, same process. Accuracy: min cosine similarity vs fp32 SDPA. The "
        "recommendation is about <code>sageattn</code>, which ComfyUI's "
        "<code>--use-sage-attention</code> calls.</p>\n"
        f'<table id="fleet"><thead><tr>{head}</tr></thead><tbody>\n'
        + "\n".join(body)
        + "\n</tbody></table>\n<h2>Speedup per host and shape</h2>\n"
        + render_svg(chart_bars(records))
        + "\n</body></html>\n"
    )


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sagefleet.report", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("records", help="JSON file: list of host records")
    parser.add_argument("--out", default="reports", help="output folder (default: reports)")
    args = parser.parse_args(argv)
    try:
        records = load_records(args.records)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render_table(records))
    json_path, html_path = write_reports(records, args.out)
    print(f"wrote {json_path} and {html_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
