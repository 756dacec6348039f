"""How the service runs on GPU nodes and how a rollout reaches them.

All keys are optional (the defaults are ServicePins'), so data written before the
rollout existed still validates. Pure: imports no pyinfra.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

from . import files, limits, paths
from .check import NAME, Checker

# (pattern, what a value must be) per key checked against a pattern.
_SERVICE_NAME = (
    re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}"),
    "a container name matching [a-zA-Z0-9][a-zA-Z0-9_.-]*",
)
_RESTART = (
    re.compile(r"(no|always|unless-stopped|on-failure(:[0-9]+)?)"),
    "a Docker restart policy (no, always, unless-stopped, on-failure[:N])",
)
_GROUP = (NAME, "a group name")
# CLI_ARGS is word-split by the image's shell: one option or value per item, no spaces.
_CLI_ARG = re.compile(r"[A-Za-z0-9_.,:=/+-]+")
# How containers get the GPU (sagefleet.gpu_access.choose).
GPU_ACCESS_MODES = ("auto", "nvidia-runtime", "cdi", "none")


@dataclass(frozen=True)
class ServicePins:
    """The ComfyUI service on GPU nodes, and the rollout's batches (docs/rollout.md)."""

    state_dir: str = "/var/lib/sagefleet"
    registry_auth_file: str | None = None
    service_name: str = "comfyui"
    service_port: int = 8188
    service_listen: str = "127.0.0.1"
    service_restart: str = "unless-stopped"
    service_volumes: tuple[tuple[str, str], ...] = ()
    allow_sensitive_volumes: bool = False
    service_cli_args: tuple[str, ...] = ()
    health_timeout_s: float = 60.0
    rollout_batch_size: int = 2
    rollout_canary_group: str = "canary"
    verify_on_nodes: bool = True
    # "auto": the NVIDIA runtime, else CDI, else a GPU node is refused; or one pinned; "none"
    gpu_access: str = "auto"
    service_network: str | None = None  # None: the default bridge with -p; "host": no -p
    rollout_auto_rollback: bool = True  # a failed batch goes back to each node's previous digest


SERVICE_KEYS = tuple(f.name for f in fields(ServicePins))


def check_service(c: Checker, data: Mapping[str, object], own: Iterable[str] = ()) -> ServicePins:
    """The service keys, in the order of group_data/all.py (missing: the default).

    + own: sagefleet's other directories on the host (build_dir), which a service
      volume may not expose (sagefleet.pins.paths)
    """
    defaults = ServicePins()

    def get(key: str) -> object:
        return data.get(key, getattr(defaults, key))

    state_dir = c.abs_path("state_dir", get("state_dir"))
    if reason := paths.directory_refusal(state_dir):
        c.fail("state_dir", state_dir, reason)
    auth = get("registry_auth_file")
    auth = None if auth is None else c.abs_path("registry_auth_file", auth)
    if auth is not None and (reason := files.auth_file_refusal(auth)):
        c.fail("registry_auth_file", auth, reason)
    name = c.matching("service_name", get("service_name"), *_SERVICE_NAME)
    port = get("service_port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        c.fail("service_port", port, "must be a TCP port number (1-65535)")
    listen = _listen(c, get("service_listen"))
    restart = c.matching("service_restart", get("service_restart"), *_RESTART)
    allow = c.boolean("allow_sensitive_volumes", get("allow_sensitive_volumes"))
    volumes = _volumes(c, get("service_volumes"), None if allow else (*own, state_dir))
    args = c.string_list("service_cli_args", get("service_cli_args"))
    for i, arg in enumerate(args):
        c.match(f"service_cli_args[{i}]", arg, _CLI_ARG, "one option or value without spaces")
    health = c.number("health_timeout_s", get("health_timeout_s"), 1.0, None)
    size = get("rollout_batch_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        c.fail("rollout_batch_size", size, "must be a whole number >= 1")
    canary = c.matching("rollout_canary_group", get("rollout_canary_group"), *_GROUP)
    return ServicePins(
        state_dir=state_dir,
        registry_auth_file=auth,
        service_name=name,
        service_port=port,
        service_listen=listen,
        service_restart=restart,
        service_volumes=volumes,
        allow_sensitive_volumes=allow,
        service_cli_args=args,
        health_timeout_s=health,
        rollout_batch_size=size,
        rollout_canary_group=canary,
        verify_on_nodes=c.boolean("verify_on_nodes", get("verify_on_nodes")),
        gpu_access=_gpu_access(c, get("gpu_access")),
        service_network=_network(c, get("service_network")),
        rollout_auto_rollback=c.boolean("rollout_auto_rollback", get("rollout_auto_rollback")),
    )


def _gpu_access(c: Checker, value: object) -> str:
    if not isinstance(value, str) or value not in GPU_ACCESS_MODES:
        c.fail("gpu_access", value, f"must be one of {', '.join(GPU_ACCESS_MODES)}")
    return value


def _network(c: Checker, value: object) -> str | None:
    if value is None:
        return None
    return c.matching(
        "service_network",
        value,
        NAME,
        "a Docker network name (e.g. 'host'); None: the default bridge with -p PORT:PORT",
    )


def _listen(c: Checker, value: object) -> str:
    """An IP address in its normal form (where the service port is published)."""
    listen = c.string("service_listen", value)
    try:
        normal = str(ipaddress.ip_address(listen))
    except ValueError:
        c.fail("service_listen", listen, "not an IP address (e.g. '127.0.0.1' or '0.0.0.0')")
    if normal != listen:
        c.fail("service_listen", listen, f"write the address as {normal!r}")
    return listen


def _volumes(
    c: Checker, volumes: object, own: tuple[str, ...] | None
) -> tuple[tuple[str, str], ...]:
    """(host path, container path) pairs; own None: sensitive host paths allowed."""
    if not isinstance(volumes, Mapping | list | tuple):
        c.fail("service_volumes", volumes, "must be a dict {host path: container path}")
    pairs = volumes.items() if isinstance(volumes, Mapping) else volumes
    checked = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            c.fail(f"service_volumes[{i}]", pair, "must be a (host path, container path) pair")
        src, dst = pair
        where = f"service_volumes[{limits.shown(src, 60)}]"
        checked.append((c.abs_path(where, src), c.abs_path(where, dst)))
        if own is not None and (reason := paths.volume_refusal(src, own)):
            c.fail(where, src, reason)
    return tuple(checked)
