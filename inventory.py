# Hosts and groups only; the data lives in group_data/.
#
# The fleet comes from a TOML file: $SAGEFLEET_FLEET, else ./fleet.toml. With
# neither, this machine (@local) is the single build host, so the main job runs
# out of the box. File format (docs/fleet.md):
#
#   [groups]
#   build_hosts = ["build-1"]
#   gpu_nodes = ["gpu-1", "gpu-2"]
#   hopper = ["gpu-1"]
#
#   [hosts.build-1]            # optional per-host data (ssh_* keys, overrides)
#   ssh_hostname = "10.0.0.5"
from sagefleet.fleet import FleetError as _FleetError
from sagefleet.fleet import load_fleet as _load_fleet

try:
    globals().update(_load_fleet())
except _FleetError as _e:
    raise SystemExit(f"sagefleet: {_e}") from None

# Validate every host's pins before pyinfra opens the first connection.
from pyinfra.context import ctx_state as _ctx_state  # noqa: E402

from sagefleet.validation import register as _register  # noqa: E402

if _ctx_state.isset():
    _register(_ctx_state.get())
