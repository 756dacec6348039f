"""Shared helpers: run the real pyinfra CLI on this project, check the engine.

Under ``SAGEFLEET_REQUIRE_ENGINE=1`` (``make test``, CI) a test that needs the
engine, the SSH test fleet or the registry never skips: it fails and says what is
missing. Every test under tests/fleet is marked ``fleet`` and every test under
tests/integration ``engine`` at collection, so a new file cannot slip out of that
rule; a skip of such a test is turned into a failure unless the test is marked
``opt_in`` (the 20-host scale test). The run ends with a line counting fleet tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
from sagefleet.project import PYINFRA_CLI as PYINFRA  # noqa: E402

REQUIRE_ENV = "SAGEFLEET_REQUIRE_ENGINE"
BASE_IMAGE = os.environ.get("SAGEFLEET_BASE_IMAGE", "sagefleet/base:bookworm")
# Directories whose tests need real components, and the marker each gets.
_NEEDS = {"fleet": "fleet", "integration": "engine"}


def engine_required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def need(problem: str | None, what: str = "a required component") -> None:
    """Nothing to do when problem is None; else fail under SAGEFLEET_REQUIRE_ENGINE=1
    (the message says what is missing), skip otherwise (a developer's machine)."""
    if problem is None:
        return
    message = f"{what} unavailable: {problem}"
    if engine_required():
        pytest.fail(f"{message} ({REQUIRE_ENV}=1: this test must run)", pytrace=False)
    pytest.skip(message)


def engine_problem() -> str | None:
    """What is missing for a real deploy on the local engine, or None: the docker CLI,
    an answering engine, buildx, the base image (each named on its own)."""
    if not shutil.which("docker"):
        return "no docker CLI on PATH: run scripts/setup-engine"
    proc = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        why = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no answer"]
        return f"no Docker engine answers ({why[0]}): run scripts/setup-engine"
    if subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode != 0:
        return "the engine answers but docker buildx is missing: run scripts/setup-engine"
    image = subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True)
    if image.returncode != 0:
        return f"the engine answers but the base image {BASE_IMAGE} is missing: run scripts/setup-engine"
    return None


def engine_available() -> bool:
    return engine_problem() is None


def require_engine() -> None:
    """Skip without an engine (and base image), unless CI demands one: then fail."""
    need(engine_problem(), "the local Docker engine")


def run_pyinfra(*args: str, env: dict[str, str] | None = None, timeout: int = 900):
    """Run `pyinfra -y inventory.py deploy.py ...` style commands from the repo root."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [PYINFRA, *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    proc.output = proc.stdout + proc.stderr  # type: ignore[attr-defined]
    return proc


# --------------------------------------------------------------------------- hooks


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "opt_in: an explicit opt-in (scale); it may skip even under CI"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(tests_dir).parts
        if parts and parts[0] in _NEEDS:
            item.add_marker(_NEEDS[parts[0]])


def _needs_components(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(m) for m in set(_NEEDS.values()))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and engine_required() and _needs_components(item)):
        return
    if item.get_closest_marker("opt_in") or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"{item.nodeid} skipped under {REQUIRE_ENV}=1, where tests that need the engine, "
        f"the fleet or the registry must run: {reason}"
    )


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """One line: how many fleet tests ran (reached their call phase), skipped, errored."""

    def fleet_reports(key: str, when: tuple[str, ...]) -> int:
        reports = terminalreporter.stats.get(key, [])
        return sum(
            1
            for r in reports
            if getattr(r, "when", None) in when and "fleet" in getattr(r, "keywords", {})
        )

    passed = fleet_reports("passed", ("call",))
    failed = fleet_reports("failed", ("call",))
    skipped = fleet_reports("skipped", ("setup", "call"))
    errors = fleet_reports("error", ("setup", "teardown"))
    terminalreporter.write_line(
        f"sagefleet: {passed + failed} fleet tests ran ({passed} passed, {failed} failed), "
        f"{skipped} skipped, {errors} errors in setup/teardown"
        + (f" [{REQUIRE_ENV}=1]" if engine_required() else "")
    )
