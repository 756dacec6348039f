"""Every tests/unit/data/operations/<op>/*.json case, run through the strict fake host.

A case: {"args": {...}, "facts": {Fact: {"k=v": value}}, "commands": [...], "noops": [...]}
or {"args": ..., "facts": ..., "exception": {"name": ..., "message": ...}}. An argument
{"bytes": "text"} is passed as b"text", {"snapshot": BuildState or NodeState document} as a Snapshot. "xfail": "why" marks a known bug (strict).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cases import case_params, find
from fakehost import FakeHost, command_data, using

from sagefleet.operations import build, service, verify
from sagefleet.operations.snapshot import Snapshot

MODULES = (build, service, verify)

DATA = Path(__file__).parent / "data" / "operations"
CASES = sorted(DATA.glob("*/*.json"))
KEYS = {"description", "args", "facts", "commands", "noops", "exception", "xfail"}


def _arg(value):
    if isinstance(value, dict) and set(value) == {"bytes"}:
        return value["bytes"].encode()
    if isinstance(value, dict) and set(value) == {"snapshot"}:
        return Snapshot(value["snapshot"])
    return value


def test_every_operation_has_cases():
    assert {p.parent.name for p in CASES} == {"build_context", "image", "probe", "pull", "service"}
    assert len(CASES) >= 25


@pytest.mark.parametrize("path, case", list(case_params(CASES)))
def test_operation_case(path, case):
    assert set(case) <= KEYS, f"unknown keys {set(case) - KEYS}"
    assert ("exception" in case) != ("commands" in case), "give exactly one of commands/exception"
    op = find(MODULES, path.parent.name)
    host = FakeHost(case.get("facts", {}))
    args = {k: _arg(v) for k, v in case.get("args", {}).items()}

    with using(host):
        if "exception" in case:
            with pytest.raises(Exception) as info:
                list(op._inner(**args))
            assert type(info.value).__name__ == case["exception"]["name"]
            assert str(info.value) == case["exception"]["message"]
        else:
            commands = [command_data(c) for c in op._inner(**args)]
            assert commands == case["commands"]
            assert host.noops == case.get("noops", [])
            if not commands:
                assert host.noops, "a no-change result must say why (host.noop)"

    # A fact the fixture provides but the operation never read is a stale fixture.
    provided = {(name, key) for name, by in case.get("facts", {}).items() for key in by}
    assert provided == set(host.fact_reads)
