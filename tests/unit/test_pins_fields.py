"""sagefleet.pins: every key of group_data reaches its field of Pins (no value dropped or
replaced on the way), every key's type is checked under its own name, and each numeric
bound holds exactly at its edge."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from test_pins import CONTEXT, GROUP, KNOWN_KEYS, PinError, load, merged, sources, validate

B = GROUP
# A Docker config.json written for this test (registry_auth_file must name a real one).
AUTH_FILE = Path(__file__).resolve().parent / "data" / "registry-auth.json"
# A valid value for every key, none of them the value in group_data/all.py.
CHANGED = {
    "python_version": "3.11",
    "torch_version": "2.8.0",
    "cuda_version": "12.8",
    "torch_index_url": "http://wheels.local:8000/torch",
    "sage_release_base": "http://wheels.local:8000/sage",
    "sage_wheel_python_tag": "cp311",
    "sage_wheel_platform": "manylinux_2_28_x86_64",
    "sage_wheels": {
        "sageattention": {
            "version": "2.1.1",
            "release_tag": "v2.1.1-build.3",
            "build_tag": "281.1",
        },
        "sageattn3": {"version": "1.0.1", "release_tag": "v2.1.1-build.3", "build_tag": "281.2"},
    },
    "require_sageattn3": True,
    "local_wheelhouse": True,
    "extra_requirements": ["piexif==1.1.3"],
    "build_dir": "/srv/build",
    "bake_target": "core-cuda",
    "bake_files": ["docker-bake.hcl", "tests/offline/offline.hcl"],
    "build_context": ["services", "docker-bake.hcl"],
    "pip_ca_bundle": "/etc/ssl/certs/ca-certificates.crt",
    "min_free_disk_gb": 12.5,
    "force_rebuild": True,
    "verify_torch": False,
    "verify_min_cosine": 0.995,
    "verify_max_rel_l1": 0.05,
    "probe_quick": False,
    "probe_timeout_s": 120,
    "probe_workload_seq_lens": [1024, 4096],
    "registry_auth_file": str(AUTH_FILE),
    "state_dir": "/srv/state",
    "service_name": "comfy-2",
    "service_port": 9000,
    "service_restart": "on-failure:3",
    "service_volumes": {"/srv/models": "/app/models"},
    "service_cli_args": ["--lowvram"],
    "health_timeout_s": 15,
    "rollout_batch_size": 3,
    "rollout_canary_group": "first",
    "verify_on_nodes": False,
    "bake_cache_ref": "registry.example:5000/team/cache",
    "bake_variables": {"TORCH_VERSION": "2.8.0", "BASE_IMAGE": "sagefleet/base:bookworm"},
    "image_tag": "registry.example:5000/team/comfy:v1.2",
    "requirements_path": "services/comfy/complete/extra-requirements.txt",
    "rollout_auto_rollback": False,
    "allow_sensitive_volumes": True,
    "service_listen": "0.0.0.0",
    "gpu_access": "cdi",
    "service_network": "host",
}
WHEEL_KEYS = {"sage_release_base", "sage_wheel_python_tag", "sage_wheel_platform", "sage_wheels"}


def fields(pins) -> dict:
    """Every field of Pins and its parts, by name (the names are the group_data keys)."""
    out = {}
    for part in (pins, pins.image, pins.build, pins.verify, pins.service):
        out.update({f.name: getattr(part, f.name) for f in dataclasses.fields(part)})
    return out


def expected(data: dict) -> dict:
    """What each key's field should hold: the value, as the immutable type Pins keeps."""
    want = {}
    for key, value in data.items():
        if key in WHEEL_KEYS:
            continue
        if key == "service_volumes":
            value = tuple(value.items())
        elif isinstance(value, list):
            value = tuple(value)
        elif key in {"min_free_disk_gb", "probe_timeout_s", "health_timeout_s",
                     "verify_min_cosine", "verify_max_rel_l1"}:  # fmt: skip
            value = float(value)
        want[key] = value
    return want


def wheels(data: dict) -> list[tuple]:
    return [
        (name, w["version"], w["release_tag"], w["build_tag"], data["sage_wheel_python_tag"],
         data["sage_wheel_platform"], data["sage_release_base"])
        for name, w in data["sage_wheels"].items()
    ]  # fmt: skip


@pytest.mark.parametrize("data", [load("all.py"), merged(CHANGED)], ids=["all.py", "changed"])
def test_every_key_reaches_its_field(data):
    pins = validate(data)
    got = fields(pins)
    for key, value in expected(data).items():
        assert got[key] == value, key
        assert type(got[key]) is type(value), key
    assert [
        (w.name, w.version, w.release_tag, w.build_tag, w.python_tag, w.platform, w.release_base)
        for w in pins.image.wheels
    ] == wheels(data)


def test_changed_covers_every_key():
    assert set(CHANGED) == KNOWN_KEYS
    base = load("all.py")
    assert [k for k in CHANGED if CHANGED[k] == base[k]] == []


# Every key, given a value of a type it does not take: refused under its own name with the
# reason of its type check. Keys that share a check, by its reason for the float 1.5:
SHARED_CHECK = {
    "must be a string, not float": [
        "bake_cache_ref", "bake_target", "build_dir", "cuda_version", "image_tag",
        "pip_ca_bundle", "python_version", "registry_auth_file", "requirements_path",
        "rollout_canary_group", "sage_release_base", "sage_wheel_platform",
        "sage_wheel_python_tag", "service_listen", "service_name", "service_network",
        "service_restart", "state_dir", "torch_index_url", "torch_version",
    ],
    "must be True or False, not float": [
        "allow_sensitive_volumes", "force_rebuild", "local_wheelhouse", "probe_quick",
        "require_sageattn3", "rollout_auto_rollback", "verify_on_nodes", "verify_torch",
    ],
    "must be a list of strings, not float": ["bake_files", "extra_requirements", "service_cli_args"],
}  # fmt: skip
# Keys with a check of their own: key -> its reason for the float 1.5.
OWN_CHECK = {
    "bake_variables": "must be a dict of NAME -> value",
    "build_context": CONTEXT,
    "gpu_access": "must be one of auto, nvidia-runtime, cdi, none",
    "probe_workload_seq_lens": "must be a list of sequence lengths, not float",
    "rollout_batch_size": "must be a whole number >= 1",
    "sage_wheels": "must be a dict of name -> pins, not float",
    "service_port": "must be a TCP port number (1-65535)",
    "service_volumes": "must be a dict {host path: container path}",
    "verify_min_cosine": "must be between 0.0 and 1.0",
}
# Numbers: key -> its reason for the string 'x'.
NOT_A_NUMBER = {
    "health_timeout_s": "must be a number",
    "min_free_disk_gb": "must be a non-negative number",
    "probe_timeout_s": "must be a number",
    "verify_max_rel_l1": "must be a number",
}
BAD_TYPE = sorted(  # (key, a value of the wrong type, the reason), by key
    [(key, 1.5, reason) for reason, keys in SHARED_CHECK.items() for key in keys]
    + [(key, 1.5, reason) for key, reason in OWN_CHECK.items()]
    + [(key, "x", reason) for key, reason in NOT_A_NUMBER.items()]
)


def test_bad_type_cases_cover_every_key():
    assert {key for key, _, _ in BAD_TYPE} == KNOWN_KEYS


@pytest.mark.parametrize(("key", "value", "reason"), BAD_TYPE, ids=[row[0] for row in BAD_TYPE])
def test_bad_type_is_refused_under_its_own_name(key, value, reason):
    with pytest.raises(PinError) as info:
        validate(merged({key: value}), sources({key: value}))
    assert str(info.value) == f"{B}: {key} = {value!r}: {reason}"


# (key, the edge value that passes, the value just past it, the reason it is refused)
EDGES = [
    ("service_port", 1, 0, "must be a TCP port number (1-65535)"),
    ("service_port", 65535, 65536, "must be a TCP port number (1-65535)"),
    ("rollout_batch_size", 1, 0, "must be a whole number >= 1"),
    ("verify_min_cosine", 1.0, 1.01, "must be between 0.0 and 1.0"),
    ("verify_min_cosine", 0.0, -0.01, "must be between 0.0 and 1.0"),
    ("verify_max_rel_l1", 0.0, -0.01, "must be at least 0.0"),
    ("probe_timeout_s", 1.0, 0.99, "must be at least 1.0"),
    ("health_timeout_s", 1.0, 0.99, "must be at least 1.0"),
    ("min_free_disk_gb", 0, -1, "must be a non-negative number"),
]


@pytest.mark.parametrize(("key", "edge", "past", "reason"), EDGES)
def test_numeric_bounds_hold_at_their_edge(key, edge, past, reason):
    assert fields(validate(merged({key: edge})))[key] == edge
    with pytest.raises(PinError) as info:
        validate(merged({key: past}), sources({key: past}))
    assert str(info.value) == f"{B}: {key} = {past!r}: {reason}"
