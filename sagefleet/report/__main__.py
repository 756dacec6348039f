"""`python -m sagefleet.report RECORDS.json [--out reports]`: table, fleet.json, fleet.html."""

from __future__ import annotations

import argparse
import sys

from . import __doc__ as _doc
from .document import load_records, write_reports
from .table import render_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sagefleet.report", description=_doc)
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
