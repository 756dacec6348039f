"""sagefleet.pins: every key of group_data reaches its field of Pins (no value dropped or
replaced on the way), every key's type is checked under its own name, and each numeric
bound holds exactly at its edge."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from test_pins import GROUP, KNOWN_KEYS, PinError, load, merged, sources, validate

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
# reason of its type check.
BAD_TYPE = [  # (key, a value of the wrong type, the message after the file name)
    (
        "allow_sensitive_volumes",
        1.5,
        "allow_sensitive_volumes = 1.5: must be True or False, not float",
    ),
    ("bake_cache_ref", 1.5, "bake_cache_ref = 1.5: must be a string, not float"),
    ("bake_files", 1.5, "bake_files = 1.5: must be a list of strings, not float"),
    ("bake_target", 1.5, "bake_target = 1.5: must be a string, not float"),
    ("bake_variables", 1.5, "bake_variables = 1.5: must be a dict of NAME -> value"),
    (
        "build_context",
        1.5,
        "build_context = 1.5: must be None, a list of relative paths, {'dir': PATH} or {'git': URL, 'ref': REF}",
    ),
    ("build_dir", 1.5, "build_dir = 1.5: must be a string, not float"),
    ("cuda_version", 1.5, "cuda_version = 1.5: must be a string, not float"),
    ("extra_requirements", 1.5, "extra_requirements = 1.5: must be a list of strings, not float"),
    ("force_rebuild", 1.5, "force_rebuild = 1.5: must be True or False, not float"),
    ("gpu_access", 1.5, "gpu_access = 1.5: must be one of auto, nvidia-runtime, cdi, none"),
    ("health_timeout_s", "x", "health_timeout_s = 'x': must be a number"),
    ("image_tag", 1.5, "image_tag = 1.5: must be a string, not float"),
    ("local_wheelhouse", 1.5, "local_wheelhouse = 1.5: must be True or False, not float"),
    ("min_free_disk_gb", "x", "min_free_disk_gb = 'x': must be a non-negative number"),
    ("pip_ca_bundle", 1.5, "pip_ca_bundle = 1.5: must be a string, not float"),
    ("probe_quick", 1.5, "probe_quick = 1.5: must be True or False, not float"),
    ("probe_timeout_s", "x", "probe_timeout_s = 'x': must be a number"),
    (
        "probe_workload_seq_lens",
        1.5,
        "probe_workload_seq_lens = 1.5: must be a list of sequence lengths, not float",
    ),
    ("python_version", 1.5, "python_version = 1.5: must be a string, not float"),
    ("registry_auth_file", 1.5, "registry_auth_file = 1.5: must be a string, not float"),
    ("require_sageattn3", 1.5, "require_sageattn3 = 1.5: must be True or False, not float"),
    ("requirements_path", 1.5, "requirements_path = 1.5: must be a string, not float"),
    ("rollout_auto_rollback", 1.5, "rollout_auto_rollback = 1.5: must be True or False, not float"),
    ("rollout_batch_size", 1.5, "rollout_batch_size = 1.5: must be a whole number >= 1"),
    ("rollout_canary_group", 1.5, "rollout_canary_group = 1.5: must be a string, not float"),
    ("sage_release_base", 1.5, "sage_release_base = 1.5: must be a string, not float"),
    ("sage_wheel_platform", 1.5, "sage_wheel_platform = 1.5: must be a string, not float"),
    ("sage_wheel_python_tag", 1.5, "sage_wheel_python_tag = 1.5: must be a string, not float"),
    ("sage_wheels", 1.5, "sage_wheels = 1.5: must be a dict of name -> pins, not float"),
    ("service_cli_args", 1.5, "service_cli_args = 1.5: must be a list of strings, not float"),
    ("service_listen", 1.5, "service_listen = 1.5: must be a string, not float"),
    ("service_name", 1.5, "service_name = 1.5: must be a string, not float"),
    ("service_network", 1.5, "service_network = 1.5: must be a string, not float"),
    ("service_port", 1.5, "service_port = 1.5: must be a TCP port number (1-65535)"),
    ("service_restart", 1.5, "service_restart = 1.5: must be a string, not float"),
    ("service_volumes", 1.5, "service_volumes = 1.5: must be a dict {host path: container path}"),
    ("state_dir", 1.5, "state_dir = 1.5: must be a string, not float"),
    ("torch_index_url", 1.5, "torch_index_url = 1.5: must be a string, not float"),
    ("torch_version", 1.5, "torch_version = 1.5: must be a string, not float"),
    ("verify_max_rel_l1", "x", "verify_max_rel_l1 = 'x': must be a number"),
    ("verify_min_cosine", 1.5, "verify_min_cosine = 1.5: must be between 0.0 and 1.0"),
    ("verify_on_nodes", 1.5, "verify_on_nodes = 1.5: must be True or False, not float"),
    ("verify_torch", 1.5, "verify_torch = 1.5: must be True or False, not float"),
]


def test_bad_type_cases_cover_every_key():
    assert {key for key, _, _ in BAD_TYPE} == KNOWN_KEYS


@pytest.mark.parametrize(("key", "value", "message"), BAD_TYPE)
def test_bad_type_is_refused_under_its_own_name(key, value, message):
    with pytest.raises(PinError) as info:
        validate(merged({key: value}), sources({key: value}))
    assert str(info.value) == f"{B}: {message}"


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
