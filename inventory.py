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
from sagefleet.fleet import inventory_groups as _inventory_groups
from sagefleet.validation import validate_before_connect as _validate_before_connect

globals().update(_inventory_groups())
# Validate every host's pins before pyinfra opens the first connection.
_validate_before_connect()
