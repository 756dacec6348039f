"""sagefleet.pins: every key of group_data reaches its field of Pins (no value dropped or
replaced on the way), every key's type is checked under its own name, and each numeric
bound holds exactly at its edge."""

from __future__ import annotations

import dataclasses

import pytest
from test_pins import GROUP, KNOWN_KEYS, PinError, load, merged, sources, validate

B = GROUP
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
    "registry_auth_file": "/root/auth.json",
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


# Every key, given bytes: refused under its own name with the reason of its type check.
BAD_TYPE = [
    ("bake_cache_ref", f"{B}: bake_cache_ref = b'x': must be a string, not bytes"),
    ("bake_variables", f"{B}: bake_variables = b'x': must be a dict of NAME -> value"),
    ("image_tag", f"{B}: image_tag = b'x': must be a string, not bytes"),
    ("requirements_path", f"{B}: requirements_path = b'x': must be a string, not bytes"),
    (
        "rollout_auto_rollback",
        f"{B}: rollout_auto_rollback = b'x': must be True or False, not bytes",
    ),
    ("bake_files", f"{B}: bake_files = b'x': must be a list of strings, not bytes"),
    ("bake_target", f"{B}: bake_target = b'x': must be a string, not bytes"),
    (
        "build_context",
        f"{B}: build_context = b'x': must be None, a list of relative paths, {{'dir': PATH}} or {{'git': URL, 'ref': REF}}",
    ),
    ("build_dir", f"{B}: build_dir = b'x': must be a string, not bytes"),
    ("cuda_version", f"{B}: cuda_version = b'x': must be a string, not bytes"),
    ("extra_requirements", f"{B}: extra_requirements = b'x': must be a list of strings, not bytes"),
    ("force_rebuild", f"{B}: force_rebuild = b'x': must be True or False, not bytes"),
    ("health_timeout_s", f"{B}: health_timeout_s = b'x': must be a number"),
    ("local_wheelhouse", f"{B}: local_wheelhouse = b'x': must be True or False, not bytes"),
    ("min_free_disk_gb", f"{B}: min_free_disk_gb = b'x': must be a non-negative number"),
    ("pip_ca_bundle", f"{B}: pip_ca_bundle = b'x': must be a string, not bytes"),
    ("probe_quick", f"{B}: probe_quick = b'x': must be True or False, not bytes"),
    ("probe_timeout_s", f"{B}: probe_timeout_s = b'x': must be a number"),
    (
        "gpu_access",
        f"{B}: gpu_access = b'x': must be one of auto, nvidia-runtime, cdi, none",
    ),
    ("service_network", f"{B}: service_network = b'x': must be a string, not bytes"),
    (
        "probe_workload_seq_lens",
        f"{B}: probe_workload_seq_lens = b'x': must be a list of sequence lengths, not bytes",
    ),
    ("python_version", f"{B}: python_version = b'x': must be a string, not bytes"),
    ("registry_auth_file", f"{B}: registry_auth_file = b'x': must be a string, not bytes"),
    ("require_sageattn3", f"{B}: require_sageattn3 = b'x': must be True or False, not bytes"),
    ("rollout_batch_size", f"{B}: rollout_batch_size = b'x': must be a whole number >= 1"),
    ("rollout_canary_group", f"{B}: rollout_canary_group = b'x': must be a string, not bytes"),
    ("sage_release_base", f"{B}: sage_release_base = b'x': must be a string, not bytes"),
    ("sage_wheel_platform", f"{B}: sage_wheel_platform = b'x': must be a string, not bytes"),
    ("sage_wheel_python_tag", f"{B}: sage_wheel_python_tag = b'x': must be a string, not bytes"),
    ("sage_wheels", f"{B}: sage_wheels = b'x': must be a dict of name -> pins, not bytes"),
    ("service_cli_args", f"{B}: service_cli_args = b'x': must be a list of strings, not bytes"),
    ("service_name", f"{B}: service_name = b'x': must be a string, not bytes"),
    ("service_port", f"{B}: service_port = b'x': must be a TCP port number (1-65535)"),
    ("service_restart", f"{B}: service_restart = b'x': must be a string, not bytes"),
    (
        "service_volumes",
        f"{B}: service_volumes = b'x': must be a dict {{host path: container path}}",
    ),
    ("state_dir", f"{B}: state_dir = b'x': must be a string, not bytes"),
    ("torch_index_url", f"{B}: torch_index_url = b'x': must be a string, not bytes"),
    ("torch_version", f"{B}: torch_version = b'x': must be a string, not bytes"),
    ("verify_max_rel_l1", f"{B}: verify_max_rel_l1 = b'x': must be a number"),
    ("verify_min_cosine", f"{B}: verify_min_cosine = b'x': must be a number"),
    ("verify_on_nodes", f"{B}: verify_on_nodes = b'x': must be True or False, not bytes"),
    ("verify_torch", f"{B}: verify_torch = b'x': must be True or False, not bytes"),
]


def test_bad_type_cases_cover_every_key():
    assert {key for key, _ in BAD_TYPE} == KNOWN_KEYS


@pytest.mark.parametrize(("key", "message"), BAD_TYPE)
def test_bad_type_is_refused_under_its_own_name(key, message):
    with pytest.raises(PinError) as info:
        validate(merged({key: b"x"}), sources({key: b"x"}))
    assert str(info.value) == message


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
