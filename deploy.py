# Entry point: `pyinfra inventory.py deploy.py` (add --dry --diff to preview).
# No logic here: the order of operations lives in sagefleet.deploys.
from sagefleet.deploys.build import build_image

build_image()  # on build hosts; other hosts have nothing to do
