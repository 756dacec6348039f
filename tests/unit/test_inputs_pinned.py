"""The inputs hash and the context tarball are stamped on images and hosts: their recipe
must not drift between versions (a drift relabels every image and rebuilds every host).
Known answers for fixed inputs, and the tarball's file modes."""

from __future__ import annotations

import io
import tarfile

from test_inputs import BASE

from sagefleet.inputs import context_tarball, inputs_hash

# inputs_hash(**BASE) of this version; change it only with a note that every image rebuilds.
BASE_HASH = "sha256:eef9875fc0325377ce112560ed3a7dec034de21bfd1bb56d79aeac243deaeb51"


def test_inputs_hash_known_answer():
    assert inputs_hash(**BASE) == BASE_HASH


def test_tarball_modes_executable_or_not(tmp_path):
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o700)
    (tmp_path / "group.sh").write_text("#!/bin/sh\n")
    (tmp_path / "group.sh").chmod(0o601)  # executable by others only
    (tmp_path / "data.txt").write_text("x\n")
    (tmp_path / "data.txt").chmod(0o600)
    got = context_tarball(["run.sh", "group.sh", "data.txt"], tmp_path)
    with tarfile.open(fileobj=io.BytesIO(got.tar)) as tar:
        modes = {m.name: m.mode for m in tar.getmembers()}
        owners = {(m.uname, m.gname) for m in tar.getmembers()}
    assert modes == {"run.sh": 0o755, "group.sh": 0o755, "data.txt": 0o644}
    assert owners == {("root", "root")}
    assert got.files == ("data.txt", "group.sh", "run.sh")
