"""scripts/gpu-e2e and scripts/gpu-e2e-bundle refuse bad option values before they
touch anything (the whole runs: tests/integration/test_gpu_e2e_standin.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SAGEFLEET_E2E_ROOT": str(tmp_path / "root")}
    return subprocess.run(
        [str(ROOT / "scripts" / script), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("value", ["16384,abc", "16384 32768", "", "0", "16384,", "1;true"])
def test_gpu_e2e_refuses_a_bad_workload_seq_lens(tmp_path, value):
    proc = _run("gpu-e2e", ["--bundle", str(tmp_path), "--workload-seq-lens", value], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"--workload-seq-lens '{value}'" in proc.stderr
    assert "whole numbers separated by commas" in proc.stderr
    # Nothing was started or written: the option is checked before the engine stage.
    assert not (tmp_path / "root").exists()


def test_gpu_e2e_help_names_the_options(tmp_path):
    proc = _run("gpu-e2e", ["--help"], tmp_path)
    assert proc.returncode == 0
    assert "--workload-seq-lens" in proc.stdout and "--expect-refused" in proc.stdout


@pytest.mark.parametrize("tag", ["abc", "1-2", "1 2", ""])
def test_gpu_e2e_bundle_refuses_a_bad_build_tag(tmp_path, tag):
    proc = _run("gpu-e2e-bundle", [str(tmp_path / "b"), "--sage", f"x.whl@{tag}"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"build tag '{tag}' must be a digit" in proc.stderr
    assert not (tmp_path / "b").exists()
