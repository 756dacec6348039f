"""Every tests/unit/data/facts/<Fact>/*.json case: the command, and process() on recorded output.

A case: {"kwargs": {...}, "command_contains": [...], "output": [lines], "fact": expected},
optionally "requires_command": the tool pyinfra checks for first (absent: output [] and
the fact is default()).
Outputs are real recordings (see each "description"); some are recordings edited to a
state this machine is not in. Empty output gives default(), as pyinfra does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cases import case_params, find

from sagefleet.facts import build, gpu, service, verify

MODULES = (build, gpu, service, verify)

DATA = Path(__file__).parent / "data" / "facts"
CASES = sorted(DATA.glob("*/*.json"))
KEYS = {"description", "kwargs", "command_contains", "requires_command", "output", "fact", "xfail"}


def test_every_fact_has_cases():
    from pyinfra.api import FactBase

    ours = {
        n
        for module in MODULES
        for n, v in vars(module).items()
        if isinstance(v, type) and issubclass(v, FactBase) and v.__module__ == module.__name__
    }
    assert {p.parent.name for p in CASES} == ours


@pytest.mark.parametrize("path, case", list(case_params(CASES)))
def test_fact_case(path, case):
    assert set(case) <= KEYS, f"unknown keys {set(case) - KEYS}"
    fact = find(MODULES, path.parent.name)()
    command = fact.command(**case["kwargs"])
    for part in case["command_contains"]:
        assert part in command
    if "requires_command" in case:
        # The tool pyinfra checks for first; without it the fact is default().
        assert fact.requires_command(**case["kwargs"]) == case["requires_command"]
    output = case["output"]
    got = fact.process(output) if output else fact.default()
    assert got == case["fact"]
