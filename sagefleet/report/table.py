"""The report as a text table."""

from __future__ import annotations

from .analysis import (
    COLUMNS,
    ENTRY_KERNEL,
    KERNEL_ABBREV,
    STATUS_ABBREV,
    Record,
    build_label,
    crossover_label,
    host_summary,
    recommendation_label,
)


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
    if not entry or entry.get("status") == "inaccurate":  # a wrong kernel's speed means nothing
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
                build_label(r),
                _kernel_cell(r),
                _cosine_cell(r),
                _speedup_cell(r),
                crossover_label(r),
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
