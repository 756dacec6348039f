"""The allow-list: every key sagefleet reads, and the connector keys it supports.

pyinfra merges group data, host data (the fleet file) and ``--data`` into one dict
per host, and reads more from it than sagefleet does: connector settings
(``ssh_*``, ``docker_*``) and, for any key starting with ``_``, arguments of every
operation (``_sudo``, ``_shell_executable``...). So a key that is not declared here
is refused, whatever its prefix; a declared key has a type and character rules,
checked after the detailed checks of sagefleet.pins as a net under them (and as
the only check of connector keys). This is the one place keys are declared.

Pure: imports no pyinfra.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn

__all__ = [
    "CONNECTOR_KEYS",
    "KEYS",
    "SAGEFLEET_KEYS",
    "WHEEL_KEYS",
    "Key",
    "check",
    "refusal",
]

Fail = Callable[[str, object, str], NoReturn]

# Characters a shell (or a quoted string) would interpret; refused everywhere.
SHELL_META = frozenset("$`;&|<>'\"\\")
META_REASON = "whitespace, quotes and shell metacharacters are refused"


@dataclass(frozen=True)
class Key:
    """One allowed key: its types, the characters of every string in its value
    (``chars``: a regex each must match whole; ``rule`` says it in words)."""

    types: tuple[type, ...]
    chars: str | None = None
    rule: str = ""
    required: bool = False
    choices: tuple[object, ...] = ()
    low: float | None = None
    high: float | None = None
    # Values accepted only from a host's own table in the fleet file.
    fleet_file_only: tuple[object, ...] = ()
    spaces: bool = False  # a requirement may be written "triton == 3.5.0"


_NAME = r"[A-Za-z0-9._-]+"
_PATH = r"[A-Za-z0-9._/-]+"
_URL = r"[A-Za-z0-9._~:/%+@-]+"
_VERSION = r"[A-Za-z0-9._+!-]+"
_REF = r"[A-Za-z0-9._:/@+-]+"
_ARG = r"[A-Za-z0-9_.,:=/+-]+"
_REQ = r"[A-Za-z0-9._\[\],=<>!~ @:/+-]+"  # VCS pins: name @ git+https://...@<sha>

_S, _B, _I = (str,), (bool,), (int,)
_N = (int, float)
_L = (list, tuple)
_D = (dict, Mapping)
_NONE = (type(None),)


def _k(types, chars=None, rule="", **kw) -> Key:
    return Key(tuple(types), chars, rule, **kw)


NAME = "a name (letters, digits, . _ -)"
PATH = "a path (letters, digits, . _ / -)"
URL = "a URL without query or fragment"

# Keys sagefleet reads, in the order of group_data/all.py (also the order of checks).
SAGEFLEET_KEYS: dict[str, Key] = {
    "python_version": _k(_S, _NAME, NAME, required=True),
    "torch_version": _k(_S, _VERSION, "a version", required=True),
    "cuda_version": _k(_S, _VERSION, "a version", required=True),
    "torch_index_url": _k(_S, _URL, URL, required=True),
    "sage_release_base": _k(_S, _URL, URL, required=True),
    "sage_wheel_python_tag": _k(_S, _NAME, NAME, required=True),
    "sage_wheel_platform": _k(_S, _NAME, NAME, required=True),
    "sage_wheels": _k(
        _D, r"[A-Za-z0-9._+:-]+", "wheel names, versions, tags and digests", required=True
    ),
    "require_sageattn3": _k(_B, required=True),
    "local_wheelhouse": _k(_B, required=True),
    "extra_requirements": _k(
        _L, _REQ, "a requirement like 'triton==3.5.0'", required=True, spaces=True
    ),
    "build_dir": _k(_S, _PATH, PATH, required=True),
    "bake_target": _k(_S, _NAME, NAME, required=True),
    "bake_files": _k(_L, _PATH, PATH, required=True),
    "build_context": _k(_NONE + _L + _D, _URL, "relative paths or a git URL and ref"),
    "pip_ca_bundle": _k(_NONE + _S, _PATH, PATH),
    "min_free_disk_gb": _k(_N, required=True, low=0),
    "force_rebuild": _k(_B, required=True),
    "verify_torch": _k(_B, required=True),
    "verify_min_cosine": _k(_N, required=True, low=0, high=1),
    "verify_max_rel_l1": _k(_N, required=True, low=0),
    "probe_quick": _k(_B, required=True),
    "probe_timeout_s": _k(_N, required=True, low=1),
    "probe_workload_seq_lens": _k(_L, required=True),
    # Rollout (optional: sagefleet.pins has the defaults).
    "state_dir": _k(_S, _PATH, PATH),
    "registry_auth_file": _k(_NONE + _S, _PATH, PATH),
    "service_name": _k(_S, _NAME, NAME),
    "service_port": _k(_I, low=1, high=65535),
    "service_listen": _k(_S, r"[0-9a-fA-F.:]+", "an IP address"),
    "service_restart": _k(_S, r"[a-z:0-9-]+", "a restart policy"),
    "service_volumes": _k(_D + _L, _PATH, PATH),
    "allow_sensitive_volumes": _k(_B),
    "service_cli_args": _k(_L, _ARG, "a CLI option or value"),
    "health_timeout_s": _k(_N, low=1),
    "rollout_batch_size": _k(_I, low=1),
    "rollout_canary_group": _k(_S, _NAME, NAME),
    "verify_on_nodes": _k(_B),
    "rollout_auto_rollback": _k(_B),
    "gpu_access": _k(_S, _NAME, NAME),
    "service_network": _k(_NONE + _S, _NAME, NAME),
    # The bake project (as bake itself reports it: sagefleet.bake).
    "bake_variables": _k(
        _D, r"[A-Za-z0-9._:/@+=,-]+", "a bake variable name or value", required=True
    ),
    "requirements_path": _k(_NONE + _S, _PATH, PATH),
    "bake_cache_ref": _k(_NONE + _S, _REF, "a Docker image reference"),
    "image_tag": _k(_NONE + _S, _REF, "a Docker image reference"),
}

# The entries of one sage_wheels item; fingerprint (docs/probe.md) and sha256
# (sagefleet.pins.hashes) are optional.
WHEEL_KEYS = ("version", "release_tag", "build_tag", "fingerprint", "sha256")

_HOST = r"[A-Za-z0-9][A-Za-z0-9._:-]*"
_SSH_PATH = r"[A-Za-z0-9._/~-]+"

# Connector keys sagefleet supports (pyinfra's ssh and docker connectors).
CONNECTOR_KEYS: dict[str, Key] = {
    "ssh_hostname": _k(_S, _HOST, "a host name or IP address"),
    "ssh_port": _k(_I, low=1, high=65535),
    "ssh_user": _k(_S, r"[A-Za-z_][A-Za-z0-9_.-]*", "a user name"),
    "ssh_key": _k(_S, _SSH_PATH, "a path (letters, digits, . _ / ~ -)"),
    "ssh_known_hosts_file": _k(_S, _SSH_PATH, "a path (letters, digits, . _ / ~ -)"),
    # Strict by default (sagefleet.fleet); "accept-new" is trust on first use.
    "ssh_strict_host_key_checking": _k(
        _S, choices=("yes", "accept-new"), fleet_file_only=("accept-new",)
    ),
    "ssh_allow_agent": _k(_B),
    "ssh_look_for_keys": _k(_B),
    "ssh_connect_retries": _k(_I, low=0, high=10),
    "ssh_connect_retry_min_delay": _k(_N, low=0, high=60),
    "ssh_connect_retry_max_delay": _k(_N, low=0, high=60),
    "ssh_file_transfer_protocol": _k(_S, choices=("sftp", "scp")),
    "docker_identifier": _k(_S, _REF, "a container ID or image reference"),
    "docker_platform": _k(_S, r"[a-z0-9/]+", "a platform like linux/amd64"),
    "docker_architecture": _k(_S, r"[a-z0-9]+", "an architecture like amd64"),
}

KEYS: dict[str, Key] = {**SAGEFLEET_KEYS, **CONNECTOR_KEYS}

# Keys pyinfra would read that sagefleet refuses, and why.
_REFUSED = {
    "ssh_password": "secrets do not belong in data (use an SSH agent or ssh_key)",
    "ssh_key_password": "secrets do not belong in data (use an SSH agent)",
    "ssh_config_file": "an SSH config can run commands on this machine (ProxyCommand); "
    "not supported",
    "ssh_paramiko_connect_kwargs": "arbitrary paramiko arguments are not supported",
    "ssh_forward_agent": "forwarding the agent lends this machine's keys to the host; "
    "not supported",
}
_CONNECTOR_PREFIXES = (
    "ssh_",
    "winrm_",
    "docker_",
    "dockerssh_",
    "chroot_",
    "podman_",
    "terraform_",
    "vagrant_",
    "local_",
)


def refusal(key: object) -> str | None:
    """Why key is not allowed in data, or None when it is declared."""
    if not isinstance(key, str):
        return f"keys must be strings, not {type(key).__name__}"
    if key in KEYS:
        return None
    if key in _REFUSED:
        return _REFUSED[key]
    if key.startswith("_"):
        return (
            "pyinfra applies '_' keys in data as arguments of every operation "
            "(e.g. _sudo, _shell_executable); refused"
        )
    close = difflib.get_close_matches(key, list(KEYS), n=1, cutoff=0.75)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    if key.startswith(_CONNECTOR_PREFIXES):
        return "connector key not supported by sagefleet (see sagefleet/pins/keys.py)"
    return "unknown key (not a key of group_data/all.py)"


_TYPE_WORDS = {
    str: "a string",
    bool: "True or False",
    int: "a whole number",
    float: "a number",
    list: "a list",
    tuple: "a list",
    dict: "a dict",
    Mapping: "a dict",
    type(None): "None",
}


def _type_ok(value: object, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def check(key: str, value: object, fail: Fail, from_fleet_file: bool = False) -> None:
    """Refuse key unless declared, then value unless it has the key's type, choices,
    bounds and characters. The value has passed sagefleet.pins.limits already."""
    reason = refusal(key)
    if reason:
        fail(str(key), value, reason)
    spec = KEYS[key]
    if not _type_ok(value, spec.types):
        words = " or ".join(dict.fromkeys(_TYPE_WORDS[t] for t in spec.types))
        fail(key, value, f"must be {words}, not {type(value).__name__}")
    if spec.choices and value not in spec.choices:
        fail(key, value, f"must be one of {', '.join(map(repr, spec.choices))}")
    if value in spec.fleet_file_only and not from_fleet_file:
        fail(key, value, "may only be set per host in the fleet file")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if (spec.low is not None and value < spec.low) or (
            spec.high is not None and value > spec.high
        ):
            high = "" if spec.high is None else f" and at most {spec.high:g}"
            fail(key, value, f"must be at least {spec.low:g}{high}")
    if spec.chars is None:
        return
    allowed = re.compile(spec.chars)
    stack: list[tuple[str, object]] = [(key, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, Mapping):
            for sub_key, sub_value in item.items():
                stack.append((where, sub_key))
                stack.append((f"{where}.{sub_key}", sub_value))
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}[{i}]", sub) for i, sub in enumerate(item))
        elif isinstance(item, str):
            _chars(where, item, allowed, spec, fail)


def _chars(where: str, text: str, allowed: re.Pattern[str], spec: Key, fail: Fail) -> None:
    for ch in text:
        if ch in SHELL_META or not ch.isprintable() or (ch.isspace() and not spec.spaces):
            fail(where, text, f"contains {ch!r}: {META_REASON}")
    if not allowed.fullmatch(text):
        # A character wrong anywhere (not only where the value starts).
        bad = next((ch for ch in text if not allowed.fullmatch("a" + ch)), None)
        if bad is None:
            fail(where, text, f"not {spec.rule}")
        fail(where, text, f"contains {bad!r}, which is not allowed in {spec.rule}")
