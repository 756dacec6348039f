"""Test deploy: the registry login of a GPU node and nothing else.

The real code path (sagefleet.deploys.rollout.registry_login, the login from
$SAGEFLEET_REGISTRY_USER / $SAGEFLEET_REGISTRY_PASSWORD_FILE) without a registry, a
pull or a service, so test_security can grep everything a run prints for the secret.
"""

from pyinfra import host

from sagefleet.deploys.rollout import registry_login
from sagefleet.pins import host_pins

registry_login(host_pins(host), "registry.test:5000")
