# Entry point of one rollout step: `python -m sagefleet.rollout` runs
#   pyinfra -y inventory.py rollout.py --limit <batch> --data rollout_action=... --data target_image=...
# No logic here: build hosts publish (build, verify, push), GPU nodes pull the
# digest and (re)start the service (sagefleet.deploys). docs/rollout.md.
from pyinfra import host

from sagefleet.deploys import publish_image, publish_preview, rollout_node

if "build_hosts" in host.groups and host.data.get("rollout_action") == "publish":
    publish_image()
elif "build_hosts" in host.groups and host.data.get("rollout_action") == "preview":
    publish_preview()
elif "gpu_nodes" in host.groups and host.data.get("rollout_action") != "publish":
    rollout_node()
