"""Every tests/unit/data/operations/<op>/*.json case, run through the strict fake host.

A case: {"args": {...}, "facts": {Fact: {"k=v": value}}, "commands": [...], "noops": [...]}
or {"args": ..., "facts": ..., "exception": {"name": ..., "message": ...}}. An argument
{"bytes": "text"} is passed as b"text"; {"snapshot": BuildState document} as a
Snapshot; {"expectation": {...}} as a sagefleet.gate.Expectation (wheels as
name: [version, build tag]). "executing":
true runs the case as an executing run (pyinfra's state.is_executing), false or
absent as planning (--dry). "snapshot_fresh_after": whether the snapshot argument
still describes the host after the operation (false once it changed something;
required with a snapshot argument). "xfail": "why" marks a known bug (strict).

The operations are found in sagefleet.operations (a module, or a package and its
modules): every function pyinfra's @operation decorated there. Each needs a
directory tests/unit/data/operations/<function name>/ with at least one case of
commands and, where it validates arguments, one of an exception.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest
from cases import case_params
from fakehost import FakeHost, command_data, using

from sagefleet import operations
from sagefleet.gate import Expectation
from sagefleet.operations.snapshot import Snapshot

DATA = Path(__file__).parent / "data" / "operations"
CASES = sorted(DATA.glob("*/*.json"))
KEYS = {
    "description",
    "args",
    "facts",
    "commands",
    "noops",
    "exception",
    "executing",
    "snapshot_fresh_after",
    "xfail",
}


def our_operations() -> dict[str, object]:
    """{name: operation} of every @operation defined in sagefleet.operations (or its
    package's modules): pyinfra's decorator leaves ``_inner``, the undecorated generator."""
    modules = [operations]
    if hasattr(operations, "__path__"):  # a package: every module in it
        modules += [
            importlib.import_module(f"{operations.__name__}.{m.name}")
            for m in pkgutil.walk_packages(operations.__path__)
        ]
    found: dict[str, object] = {}
    for module in modules:
        for name, obj in vars(module).items():
            if not (callable(obj) and hasattr(obj, "_inner")):
                continue
            if not getattr(obj, "__module__", "").startswith(operations.__name__):
                continue  # imported from pyinfra (files.put, ...)
            assert found.get(name, obj) is obj, f"two operations named {name}: cases need one"
            found[name] = obj
    return found


OPERATIONS = our_operations()


def _arg(value):
    if isinstance(value, dict) and set(value) == {"bytes"}:
        return value["bytes"].encode()
    if isinstance(value, dict) and set(value) == {"snapshot"}:
        return Snapshot(value["snapshot"])
    if isinstance(value, dict) and set(value) == {"expectation"}:
        e = dict(value["expectation"])
        e["wheels"] = {name: tuple(w) for name, w in e["wheels"].items()}
        return Expectation(**e)
    return value


def test_operations_are_found():
    """The discovery itself: it finds operations (so the next test cannot pass on none)."""
    assert {"build_context", "image", "probe", "gate", "push", "pull", "service"} <= set(OPERATIONS)
    assert all(hasattr(op, "_inner") for op in OPERATIONS.values())


def test_every_operation_has_cases():
    """A directory of cases per operation, and one only for an operation that exists."""
    with_cases = {p.parent.name for p in CASES}
    missing = sorted(set(OPERATIONS) - with_cases)
    assert not missing, (
        f"operations without recorded cases: {missing}; add "
        f"tests/unit/data/operations/<name>/<case>.json (see this module's docstring)"
    )
    stale = sorted(with_cases - set(OPERATIONS))
    assert not stale, f"cases for operations that do not exist: {stale}"
    for name in OPERATIONS:
        cases = [json.loads(p.read_text()) for p in CASES if p.parent.name == name]
        assert any("commands" in c for c in cases), f"{name}: no case that yields or noops"


@pytest.mark.parametrize("path, case", list(case_params(CASES)))
def test_operation_case(path, case):
    assert set(case) <= KEYS, f"unknown keys {set(case) - KEYS}"
    assert ("exception" in case) != ("commands" in case), "give exactly one of commands/exception"
    op = OPERATIONS[path.parent.name]
    host = FakeHost(case.get("facts", {}))
    args = {k: _arg(v) for k, v in case.get("args", {}).items()}

    with using(host, is_executing=case.get("executing", False)):
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

    snapshots = [a for a in args.values() if isinstance(a, Snapshot)]
    if snapshots:
        assert "snapshot_fresh_after" in case, "a case with a snapshot says whether it stays fresh"
        assert snapshots[0].fresh is case["snapshot_fresh_after"]

    # A fact the fixture provides but the operation never read is a stale fixture.
    provided = {(name, key) for name, by in case.get("facts", {}).items() for key in by}
    assert provided == set(host.fact_reads)


@pytest.mark.parametrize(
    "path, case",
    [
        p
        for p in case_params(CASES)
        if p.values[1].get("commands")
        and not p.values[1].get("executing")
        and not p.values[1].get("xfail")
    ],
)
def test_what_an_operation_says_comes_before_its_first_command(path, case, caplog):
    """pyinfra's change detection (--dry, the rollout's plan) stops at an operation's
    first command: whatever the operation logs (a context's file-level change, why it
    probes again, a GPU refusal) must be said by then, or --dry never shows it."""
    op = OPERATIONS[path.parent.name]

    def logged(first_only: bool) -> list[str]:
        caplog.clear()
        args = {k: _arg(v) for k, v in case.get("args", {}).items()}
        host = FakeHost(case.get("facts", {}))
        with caplog.at_level("INFO"), using(host):
            gen = op._inner(**args)
            next(gen) if first_only else list(gen)
        return host.logs + [r.getMessage() for r in caplog.records]

    assert logged(first_only=True) == logged(first_only=False)
