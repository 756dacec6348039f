"""The suite's own rules (tests/conftest.py, tests/fleet/fleet_deploy.py): a test that
needs the engine, the fleet or the registry never skips under SAGEFLEET_REQUIRE_ENGINE=1,
and a pyinfra run whose result did not parse is never an empty success."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "fleet"))
from fleet_deploy import DeployResult, ResultUnreadable  # noqa: E402

INNER = {
    "fleet/test_inner.py": """
        import pytest
        from tests.conftest import need

        def test_skips_in_body():
            pytest.skip("no engine here")

        def test_needs_a_component():
            need("registry binary missing", "the test registry")

        @pytest.mark.opt_in
        @pytest.mark.skipif(True, reason="scale opt-in not set")
        def test_opt_in():
            pass

        def test_runs():
            pass
    """,
    "unit/test_inner_unit.py": """
        import pytest

        def test_unit_skip():
            pytest.skip("torch is installed here")
    """,
}


def _inner_suite(tmp_path: Path, require: bool) -> subprocess.CompletedProcess[str]:
    """A copy of tests/conftest.py over a fleet and a unit test directory, run by pytest."""
    root = tmp_path / "proj"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "__init__.py").write_text("")
    shutil.copy(TESTS / "conftest.py", root / "tests" / "conftest.py")
    for rel, text in INNER.items():
        path = root / "tests" / rel
        path.parent.mkdir(exist_ok=True)
        path.write_text(textwrap.dedent(text))
    env = {k: v for k, v in os.environ.items() if k != "SAGEFLEET_REQUIRE_ENGINE"}
    if require:
        env["SAGEFLEET_REQUIRE_ENGINE"] = "1"
    env["PYTHONPATH"] = str(root)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "tests"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_require_engine_turns_skips_of_fleet_tests_into_failures(tmp_path: Path) -> None:
    proc = _inner_suite(tmp_path, require=True)
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "FAILED tests/fleet/test_inner.py::test_skips_in_body" in out, out
    assert "skipped under SAGEFLEET_REQUIRE_ENGINE=1" in out and "no engine here" in out, out
    assert "FAILED tests/fleet/test_inner.py::test_needs_a_component" in out, out
    assert "the test registry unavailable: registry binary missing" in out, out
    # Explicit opt-ins and unit tests may still skip.
    assert "SKIPPED [1] tests/fleet/test_inner.py" in out and "scale opt-in not set" in out, out
    assert "torch is installed here" in out, out
    assert "2 failed, 1 passed, 2 skipped" in out, out
    assert "sagefleet: 3 fleet tests ran (1 passed, 2 failed), 1 skipped" in out, out


def test_without_require_engine_they_skip(tmp_path: Path) -> None:
    proc = _inner_suite(tmp_path, require=False)
    assert proc.returncode == 0, proc.stdout
    assert "1 passed, 4 skipped" in proc.stdout, proc.stdout
    assert "sagefleet: 1 fleet tests ran (1 passed, 0 failed), 3 skipped" in proc.stdout


# --------------------------------------------------------------------------- DeployResult

OP = "Build the ComfyUI image | Bake complete-cuda"


def _json(operations: list[dict], failed: list[str] | None = None) -> str:
    return json.dumps({"results": {"operations": operations, "failed_hosts": failed or []}})


def _op(success=(), no_change=(), error=()) -> dict:
    return {
        "name": OP,
        "success": list(success),
        "no_change": list(no_change),
        "error": list(error),
    }


def result(stdout: str, rc: int = 0) -> DeployResult:
    return DeployResult(["-y", "inventory.py", "deploy.py", "--json"], rc, stdout, "log", 1.0)


@pytest.mark.parametrize("stdout", ["", "No hosts remaining!\n", '{"results": ', "[1, 2]"])
def test_unparsed_result_is_never_an_empty_success(stdout: str) -> None:
    r = result(stdout)
    assert not r.ok
    for question in (lambda: r.changed(), lambda: r.operations, lambda: r.failed_hosts):
        with pytest.raises(ResultUnreadable, match="did not parse"):
            question()
    assert "no parsable JSON result" in r.describe()


def test_nothing_changed_needs_operations_that_ran() -> None:
    with pytest.raises(ResultUnreadable, match="no operations at all"):
        result(_json([])).changed()
    r = result(_json([_op(no_change=["build-1"])]))
    assert r.ok and r.changed() == [] and r.changed("build-1") == []
    with pytest.raises(ResultUnreadable, match="no operation ran on build-2"):
        r.changed("build-2")


def test_changed_and_status_read_the_json() -> None:
    r = result(_json([_op(success=["build-1"], no_change=["build-2"], error=["gpu-1"])], ["gpu-1"]))
    assert r.changed() == [("build-1", "Bake complete-cuda")]
    assert r.status("build-1", "Bake complete-cuda") == "changed"
    assert r.status("build-2", "Bake complete-cuda") == "no change"
    assert r.status("gpu-1", "Bake complete-cuda") == "error"
    assert r.status("gpu-2", "Bake complete-cuda") is None
    assert r.failed_hosts == ["gpu-1"] and r.errors() == [("gpu-1", "Bake complete-cuda")]
    assert not result(_json([_op(success=["build-1"])]), rc=1).ok
