# The bare-pyinfra floor: what any pyinfra deploy of this shape costs. It renders
# the same template with the same data to the same file (files.template: File,
# Directory and Sha1File facts) and runs one command fact (the image label).
# The template data comes precomputed in a JSON file (bench/run.py writes it).
import json
import os
import shlex

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import files

_ctx = json.load(open(os.environ["BENCH_FLOOR_CONTEXT"]))
_build_dir = "/opt/sagefleet/build"
_ref = f"{host.data.bake_variables['REGISTRY_URL']}/comfyui-docker/complete-cuda:latest"

files.template(
    name="Render extra-requirements.txt",
    src=_ctx["template"],
    dest=f"{_build_dir}/context/services/comfy/complete/extra-requirements.txt",
    mode="644",
    jinja_env_kwargs={"trim_blocks": True, "lstrip_blocks": True},
    **_ctx["data"],
)
host.get_fact(
    Command,
    "docker image inspect -f '{{index .Config.Labels \"org.sagefleet.inputs\"}}' "
    + shlex.quote(_ref),
)
