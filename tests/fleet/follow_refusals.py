"""Run by test_progress_connection.py in its own process (pyinfra's CLI patches with
gevent; pytest's process must not be): ``bake_with_progress`` over real SSH
connections with a bake command that ends at once (as a lock refusal does) while the
follower polls, ROUNDS times per host, all hosts at once; after each round the
host's connection must still run a command.

argv: fleet file, rounds, host names. Prints ``<host> round N`` per round and
``done`` at the end; exits 1 naming the first host whose connection hung.
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
import tomllib  # noqa: E402
import types  # noqa: E402

import gevent  # noqa: E402
from pyinfra.api import Config, Inventory, State, StringCommand  # noqa: E402
from pyinfra.api.connect import connect_all  # noqa: E402

from sagefleet.commands import LOCKED_EXIT  # noqa: E402
from sagefleet.operations.progress import bake_with_progress  # noqa: E402

POLL_S = 0.0  # the follower is always inside a poll when the bake ends
HUNG_S = 30


def rounds_on(host, rounds: int) -> None:
    printing = types.SimpleNamespace(print_output=True, print_input=False)
    for i in range(rounds):
        print(f"{host.name} round {i}", flush=True)
        # a refusal's timing varies; 0-90 ms lands in different phases of a poll
        refused = f"sleep 0.0{i % 10}; exit {LOCKED_EXIT}"
        with gevent.Timeout(HUNG_S, RuntimeError(f"{host.name} round {i}: the bake's end hung")):
            assert bake_with_progress(printing, host, refused, "/tmp/no-bake.log", POLL_S) is False
        with gevent.Timeout(HUNG_S, RuntimeError(f"{host.name} round {i}: the next command hung")):
            ok, _ = host.run_shell_command(StringCommand("true"), print_output=False)
        assert ok, f"{host.name} round {i}: true failed"


def main(fleet_file: str, rounds: int, names: list[str]) -> None:
    with open(fleet_file, "rb") as f:
        hosts = tomllib.load(f)["hosts"]
    inventory = Inventory(([(name, hosts[name]) for name in names], {}))
    connect_all(State(inventory, Config()))
    jobs = [gevent.spawn(rounds_on, inventory.get_host(name), rounds) for name in names]
    gevent.joinall(jobs, raise_error=True)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
