"""The fleet file: which hosts exist and which groups they are in.

inventory.py stays a list of hosts and groups; this module reads them from a TOML
file so operators do not edit Python to add a host. Pure: imports no pyinfra.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

FLEET_ENV = "SAGEFLEET_FLEET"
OFFLINE_ENV = "SAGEFLEET_OFFLINE"
DEFAULT_FLEET_FILE = "fleet.toml"
_GROUP_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_HOST_RE = re.compile(r"^(@local|@docker/[A-Za-z0-9_.-]+|[A-Za-z0-9][A-Za-z0-9_.:-]*)$")


class FleetError(ValueError):
    """A fleet file that cannot be used; the message names the file and the key."""


def fleet_path(env: dict[str, str] | None = None, cwd: str | None = None) -> Path | None:
    """The fleet file in use: $SAGEFLEET_FLEET, else ./fleet.toml if it exists, else None."""
    env = os.environ if env is None else env
    if env.get(FLEET_ENV):
        return Path(env[FLEET_ENV])
    candidate = Path(cwd or os.getcwd()) / DEFAULT_FLEET_FILE
    return candidate if candidate.exists() else None


def default_fleet() -> dict[str, Any]:
    """No fleet configured: this machine is the one build host."""
    return {"build_hosts": ["@local"]}


def load_fleet(path: Path | None | str = "") -> dict[str, Any]:
    """Return pyinfra inventory groups: {group: [host | (host, data), ...]}."""
    if path == "":
        path = fleet_path()
    groups = default_fleet() if path is None else _load_file(Path(path))
    if os.environ.get(OFFLINE_ENV) == "1":
        hosts = {h if isinstance(h, str) else h[0] for members in groups.values() for h in members}
        groups.setdefault("offline", sorted(hosts))
    return groups


def inventory_groups() -> dict[str, Any]:
    """For inventory.py: the fleet's groups, or exit with the FleetError's message.
    The offline group carries the run's data (``offline_group_data``: wheelhouse URL,
    pip CA bundle from the environment); group_data files override it."""
    from .offline import offline_group_data

    try:
        groups = load_fleet()
    except FleetError as e:
        raise SystemExit(f"sagefleet: {e}") from None
    if "offline" in groups:
        groups["offline"] = (groups["offline"], offline_group_data())
    return groups


def _load_file(path: Path) -> dict[str, Any]:
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise FleetError(
            f"{path}: fleet file not found (set {FLEET_ENV} or create {DEFAULT_FLEET_FILE})"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise FleetError(f"{path}: not valid TOML: {e}") from None
    return parse_fleet(doc, str(path))


def parse_fleet(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """Validate a parsed fleet document and turn it into pyinfra groups."""
    unknown = set(doc) - {"groups", "hosts"}
    if unknown:
        raise FleetError(
            f"{source}: unknown table(s) {sorted(unknown)}; expected [groups] and [hosts.NAME]"
        )
    groups = doc.get("groups", {})
    host_data = doc.get("hosts", {})
    if not isinstance(groups, dict) or not groups:
        raise FleetError(f"{source}: groups: at least one group of hosts is required")
    seen: set[str] = set()
    out: dict[str, list[Any]] = {}
    for group, hosts in groups.items():
        if not _GROUP_RE.match(group):
            raise FleetError(f"{source}: groups.{group}: group names are lower_snake_case")
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise FleetError(f"{source}: groups.{group} = {hosts!r}: expected a list of host names")
        for host in hosts:
            if not _HOST_RE.match(host):
                raise FleetError(f"{source}: groups.{group}: host name {host!r} is not valid")
            seen.add(host)
    if not isinstance(host_data, dict):
        raise FleetError(f"{source}: hosts: expected [hosts.NAME] tables of host data")
    for host, data in host_data.items():
        if host not in seen:
            raise FleetError(f"{source}: hosts.{host}: host is in no group")
        if not isinstance(data, dict):
            raise FleetError(f"{source}: hosts.{host}: expected a table of host data")
    for group, hosts in groups.items():
        out[group] = [(h, _strict_host_keys(h, host_data.get(h, {}))) for h in hosts]
    return out


def _strict_host_keys(host: str, data: dict[str, Any]) -> dict[str, Any]:
    """SSH hosts of the fleet file: an unknown or changed host key is refused
    (pyinfra's default trusts a new key); the host's own table may say
    ssh_strict_host_key_checking = "accept-new" (trust on first use)."""
    data = dict(data)
    if not host.startswith("@"):
        data.setdefault("ssh_strict_host_key_checking", "yes")
    return data
