"""Shared helpers: run the real pyinfra CLI on this project, check the engine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
from sagefleet.project import PYINFRA_CLI as PYINFRA  # noqa: E402


def engine_available() -> bool:
    if not shutil.which("docker"):
        return False
    proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True)
    return proc.returncode == 0


def require_engine() -> None:
    """Skip without an engine, unless CI demands one (then fail loudly)."""
    if engine_available():
        return
    message = "no Docker engine answers: run scripts/setup-engine first"
    if os.environ.get("SAGEFLEET_REQUIRE_ENGINE") == "1":
        pytest.fail(message)
    pytest.skip(message)


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
