"""Faults that explain themselves: one summary of the hosts that failed a run.

pyinfra ends a run with per-operation lines ("[host] Error: executed 0 commands")
and, when every host failed, with "No hosts remaining!" and no --json output.
FaultSummary (a pyinfra state callback, registered by sagefleet.validation) records
for each failed host the operation and why — the connection was lost, the host
could not be reached, the operation's own last error line, or the reason a
sagefleet step gave (HostFailure) — and at exit prints one summary to stderr and
writes it as JSON (``$SAGEFLEET_RUN_SUMMARY``, default reports/run-summary.json).

A sagefleet step that fails a host on purpose (a failed health check) raises
HostFailure: its reason goes into the summary, and pyinfra's callback traceback
for it is dropped from the log, since it explains nothing.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
from pathlib import Path

from pyinfra.api.state import BaseStateCallback

from .pins.limits import shown

SUMMARY_ENV = "SAGEFLEET_RUN_SUMMARY"
DEFAULT_SUMMARY = "reports/run-summary.json"
REASON_CHARS = 300


class HostFailure(Exception):
    """Fails the current host with a reason, without a traceback."""

    reasons: dict[str, str] = {}

    def __init__(self, host_name: str, reason: str) -> None:
        super().__init__(reason)
        HostFailure.reasons[host_name] = reason


class _DropHostFailureTracebacks(logging.Filter):
    """pyinfra logs a traceback for any exception of a python.call step; for a
    HostFailure that is noise (the reason is in the summary and logged once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - never break logging
            return True
        return "HostFailure" not in message


def _connected(host) -> bool:
    """False when the host's SSH transport is gone (sshd died, network cut)."""
    client = getattr(getattr(host, "connector", None), "client", None)
    if client is None or not hasattr(client, "get_transport"):
        return bool(getattr(host, "connected", True))
    transport = client.get_transport()
    return transport is not None and transport.is_active()


def _last_error_line(lines: list[str]) -> str | None:
    for line in reversed(lines):
        if line.strip():
            return line.strip()
    return None


class FaultSummary(BaseStateCallback):
    """Records which operation failed on which host, and why."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.state = None
        self.records: dict[str, dict] = {}
        self.contacted = False

    # --- pyinfra callbacks --------------------------------------------------------------
    def host_connect(self, state, host) -> None:  # type: ignore[override]
        self.state, self.contacted = state, True

    def host_connect_error(self, state, host, error) -> None:  # type: ignore[override]
        self.state, self.contacted = state, True
        self.records.setdefault(
            host.name,
            {"host": host.name, "operation": "connect", "reason": f"could not connect: {error}"},
        )

    def operation_host_error(self, state, host, op_hash, *args) -> None:  # type: ignore[override]
        self.state = state
        # "Build the ComfyUI image | Bake complete-cuda" -> "Bake complete-cuda"
        names = {name.rsplit(" | ", 1)[-1] for name in state.get_op_meta(op_hash).names}
        operation = ", ".join(sorted(names)) or "operation"
        self.records.setdefault(
            host.name,
            {
                "host": host.name,
                "operation": operation,
                "op_hash": op_hash,
                "lost": not _connected(host),
            },
        )

    # --- the summary ----------------------------------------------------------------------
    def _reason(self, record: dict) -> str:
        if "reason" in record:
            return record["reason"]
        operation = record["operation"]
        if record.get("lost"):
            return f"connection lost during {operation}"
        if record["host"] in HostFailure.reasons:
            return HostFailure.reasons[record["host"]]
        host = next((h for h in self.state.inventory if h.name == record["host"]), None)
        line = None
        if host is not None:
            try:
                meta = self.state.get_op_data_for_host(host, record["op_hash"]).operation_meta
                line = _last_error_line(meta.stderr_lines) or _last_error_line(meta.stdout_lines)
            except Exception:  # noqa: BLE001 - an incomplete operation has no output
                line = None
        return line or f"{operation} failed"

    def failures(self) -> list[dict]:
        """One entry per failed host: host, operation, reason (cut to ~300 chars)."""
        out = []
        failed = {h.name for h in getattr(self.state, "failed_hosts", ())} if self.state else set()
        for name in sorted(set(self.records) | failed):
            record = self.records.get(name) or {
                "host": name,
                "operation": "planning",
                "reason": "failed before any operation ran (see the output above)",
            }
            reason = self._reason(record)
            if len(reason) > REASON_CHARS:
                reason = shown(reason, REASON_CHARS)
            out.append({"host": name, "operation": record["operation"], "reason": reason})
        return out

    def finish(self) -> None:
        """Print the summary (if a host failed) and write the JSON file (if any host
        was contacted); called once at exit."""
        if self.state is None or not self.contacted:
            return
        failures = self.failures()
        hosts = sorted(h.name for h in self.state.inventory)
        doc = {
            "hosts": hosts,
            "failed_hosts": [f["host"] for f in failures],
            "failures": failures,
            "ok": not failures,
        }
        if failures:
            print(f"\nsagefleet: {len(failures)} of {len(hosts)} host(s) failed:", file=sys.stderr)
            for f in failures:
                print(f"  {f['host']}: {f['operation']}: {f['reason']}", file=sys.stderr)
        path = Path(
            self.path
            or os.environ.get(SUMMARY_ENV)
            or Path(self.state.cwd or ".") / DEFAULT_SUMMARY
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc, indent=2) + "\n")
            os.replace(tmp, path)
            if failures:
                print(f"  (machine-readable: {path})", file=sys.stderr)
        except OSError as e:
            print(f"sagefleet: could not write {path}: {e}", file=sys.stderr)
        sys.stderr.flush()


def install(state) -> FaultSummary:
    """Add a FaultSummary to state (once) and print/write it at exit."""
    for handler in state.callback_handlers:
        if isinstance(handler, FaultSummary):
            return handler
    summary = FaultSummary()
    summary.state = state
    state.add_callback_handler(summary)
    logging.getLogger("pyinfra").addFilter(_DropHostFailureTracebacks())
    atexit.register(summary.finish)
    return summary
