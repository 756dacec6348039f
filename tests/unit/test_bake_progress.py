"""bake's progress as steps: every tests/unit/data/bake/progress/<log> recorded from a
real bake of the fixture project (tests/fixtures/imagerepo, local engine) is parsed,
whole and fed in small pieces, and compared with <log>.expected.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sagefleet.bake import BakeProgress, format_bar, format_step

DATA = Path(__file__).parent / "data" / "bake" / "progress"
LOGS = sorted(p for p in DATA.iterdir() if not p.name.endswith(".expected.json"))


def _facts(p: BakeProgress) -> dict:
    out = {
        "format": p.format,
        "cached": len(p.cached_steps()),
        "executed": [f"[{s.target} {s.position}] {s.first_line}" for s in p.executed_steps()],
        "failed": [s.first_line for s in p.failed()],
        "ignored_errors": [s.name for s in p.ignored_errors()],
        "slowest": [[round(s.elapsed, 1), f"[{s.target} {s.position}] {s.first_line}"]
                    for s in p.slowest(2)],
    }  # fmt: skip
    if p.final_error:
        out["final_error_starts"] = p.final_error[:40]
    return out


def test_every_recorded_log_has_expectations():
    assert len(LOGS) >= 7
    for log in LOGS:
        assert log.with_name(log.name + ".expected.json").exists(), log.name


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.name)
@pytest.mark.parametrize("chunk", [None, 7, 333])
def test_recorded_log(log: Path, chunk: int | None):
    text = log.read_text()
    p = BakeProgress()
    if chunk is None:
        p.feed(text)
    else:
        for i in range(0, len(text), chunk):
            p.feed(text[i : i + chunk])
    expected = json.loads(log.with_name(log.name + ".expected.json").read_text())
    assert _facts(p) == expected


def test_fresh_host_with_registry_cache_is_fully_cached_in_both_formats():
    """A fresh build host baking from the fleet's registry cache: every step is a
    cache hit, also where the plain printer dropped a step's CACHED line."""
    for name in (
        "fixture-fresh-host-registry-cache.plain.log",
        "fixture-fresh-host-registry-cache.rawjson",
    ):
        p = BakeProgress()
        p.feed((DATA / name).read_text())
        assert p.executed_steps() == [] and len(p.cached_steps()) == 7, name
    plain = BakeProgress()
    plain.feed((DATA / "fixture-fresh-host-registry-cache.plain.log").read_text())
    no_line = [s for s in plain.cached_steps() if not s.cached]
    assert [s.first_line for s in no_line] == [
        "RUN mkdir -p /app && printf 'fixture runtime\\n' > /app/RUNTIME",
        "WORKDIR /app/ComfyUI",
    ]
    assert all(s.pulled > 0 and s.log_lines == 0 for s in no_line)


def test_a_pin_change_runs_only_the_complete_stage():
    p = BakeProgress()
    p.feed((DATA / "fixture-complete-changed.plain.log").read_text())
    ran = [s.instruction.split()[0] + " " + s.instruction.split()[1] for s in p.executed_steps()]
    assert ran == ["COPY extra-requirements.txt", "RUN if"]


def test_failure_names_the_step_and_keeps_the_cache_import_errors_apart():
    p = BakeProgress()
    p.feed((DATA / "fixture-pip-fails.plain.log").read_text())
    (failed,) = p.failed()
    assert failed.is_build_step and failed.log_lines >= 2
    assert "did not complete successfully: exit code: 1" in failed.error
    assert len(p.ignored_errors()) == 3
    assert "failed: RUN if grep" in p.summary()


def test_live_events_in_order_and_a_partial_line_waits():
    p = BakeProgress()
    assert p.feed("#1 [internal] load local bake definitions\n#1 DO") == [p.steps["#1"]]
    assert not p.steps["#1"].done
    changed = p.feed("NE 0.0s\n#2 [t 1/2] RUN echo hi\n")
    assert [s.id for s in changed] == ["#1", "#2"] and p.steps["#1"].done
    changed = p.feed("#2 0.101 hi\n#2 DONE 1.5s\n")
    assert [s.id for s in changed] == ["#2"]
    s = p.steps["#2"]
    assert (s.target, s.index, s.total, s.done, s.elapsed, s.log_lines) == ("t", 1, 2, True, 1.5, 1)
    assert format_step(s) == "t step 1/2 RUN echo hi done 1.5s"
    assert p.slowest(1) == [s]


def test_format_of_a_running_step_and_the_bar():
    p = BakeProgress()
    p.feed("#5 [complete-cuda 2/3] RUN pip install --no-input -r /app/extra-requirements.txt\n")
    p.feed("#6 [complete-cuda 1/3] COPY extra-requirements.txt /app/\n#6 CACHED\n")
    assert format_step(p.steps["#5"], elapsed=12.4) == (
        "complete-cuda step 2/3 RUN pip install --no-input -r /app/extra-requirements.txt 12s"
    )
    assert format_bar(p, width=10, elapsed=3) == (
        "[#####-----] 1/2 complete-cuda step 2/3 RUN pip install --no-input -r "
        "/app/extra-requirements.txt 3s"
    )


def test_unknown_format_refused():
    with pytest.raises(ValueError, match="unknown progress format"):
        BakeProgress("tty")
