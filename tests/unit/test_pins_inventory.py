"""sagefleet.pins.validate over a real pyinfra Inventory (in process): every host's merged
data is validated, each error names where its value came from (--data, the host, the
group's file in group_data/ or a --group-data dir, all.py), and an error shared by many
hosts is reported once. Also build_inputs: what a bake depends on, from validated pins."""

from __future__ import annotations

import sys

import pytest
from pyinfra.api import Inventory
from test_pins import load

from sagefleet.inputs import build_inputs, inputs_hash, render_requirements
from sagefleet.pins import validate
from sagefleet.pins.validate import host_pins, validate_inventory


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A cwd with group_data/{all,gpu}.py and an override dir; argv as pyinfra's CLI."""
    (tmp_path / "group_data").mkdir()
    for name in ("all.py", "gpu.py"):
        (tmp_path / "group_data" / name).write_text("# written for this test\n")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "gpu.py").write_text("# written for this test\n")
    monkeypatch.setattr(sys, "argv", ["pyinfra", "inventory.py", "deploy.py"])
    return tmp_path


def inventory(host_data=None, gpu=None, other=None, override=None, all_data=None):
    hosts = [("b1", host_data or {}), "g1", "g2"]
    return Inventory(
        (hosts, all_data or load("all.py")),
        override_data=override or {},
        gpu=(["g1", "g2"], gpu or {}),
        other=(["g2"], other or {}),
    )


def test_good_inventory_has_no_errors(project):
    assert validate_inventory(inventory(), str(project)) == []


def test_host_data_error_names_the_host(project):
    errors = validate_inventory(inventory(host_data={"build_dir": "rel"}), str(project))
    assert errors == ["inventory host b1: build_dir = 'rel': must be an absolute path (host b1)"]


def test_override_error_is_reported_once(project):
    errors = validate_inventory(inventory(override={"service_port": 0}), str(project))
    assert errors == ["--data: service_port = 0: must be a TCP port number (1-65535) (host b1)"]


def test_group_error_names_the_groups_file_in_cwd(project):
    errors = validate_inventory(inventory(gpu={"bake_target": "a b"}), str(project))
    assert errors == [
        f"{project}/group_data/gpu.py: bake_target = 'a b': contains ' ': whitespace, quotes "
        "and shell metacharacters are refused (host g1)"
    ]


@pytest.mark.parametrize("style", ["separate", "equals"])
def test_group_file_of_a_group_data_dir_on_the_command_line_wins(project, monkeypatch, style):
    extra = str(project / "extra")
    flag = ["--group-data", extra] if style == "separate" else [f"--group-data={extra}"]
    monkeypatch.setattr(sys, "argv", ["pyinfra", "inventory.py", "deploy.py", *flag])
    errors = validate_inventory(inventory(gpu={"bake_target": "a b"}), str(project))
    assert errors[0].startswith(f"{extra}/gpu.py: bake_target = 'a b'")


def test_group_without_a_file_and_the_all_group(project):
    errors = validate_inventory(inventory(other={"bake_target": "a b"}), str(project))
    assert errors[0].startswith("group data of group 'other': bake_target = 'a b'")
    bad_all = {**load("all.py"), "bake_target": "a b"}
    errors = validate_inventory(inventory(all_data=bad_all), str(project))
    assert errors[0].startswith(f"{project}/group_data/all.py: bake_target = 'a b'")
    assert errors[0].endswith("(host b1)") and len(errors) == 1


def test_distinct_errors_of_several_hosts(project):
    inv = inventory(host_data={"build_dir": "rel"}, gpu={"service_port": 0})
    assert [e.rsplit(" (host ", 1)[1] for e in validate_inventory(inv, str(project))] == [
        "b1)",
        "g1)",
    ]


def test_host_pins_of_one_host(project):
    inv = inventory(gpu={"service_port": 9000})
    pins = host_pins(inv.get_host("g1"), cwd=str(project))
    assert pins.service.service_port == 9000
    assert host_pins(inv.get_host("b1"), inv, str(project)).service.service_port == 8188


@pytest.fixture
def validations(monkeypatch) -> list:
    """One entry per call of sagefleet.pins.validate.validate from here on."""
    pv = sys.modules["sagefleet.pins.validate"]  # the module (the package exports the function)
    calls: list = []
    real = pv.validate
    monkeypatch.setattr(
        pv, "validate", lambda data, *a, **k: calls.append(1) or real(data, *a, **k)
    )
    return calls


def test_a_host_is_validated_once_while_its_data_is_unchanged(project, validations):
    """The check before contact validates each host; the deploy's host_pins(host) gets
    those pins back, and validates again only once the host's data changed."""
    calls = validations
    inv = inventory()
    assert validate_inventory(inv, str(project)) == [] and len(calls) == 3
    g1 = inv.get_host("g1")
    first = host_pins(g1)
    assert host_pins(g1) is first and len(calls) == 3
    g1.data.service_port = 9001
    assert host_pins(g1).service.service_port == 9001 and len(calls) == 4


def test_a_second_copy_of_a_host_adopts_its_pins_only_with_the_same_data(project, validations):
    """The rollout's States each load the inventory again: a host's new object takes the
    pins validated before contact, unless its data differ (then it is validated)."""
    from sagefleet.pins.validate import adopt, validated

    calls = validations
    first = inventory()
    assert validate_inventory(first, str(project)) == [] and len(calls) == 3
    again = inventory()
    assert adopt(again.get_host("g1"), *validated(first.get_host("g1")))
    assert host_pins(again.get_host("g1")) is validated(first.get_host("g1"))[1]
    assert len(calls) == 3
    other = inventory(gpu={"service_port": 9001})
    assert not adopt(other.get_host("g1"), *validated(first.get_host("g1")))
    assert host_pins(other.get_host("g1")).service.service_port == 9001 and len(calls) == 4


# --------------------------------------------------------------------------- build_inputs


def test_build_inputs_of_a_local_context():
    pins = validate(load("all.py"))
    got = build_inputs(pins)
    assert got.git is None and got.tarball is not None
    assert got.context_digest == got.tarball.digest
    assert got.requirements == render_requirements(pins.image.template_vars())
    assert got.variables == {
        "REGISTRY_URL": "ghcr.io/pixeloven",
        "IMAGE_LABEL": "latest",
        "BASE_IMAGE": "nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04",
        "TORCH_VERSION": "2.9.0",
        "TORCH_INDEX_URL": "https://download.pytorch.org/whl/cu129",
    }
    assert got.inputs == inputs_hash(
        got.context_digest, got.requirements, ("docker-bake.hcl",), "complete-cuda", got.variables
    )
    assert got.ca_path is None
