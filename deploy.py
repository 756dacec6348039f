# Entry point: `pyinfra inventory.py deploy.py` (add --dry --diff to preview).
# No logic here: the order of operations lives in sagefleet.deploys.
from sagefleet.deploys.build import deploy_build_hosts

deploy_build_hosts()
