# Entry point: `pyinfra inventory.py deploy.py` (add --dry --diff to preview).
# No logic here: the order of operations lives in sagefleet.deploys.
from pyinfra import host

from sagefleet.deploys import build_image

if "build_hosts" in host.groups:
    build_image()
