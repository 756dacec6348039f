"""sagefleet.faults on a real pyinfra run (@local, no engine needed): a step that fails
its host ends in one summary naming host, operation and reason, printed and written
as JSON, with no Python traceback."""

from __future__ import annotations

import json

from tests.conftest import run_pyinfra


def test_failed_step_is_summarised_without_a_traceback(tmp_path):
    summary = tmp_path / "run-summary.json"
    run = run_pyinfra(
        "-y",
        "inventory.py",
        "tests/integration/failing_step_deploy.py",
        env={"SAGEFLEET_RUN_SUMMARY": str(summary), "SAGEFLEET_FLEET": ""},
        timeout=120,
    )
    assert run.returncode != 0, run.output
    assert "Traceback" not in run.output, run.output
    assert "sagefleet: 1 of 1 host(s) failed:" in run.stderr, run.output
    reason = "health check failed: HTTP port did not answer"
    assert f"  @local: Health check: {reason}" in run.stderr, run.output
    assert json.loads(summary.read_text()) == {
        "hosts": ["@local"],
        "failed_hosts": ["@local"],
        "failures": [{"host": "@local", "operation": "Health check", "reason": reason}],
        "ok": False,
    }
