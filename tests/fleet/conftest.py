"""Fixtures for the SSH test fleet (see harness.py and docs/fleet.md).

- ``fleet``: one fleet for the session; size from SAGEFLEET_FLEET_SIZE (default 5),
  of which SAGEFLEET_FLEET_BUILD_HOSTS (default 2) are build hosts with dockerd.
  Parametrise with ``indirect=True`` and a dict of Fleet arguments for another shape.
- ``fleet_factory``: ``make(n_ssh=..., n_build=..., groups=...)`` for fleets that live
  for one test (tests that break hosts). Every fleet is torn down by a finalizer,
  also when the test fails.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from tests.conftest import need  # noqa: E402

_problem: list[str | None] = []


def require_fleet() -> None:
    """The fleet can start here (engine, base image, docker CLI), or: fail under
    SAGEFLEET_REQUIRE_ENGINE=1 naming what is missing, skip elsewhere."""
    if not _problem:
        _problem.append(harness.engine_problem())
        if _problem[0] is None:
            # Fleets of earlier runs that were killed before their teardown.
            harness.reap_orphans()
    need(_problem[0], "SSH test fleet")


def _down_and_check(f: harness.Fleet) -> None:
    """Tear a fleet down and fail (teardown error) if any of its containers or volumes is left."""
    f.down()
    left = harness.labelled(f.client, f.run_id)
    assert left == ([], []), f"fleet {f.run_id} left behind after teardown: {left}"


def _default_shape() -> dict[str, int]:
    size = int(os.environ.get("SAGEFLEET_FLEET_SIZE", "5"))
    n_build = min(size, int(os.environ.get("SAGEFLEET_FLEET_BUILD_HOSTS", "2")))
    return {"n_ssh": size - n_build, "n_build": n_build}


@pytest.fixture(scope="session")
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[harness.Fleet]:
    """The session's fleet, up and ready (SSH answers, build hosts' dockerd has the base image)."""
    require_fleet()
    shape = getattr(request, "param", None) or _default_shape()
    f = harness.Fleet(workdir=tmp_path_factory.mktemp("fleet"), **shape)
    request.addfinalizer(lambda: _down_and_check(f))
    f.up()
    yield f


@pytest.fixture
def fleet_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., harness.Fleet]:
    """make(n_ssh=3, n_build=0, groups=None, ready=True) -> a fleet that lives for this test."""
    require_fleet()

    def make(ready: bool = True, **kw: object) -> harness.Fleet:
        f = harness.Fleet(workdir=tmp_path_factory.mktemp("fleet"), **kw)  # type: ignore[arg-type]
        request.addfinalizer(lambda: _down_and_check(f))
        f.up(ready=ready)
        return f

    return make
