"""sagefleet.inputs: a reproducible tarball, and an inputs hash that moves with its inputs."""

from __future__ import annotations

import io
import tarfile

import pytest

from sagefleet.commands import content_mtime
from sagefleet.inputs import REQUIREMENTS_PATH, context_tarball, inputs_hash


@pytest.fixture
def project(tmp_path):
    (tmp_path / "services/comfy/complete/__pycache__").mkdir(parents=True)
    (tmp_path / "services/comfy/complete/Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "services/comfy/complete/run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "services/comfy/complete/run.sh").chmod(0o700)
    (tmp_path / "services/comfy/complete/__pycache__/x.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "services/comfy/complete/stray.pyc").write_bytes(b"\0")
    (tmp_path / REQUIREMENTS_PATH).write_text("rendered on the host\n")
    (tmp_path / "docker-bake.hcl").write_text('target "complete-cuda" {}\n')
    return tmp_path


PATHS = ["services", "docker-bake.hcl"]


def test_tarball_is_deterministic(project):
    first = context_tarball(PATHS, project)
    (project / "docker-bake.hcl").touch()  # a new mtime must not matter
    second = context_tarball(PATHS, project)
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first.tar)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == list(first.files)
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "root", "root")}
    # mtime comes from the content: the same everywhere, never one constant for all
    # files (BuildKit re-sends a context file only when its size or mtime changed).
    data = {
        m.name: tarfile.open(fileobj=io.BytesIO(first.tar)).extractfile(m).read() for m in members
    }
    assert {m.name: m.mtime for m in members} == {n: content_mtime(d) for n, d in data.items()}
    assert {m.name: m.mode for m in members}["services/comfy/complete/run.sh"] == 0o755


def test_a_same_size_edit_changes_the_files_mtime(project):
    before = context_tarball(PATHS, project)
    dockerfile = project / "services/comfy/complete/Dockerfile"
    text = dockerfile.read_text()
    dockerfile.write_text(text.replace(text[0], "X" if text[0] != "X" else "Y", 1))
    after = context_tarball(PATHS, project)

    def mtimes(t):
        with tarfile.open(fileobj=io.BytesIO(t.tar)) as tar:
            return {m.name: (m.size, m.mtime) for m in tar.getmembers()}

    old, new = mtimes(before), mtimes(after)
    name = "services/comfy/complete/Dockerfile"
    assert old[name][0] == new[name][0] and old[name][1] != new[name][1]


def test_tarball_leaves_out_caches_and_the_rendered_requirements(project):
    assert context_tarball(PATHS, project).files == (
        "docker-bake.hcl",
        "services/comfy/complete/Dockerfile",
        "services/comfy/complete/run.sh",
    )


def test_content_change_changes_the_digest(project):
    before = context_tarball(PATHS, project).digest
    (project / "services/comfy/complete/Dockerfile").write_text("FROM busybox\n")
    assert context_tarball(PATHS, project).digest != before


def test_excluded_files_do_not_change_the_digest(project):
    before = context_tarball(PATHS, project).digest
    (project / REQUIREMENTS_PATH).write_text("other\n")
    (project / "services/comfy/complete/__pycache__/y.pyc").write_bytes(b"1")
    assert context_tarball(PATHS, project).digest == before


def test_missing_path_is_an_error(project):
    with pytest.raises(FileNotFoundError, match="'nope' does not exist"):
        context_tarball(["nope"], project)


BASE = {
    "context_digest": "a" * 64,
    "requirements": "triton==3.5.0\n",
    "bake_files": ["docker-bake.hcl"],
    "target": "complete-cuda",
    "variables": {"BASE_IMAGE": "nvidia/cuda:12.9.1", "PYTHON_VERSION": "3.12"},
}
CHANGES = {
    "context_digest": "b" * 64,
    "requirements": "triton==3.5.1\n",
    "bake_files": ["docker-bake.hcl", "tests/offline/offline.hcl"],
    "target": "core-cuda",
    "variables": {"BASE_IMAGE": "nvidia/cuda:12.9.1", "PYTHON_VERSION": "3.11"},
}


def test_inputs_hash_is_stable():
    value = inputs_hash(**BASE)
    assert value.startswith("sha256:") and len(value) == 7 + 64
    reordered = {**BASE, "variables": dict(reversed(BASE["variables"].items()))}
    assert inputs_hash(**reordered) == value  # variable order is not an input


@pytest.mark.parametrize("key", sorted(CHANGES))
def test_inputs_hash_changes_with_each_input(key):
    assert inputs_hash(**{**BASE, key: CHANGES[key]}) != inputs_hash(**BASE)


def test_inputs_hash_sees_bake_file_order():
    files = ["a.hcl", "b.hcl"]
    assert inputs_hash(**{**BASE, "bake_files": files}) != inputs_hash(
        **{**BASE, "bake_files": files[::-1]}
    )
