"""What following a bake's progress adds to the bake: `python bench/bake_follow_end.py`.

On a machine prepared by `scripts/setup-engine`: one SSH test host; the "bake" is a
command that writes a fresh log line and sleeps 2.0-2.9 s, run through
``bake_with_progress`` (1 s polls, as a deploy does). The figure is its wall time
less the sleep: the first-line read, the follower's stop and the last poll.

With --old REV the same is measured, alternating, with REV's
``sagefleet/operations/progress.py`` (``git show``; e.g. c15da79, whose follower was
killed mid-poll instead of stopped between polls).
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tomllib  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "fleet")]

from harness import Fleet  # noqa: E402
from pyinfra.api import Config, Inventory, State  # noqa: E402
from pyinfra.api.connect import connect_all  # noqa: E402

from sagefleet.operations import progress  # noqa: E402


def old_module(rev: str, work: Path) -> types.ModuleType:
    src = subprocess.run(
        ["git", "show", f"{rev}:sagefleet/operations/progress.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = work / "progress_old.py"
    path.write_text(src.replace("from ..", "from sagefleet."))
    spec = importlib.util.spec_from_file_location("progress_old", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--old", help="a revision to compare, alternating")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Fleet(n_ssh=1) as fleet:
        trees = {"this tree": progress}
        if args.old:
            trees[args.old] = old_module(args.old, Path(tmp))
        with open(fleet.fleet_file, "rb") as f:
            data = tomllib.load(f)["hosts"]["gpu-1"]
        inventory = Inventory(([("gpu-1", data)], {}))
        connect_all(State(inventory, Config()))
        host = inventory.get_host("gpu-1")
        printing = types.SimpleNamespace(print_output=True, print_input=False)
        added: dict[str, list[float]] = {name: [] for name in trees}
        for i in range(args.runs):
            sleep = 2 + (i % 10) / 10
            for name, mod in trees.items():
                bake = f"printf 'sagefleet-bake {i}\\n' >/tmp/bake.log; sleep {sleep}"
                t0 = time.monotonic()
                assert mod.bake_with_progress(printing, host, bake, "/tmp/bake.log", 1.0)
                added[name].append(time.monotonic() - t0 - sleep)
        for name, times in added.items():
            ms = sorted(round(t * 1000) for t in times)
            print(
                f"{name}: added {statistics.median(ms):.0f} ms median, "
                f"{ms[0]}-{ms[-1]} ms, {len(ms)} bakes"
            )


if __name__ == "__main__":
    main()
