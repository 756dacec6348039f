"""bake --print run on the control machine (the real docker CLI + buildx plugin; no
engine needed) on the fixture bake project, with a host's bake variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from sagefleet.bake import BakeError
from sagefleet.bakeproject import check_variables, declared_variables, resolve

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "imagerepo"
OWN = Path(__file__).resolve().parents[2]


def test_declared_variables_of_the_fixture_and_our_own_files():
    assert declared_variables(FIXTURE, ["docker-bake.hcl"]) == {
        "REGISTRY_URL", "IMAGE_LABEL", "BASE_IMAGE", "CACHE_REGISTRY",
    }  # fmt: skip
    own = declared_variables(OWN, ["docker-bake.hcl", "tests/offline/offline.hcl"])
    assert {"REGISTRY_URL", "IMAGE_LABEL", "BASE_IMAGE", "TORCH_VERSION"} <= own


def test_a_variable_the_bake_file_does_not_declare_is_refused():
    with pytest.raises(BakeError, match=r"bake_variables REGISTRY_UR: not declared by docker-bake"):
        check_variables(FIXTURE, ["docker-bake.hcl"], {"REGISTRY_UR": "x/"})


def test_a_compose_file_is_not_checked(tmp_path):
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    assert declared_variables(tmp_path, ["compose.yaml"]) is None
    check_variables(tmp_path, ["compose.yaml"], {"ANY": "x"})


def test_missing_bake_file():
    with pytest.raises(BakeError, match="bake file 'nope.hcl' cannot be read"):
        declared_variables(FIXTURE, ["nope.hcl"])


def test_resolve_with_the_hosts_variables_and_nothing_from_this_environment(monkeypatch):
    monkeypatch.setenv("IMAGE_LABEL", "from-my-shell")  # must not leak into the answer
    d = resolve(
        FIXTURE,
        ["docker-bake.hcl"],
        "complete-cuda",
        {"REGISTRY_URL": "reg.example:5000/team/", "BASE_IMAGE": "sagefleet/base:bookworm"},
    )
    assert d.image_ref("complete-cuda") == "reg.example:5000/team/complete:cuda-dev"
    assert d.chain("complete-cuda") == ("runtime-cuda", "core-cuda", "complete-cuda")
    assert d.target("runtime-cuda").args["BASE_IMAGE"] == "sagefleet/base:bookworm"
    assert d.requirements_path("complete-cuda") == "services/comfy/complete/extra-requirements.txt"


def test_resolve_reports_bakes_own_error(tmp_path):
    (tmp_path / "docker-bake.hcl").write_text('target "t" {\n  context = \n}\n')
    with pytest.raises(BakeError, match=r"--print t` in .* failed \(exit 1\)"):
        resolve(tmp_path, ["docker-bake.hcl"], "t", {})


def test_resolve_without_docker_says_what_to_install():
    with pytest.raises(BakeError, match="install the docker CLI and the buildx plugin"):
        resolve(FIXTURE, ["docker-bake.hcl"], "complete-cuda", {}, docker="/nonexistent/docker")


def test_wheels_for_another_architecture_than_bake_builds_are_refused():
    from sagefleet.inputs import build_inputs
    from tests.offline_pins import offline_pins

    assert build_inputs(offline_pins()).image_ref  # our own layout: linux/amd64, x86_64 wheels
    pins = offline_pins(sage_wheel_platform="manylinux_2_28_aarch64")
    with pytest.raises(
        BakeError,
        match=r"sage_wheel_platform = 'manylinux_2_28_aarch64': wheels for this platform cannot "
        r"install on bake platform 'linux/amd64' .*\(bake target '[a-z-]+' builds for linux/amd64\)",
    ):
        build_inputs(pins)


def test_an_answer_is_asked_once_and_asked_again_when_the_question_changes(tmp_path, monkeypatch):
    """bake --print answers persist between runs (PRINT_CACHE): the same files, target,
    variables and binaries are not asked again; any of them changed is. A STAND-IN
    docker (a script that counts its calls and prints a recorded answer) is asked."""
    from sagefleet import bakeproject

    monkeypatch.setattr(bakeproject, "PRINT_CACHE", tmp_path / "cache")
    project = tmp_path / "project"
    (project / "services").mkdir(parents=True)
    (project / "docker-bake.hcl").write_text((FIXTURE / "docker-bake.hcl").read_text())
    recorded = Path(__file__).parent / "data" / "bake" / "print" / "fixture-complete.json"
    calls = tmp_path / "calls"
    docker = tmp_path / "docker"
    docker.write_text(f"#!/bin/sh\necho x >> {calls}\ncat {recorded}\n")
    docker.chmod(0o755)

    def ask(**variables: str):
        bakeproject._resolve.cache_clear()  # a new run: only the disk remembers
        d = resolve(project, ["docker-bake.hcl"], "complete-cuda", variables, docker=str(docker))
        assert d.image_ref("complete-cuda")
        return len(calls.read_text().split())

    assert ask(REGISTRY_URL="a/") == 1
    assert ask(REGISTRY_URL="a/") == 1  # same question: answered from the cache
    assert ask(REGISTRY_URL="b/") == 2  # other variables
    with open(project / "docker-bake.hcl", "a") as fh:
        fh.write("\n# edited\n")
    assert ask(REGISTRY_URL="b/") == 3  # the bake file changed
    docker.write_text(docker.read_text() + "# upgraded\n")
    assert ask(REGISTRY_URL="b/") == 4  # another docker binary
    assert ask(REGISTRY_URL="b/") == 4
