"""The NodeState snapshot on a GPU node: an operation that changes the node makes it
stale, so the operations after it read their own facts (as build_image's BuildState)."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

from fakehost import FakeHost, using

from sagefleet.operations import service, snapshot
from sagefleet.operations.snapshot import Snapshot

DATA = Path(__file__).parent / "data" / "operations"


def _case(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def _doc(name: str) -> dict:
    return _case(name)["args"]["snapshot"]["snapshot"]


def test_a_pull_makes_the_snapshot_stale():
    case = _case("pull/snapshot_not_pulled.json")
    snap = Snapshot(case["args"]["snapshot"]["snapshot"])
    with using(FakeHost({})):
        assert len(list(service.pull._inner(image=case["args"]["image"], snapshot=snap))) == 1
    assert snap.get() is None


def test_a_pulled_image_leaves_the_snapshot_fresh():
    case = _case("pull/snapshot_pulled.json")
    snap = Snapshot(case["args"]["snapshot"]["snapshot"])
    with using(FakeHost({})):
        assert list(service.pull._inner(image=case["args"]["image"], snapshot=snap)) == []
    assert snap.get() is not None


def test_a_replaced_container_makes_the_snapshot_stale():
    case = _case("service/snapshot_settings_changed.json")
    snap = Snapshot(case["args"]["snapshot"]["snapshot"])
    args = {**case["args"], "snapshot": snap}
    with using(FakeHost({})):
        assert len(list(service.service._inner(**args))) == 1
    assert snap.get() is None


def test_after_a_change_the_service_reads_its_own_facts():
    """Stale snapshot: the unchanged case's facts are read, not the snapshot's."""
    case = _case("service/unchanged.json")
    snap = Snapshot(_doc("service/snapshot_settings_changed.json"))
    snap.fresh = False  # an earlier operation (the pull) changed the node
    host = FakeHost(case["facts"])
    with using(host):
        assert list(service.service._inner(**{**case["args"], "snapshot": snap})) == []
    assert {name for name, _ in host.fact_reads} == set(case["facts"])


def test_registry_login_and_probe_script_in_place_from_the_snapshot():
    """NodeState's dirs and files: the directory by its path, an uploaded BytesIO by its sha1."""
    config = b'{"auths": {}}'
    import hashlib

    doc = {
        "dirs": {"/var/lib/sagefleet/registry": "700"},
        "files": {
            "/var/lib/sagefleet/registry/config.json": {
                "sha1": hashlib.sha1(config).hexdigest(),
                "mode": "600",
            }
        },
    }
    snap = Snapshot(doc)
    host = FakeHost({})
    with using(host):
        assert (
            list(
                snapshot.directory._inner(
                    path="/var/lib/sagefleet/registry", mode="700", snapshot=snap
                )
            )
            == []
        )
        put = snapshot.put._inner(
            src=BytesIO(config),
            dest="/var/lib/sagefleet/registry/config.json",
            mode="600",
            snapshot=snap,
        )
        assert list(put) == []
    assert host.noops == [
        "/var/lib/sagefleet/registry exists (its mode is left as it is)",
        "/var/lib/sagefleet/registry/config.json is up to date",
    ]
    assert snap.get() is not None
