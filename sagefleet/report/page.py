"""The report as one self-contained HTML page with an SVG chart."""

from __future__ import annotations

import html

from .analysis import COLUMNS, Record, chart_kernel, has_gpu, host_recommendation, shape_label
from .table import table_rows


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
        "same dtype, same process. Accuracy: min cosine similarity vs fp32 SDPA; a kernel "
        "outside the bounds, or faster than the GPU's dense peak, is WRONG (status "
        "<code>inaccurate</code>). Build: the head of the sageattention wheel's fingerprint "
        "(@commit when installed from VCS). Crossover: sageattn beats SDPA from that seq on. The "
        "recommendation is about <code>sageattn</code>, which ComfyUI's "
        "<code>--use-sage-attention</code> calls.</p>\n"
        f'<table id="fleet"><thead><tr>{head}</tr></thead><tbody>\n'
        + "\n".join(body)
        + "\n</tbody></table>\n<h2>Speedup per host and shape</h2>\n"
        + render_svg(chart_bars(records))
        + "\n</body></html>\n"
    )
