# Entry point of one rollout step: `python -m sagefleet.rollout` runs
#   pyinfra -y inventory.py rollout.py --limit <batch> --data rollout_action=... --data target_image=...
# No logic here: build hosts publish (build, verify, push), GPU nodes pull the
# digest and (re)start the service (sagefleet.deploys.rollout). docs/rollout.md.
from sagefleet.deploys.rollout import rollout_host

rollout_host()
