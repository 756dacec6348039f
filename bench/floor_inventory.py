# The bare-pyinfra floor's inventory: the same fleet file, read with tomllib and
# nothing else (no pin validation, no sagefleet import).
import os
import tomllib

_doc = tomllib.loads(open(os.environ["SAGEFLEET_FLEET"]).read())
build_hosts = [(name, _doc["hosts"][name]) for name in _doc["groups"]["build_hosts"]]
