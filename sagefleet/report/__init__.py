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

from .analysis import (
    COLUMNS,
    ENTRY_KERNEL,
    REPORT_SCHEMA,
    Record,
    build_label,
    chart_kernel,
    crossover_label,
    has_gpu,
    host_recommendation,
    host_summary,
    recommendation_label,
    shape_label,
)
from .document import fleet_document, load_records, write_reports
from .page import chart_bars, render_html, render_svg
from .table import render_table, table_rows

__all__ = [
    "COLUMNS",
    "ENTRY_KERNEL",
    "REPORT_SCHEMA",
    "Record",
    "build_label",
    "chart_bars",
    "chart_kernel",
    "crossover_label",
    "fleet_document",
    "has_gpu",
    "host_recommendation",
    "host_summary",
    "load_records",
    "recommendation_label",
    "render_html",
    "render_svg",
    "render_table",
    "shape_label",
    "table_rows",
    "write_reports",
]
