"""The bake's live progress shares the host's SSH connection with the bake: ending
the follower must never leave that connection hung. CI once hung 600 s on a bake
that was refused (the lock) while the follower's poll was opening its channel: the
follower was killed mid-poll and paramiko's channel lock stayed taken.

The hang needs the end of the bake to land in a narrow phase of a poll, so the
script tries many times on every host of the fleet at once. With the kill put back
it went red in each of 3 runs here (at rounds 130-270 of 300 on one of 5 hosts);
with the follower stopped between polls, 0 of 3,000 rounds hung."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import harness
import pytest

pytestmark = pytest.mark.fleet

HERE = Path(__file__).resolve().parent
ROUNDS = 300


def test_a_bake_that_ends_at_once_leaves_the_connection_usable(fleet: harness.Fleet) -> None:
    script = HERE / "follow_refusals.py"
    cmd = [sys.executable, str(script), str(fleet.fleet_file), str(ROUNDS), *fleet.names()]
    try:
        proc = subprocess.run(
            cmd, cwd=harness.REPO_ROOT, capture_output=True, text=True, timeout=600
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace").splitlines()
        err = (exc.stderr or b"").decode(errors="replace")
        pytest.fail(f"hung past 600 s after {out[-1:]}:\n{err[-3000:]}")
    assert proc.returncode == 0 and proc.stdout.endswith("done\n"), proc.stderr[-3000:]
    assert "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
