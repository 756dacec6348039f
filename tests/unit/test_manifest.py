"""The context manifest and the file-level diff --dry --diff shows for a context change."""

from __future__ import annotations

import pytest

from sagefleet.manifest import diff, format_manifest, parse_manifest

A, B, C = "a" * 64, "b" * 64, "c" * 64


def test_round_trip_sorted():
    text = format_manifest([("z.txt", A, "644"), ("dir/run.sh", B, "755")])
    assert text == f"{B} 755 dir/run.sh\n{A} 644 z.txt\n"
    assert parse_manifest(text) == {"dir/run.sh": (B, "755"), "z.txt": (A, "644")}


def test_paths_with_spaces_survive_and_damaged_lines_are_ignored():
    text = format_manifest([("a b/c d.txt", A, "644")]) + "garbage\n" + f"{B} 9x9 bad\n"
    assert parse_manifest(text) == {"a b/c d.txt": (A, "644")}


def test_line_break_in_a_path_is_refused():
    with pytest.raises(ValueError, match="contains a line break"):
        format_manifest([("evil\nname", A, "644")])


def test_diff_added_removed_changed_content_and_mode():
    before = {"keep": (A, "644"), "gone": (A, "644"), "edit": (A, "644"), "chmod": (A, "644")}
    after = {"keep": (A, "644"), "new": (B, "644"), "edit": (C, "644"), "chmod": (A, "755")}
    change = diff(before, after)
    assert (change.added, change.removed, change.changed) == (
        ("new",),
        ("gone",),
        ("chmod", "edit"),
    )
    assert change.lines() == ["+ new", "- gone", "~ chmod", "~ edit"]
    assert change.summary() == "1 added, 1 removed, 2 changed"
    assert not diff(after, after)


def test_first_context_shows_everything_added_and_long_lists_are_cut():
    after = {f"f{i:03}": (A, "644") for i in range(50)}
    change = diff(None, after)
    assert len(change.added) == 50
    assert change.lines(limit=3) == ["+ f000", "+ f001", "+ f002", "... and 47 more"]


def test_build_context_diff_lists_paths_never_archive_bytes(caplog):
    """--dry --diff of a changed tarball context: one line per added/removed/changed
    path (from the host's manifest), and nothing of the tarball itself."""
    import logging
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from fakehost import FakeHost, command_data, using
    from pyinfra.context import ctx_state

    from sagefleet.operations import build as ops

    host = FakeHost(
        {
            "ContextMarker": {"marker_path=/b/context.digest": "1" * 64},
            "ContextManifest": {
                "path=/b/context.manifest": {"keep": [A, "644"], "gone.txt": [A, "644"]}
            },
        }
    )
    tar = b"ustar-like bytes \x00\x01 that must never be printed"
    manifest = format_manifest([("keep", A, "644"), ("new/file.py", B, "755")])
    with using(host), caplog.at_level(logging.INFO, logger="pyinfra"):
        ctx_state.get().config.DIFF = True
        commands = [
            command_data(c)
            for c in ops.build_context._inner(
                build_dir="/b", tar=tar, digest="2" * 64, manifest=manifest
            )
        ]
    lines = [r.getMessage() for r in caplog.records]
    assert "[fakehost]   + new/file.py" in lines and "[fakehost]   - gone.txt" in lines
    assert not any("keep" in x for x in lines)
    assert not any("ustar" in x or "\x00" in x for x in lines)
    assert commands[1:3] == [{"upload": "/b/context.tar"}, {"upload": "/b/context.manifest.tmp"}]
