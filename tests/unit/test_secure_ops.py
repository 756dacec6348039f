"""sagefleet.operations.secure on the strict fake host: secrets compared by hash and never
read back; directories sagefleet did not create keep their mode."""

from __future__ import annotations

import hashlib

import pytest
from fakehost import FakeHost, command_data, using

from sagefleet.operations.secure import own_directory, secret_file

SECRET = b'{"auths": {"r.lan": {"auth": "Y2k6aHVudGVyMg=="}}}'
SHA = hashlib.sha256(SECRET).hexdigest()
DEST = "/var/lib/sagefleet/registry/config.json"
STAT = {"mode": 600, "user": "root", "group": "root", "size": len(SECRET)}


def run_operation(op, facts: dict, **kwargs) -> tuple[list, list[str]]:
    """op._inner(**kwargs) on the strict fake host: (commands, noop messages)."""
    host = FakeHost(facts)
    with using(host):
        commands = [command_data(c) for c in op._inner(**kwargs)]
    return commands, host.noops


def test_secret_file_up_to_date_is_a_noop_without_reading_content():
    commands, noops = run_operation(
        secret_file,
        {"File": {f"path={DEST}": STAT}, "Sha256File": {f"path={DEST}": SHA}},
        src=SECRET,
        dest=DEST,
    )
    assert commands == []
    assert noops == [f"{DEST} is up to date (sha256 {SHA[:12]}..., mode 600)"]


@pytest.mark.parametrize(
    "facts",
    [
        {"File": {f"path={DEST}": None}},
        {"File": {f"path={DEST}": STAT}, "Sha256File": {f"path={DEST}": "0" * 64}},
        {"File": {f"path={DEST}": {**STAT, "mode": 644}}, "Sha256File": {f"path={DEST}": SHA}},
    ],
    ids=["absent", "other content", "other mode"],
)
def test_secret_file_is_created_with_its_mode_before_upload(facts):
    commands, noops = run_operation(secret_file, facts, src=SECRET, dest=DEST)
    assert commands == [
        f"umask 077 && mkdir -p /var/lib/sagefleet/registry && touch {DEST} && chmod 600 {DEST}",
        {"upload": DEST},
    ]
    assert noops == []
    assert not any(SECRET.decode() in str(c) for c in commands)


def test_own_directory_leaves_an_existing_directory_alone():
    facts = {"Directory": {"path=/tmp": {"mode": 1777, "user": "root", "group": "root"}}}
    commands, noops = run_operation(own_directory, facts, path="/tmp", mode="755")
    assert commands == [] and noops == ["/tmp exists (its mode is left as it is)"]


def test_own_directory_creates_with_mode():
    facts = {"Directory": {"path=/opt/sagefleet/build": None}}
    commands, _ = run_operation(own_directory, facts, path="/opt/sagefleet/build", mode="755")
    assert commands == ["mkdir -p /opt/sagefleet/build && chmod 755 /opt/sagefleet/build"]


def test_own_directory_refuses_a_file():
    from pyinfra.api import OperationError

    with pytest.raises(OperationError, match="exists and is not a directory"):
        run_operation(own_directory, {"Directory": {"path=/opt/x": False}}, path="/opt/x")


# --- the same rules when build_image decides from its one BuildState read -------------------

BUILD_DIR = "/opt/sagefleet/build"


def _doc(mode: str, files: dict | None = None) -> dict:
    return {"dirs": {BUILD_DIR: mode}, "files": files or {}}


def test_snapshot_directory_leaves_an_existing_build_dir_alone():
    from sagefleet.operations.snapshot import Snapshot, directory

    snap = Snapshot(_doc("1777"))
    commands, noops = run_operation(directory, {}, path=BUILD_DIR, mode="755", snapshot=snap)
    assert commands == [] and noops == [f"{BUILD_DIR} exists (its mode is left as it is)"]
    assert snap.fresh


def test_snapshot_directory_creates_an_absent_build_dir():
    from sagefleet.operations.snapshot import Snapshot, directory

    snap = Snapshot(_doc(""))
    commands, _ = run_operation(directory, {}, path=BUILD_DIR, mode="755", snapshot=snap)
    assert commands == [f"mkdir -p {BUILD_DIR} && chmod 755 {BUILD_DIR}"]
    assert not snap.fresh


def test_snapshot_secret_put_never_reads_the_remote_content(tmp_path):
    from sagefleet.operations.snapshot import Snapshot, secret_put

    src = tmp_path / "ca.pem"
    src.write_bytes(SECRET)
    dest = f"{BUILD_DIR}/secrets/pip-ca.pem"
    sha1 = hashlib.sha1(SECRET).hexdigest()
    in_place = Snapshot(_doc("755", {dest: {"sha1": sha1, "mode": "600"}}))
    commands, noops = run_operation(
        secret_put, {}, src=str(src), dest=dest, mode="600", snapshot=in_place
    )
    assert commands == [] and noops == [f"{dest} is up to date"]
    stale = Snapshot(_doc("755", {dest: {"sha1": "0" * 40, "mode": "600"}}))
    facts = {"File": {f"path={dest}": STAT}, "Sha256File": {f"path={dest}": "0" * 64}}
    commands, _ = run_operation(
        secret_put, facts, src=str(src), dest=dest, mode="600", snapshot=stale
    )
    assert commands[-1] == {"upload": dest} and len(commands) == 2
