"""Every tests/unit/data/facts/<Fact>/*.json case: the command, and process() on recorded output.

A case: {"kwargs": {...}, "command_contains": [...], "output": [lines], "fact": expected}.
Outputs are real recordings (see each "description"); some are recordings edited to a
state this machine is not in. Empty output gives default(), as pyinfra does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sagefleet.facts import build, gpu, service, verify

MODULES = (build, gpu, service, verify)

DATA = Path(__file__).parent / "data" / "facts"
CASES = sorted(DATA.glob("*/*.json"))
KEYS = {"description", "kwargs", "command_contains", "output", "fact", "xfail"}


def _params():
    for path in CASES:
        case = json.loads(path.read_text())
        marks = [pytest.mark.xfail(strict=True, reason=case["xfail"])] if "xfail" in case else []
        yield pytest.param(path, case, id=f"{path.parent.name}/{path.stem}", marks=marks)


def test_every_fact_has_cases():
    from pyinfra.api import FactBase

    ours = {
        n
        for module in MODULES
        for n, v in vars(module).items()
        if isinstance(v, type) and issubclass(v, FactBase) and v.__module__ == module.__name__
    }
    assert {p.parent.name for p in CASES} == ours


@pytest.mark.parametrize("path, case", list(_params()))
def test_fact_case(path, case):
    assert set(case) <= KEYS, f"unknown keys {set(case) - KEYS}"
    (cls,) = [getattr(m, path.parent.name) for m in MODULES if hasattr(m, path.parent.name)]
    fact = cls()
    command = fact.command(**case["kwargs"])
    for part in case["command_contains"]:
        assert part in command
    output = case["output"]
    got = fact.process(output) if output else fact.default()
    assert got == case["fact"]
