"""The no-change rollout against the no-change deploy (issue 9): `python bench/rollout_bench.py`.

On a machine prepared by `scripts/setup-engine` + `scripts/setup-registry`, this sets up
everything it measures and tears it down again:

1. a rollout fleet: build-1 + gpu-1..N, each with its own dockerd (as the rollout
   fleet test), a real registry (TLS + htpasswd), the offline image built once and
   rolled out once (the converge, not measured);
2. a deploy fleet: N shared-engine build hosts (bench/benchfleet.py), converged once;
3. measured, alternating, --runs times: the no-change deploy of N hosts
   (`pyinfra inventory.py deploy.py`), the no-change rollout at each size
   (`python -m sagefleet.rollout`: publish + every node, default pins: canary
   + batches of rollout_batch_size), and, with --old REV, the same rollout with the
   code of REV from a git worktree (REV must accept today's pins: commits before
   bake_variables, such as fb408f5 or 86c1adb, refuse them).

Every measured run must be a no-change run (deploy: pyinfra's totals; rollout: every
node "unchanged" in the summary JSON), else the bench stops. Writes
bench/rollout-results.json and docs/benchmarks-rollout.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "tests" / "fleet"))

import report  # noqa: E402
import run as deploy_bench  # noqa: E402
from benchfleet import SharedEngineFleet, harness  # noqa: E402

OUT_JSON = BENCH / "rollout-results.json"
OUT_DOC = ROOT / "docs" / "benchmarks-rollout.md"


def log(msg: str) -> None:
    print(f"[rollout-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def subset_fleet(fleet: harness.Fleet, n: int, path: Path) -> Path:
    """The rollout fleet file with build-1 and gpu-1..n only (groups as the harness makes them)."""
    doc = tomllib.loads(fleet.fleet_file.read_text())
    gpu = [f"gpu-{i}" for i in range(1, n + 1)]
    groups = harness.default_groups(["build-1"], gpu)
    lines = ["[groups]"] + [f"{g} = {json.dumps(m)}" for g, m in groups.items()]
    for name in ["build-1", *gpu]:
        lines += ["", f"[hosts.{json.dumps(name)}]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in doc["hosts"][name].items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class Rollouts:
    """`python -m sagefleet.rollout` of this tree or of an old one, timed."""

    def __init__(self, env: dict[str, str], overrides: Path, work: Path) -> None:
        self.env, self.overrides, self.work = env, overrides, work

    def run(self, fleet_file: Path, tree: Path = ROOT, *args: str) -> tuple[float, dict, str]:
        summary = self.work / f"summary-{time.monotonic_ns()}.json"
        cmd = [sys.executable, "-m", "sagefleet.rollout", "--group-data", str(self.overrides)]
        cmd += ["--summary-json", str(summary), *args]
        # PYTHONPATH: an old tree's own sagefleet, not this venv's editable install.
        env = {**self.env, "SAGEFLEET_FLEET": str(fleet_file), "PYTHONPATH": str(tree)}
        t0 = time.monotonic()
        p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=1800)
        dt = time.monotonic() - t0
        doc = json.loads(summary.read_text()) if summary.exists() else {}
        return dt, doc, p.stdout + p.stderr


def rollout_fleet(stack: contextlib.ExitStack, n: int, work: Path, env: dict) -> dict:
    """The rollout fleet with registry, wheelhouse env and group_data overrides, converged."""
    from test_rollout_fleet import registry, registry_overrides, start_registry_fleet

    gw = "172.17.0.1"
    reg = stack.enter_context(registry(work / "registry", gw))
    fleet = harness.Fleet(
        n_ssh=n, n_build=1, gpu_dockerd=True, workdir=work / "rfleet", name_prefix="sf-bench"
    )
    stack.callback(fleet.down)
    t0 = time.monotonic()
    start_registry_fleet(fleet, reg, docker_timeout=600)
    overrides, pw = registry_overrides(work, reg, "health_timeout_s = 60\n")
    renv = {
        **env,
        "SAGEFLEET_REGISTRY_USER": reg["user"],
        "SAGEFLEET_REGISTRY_PASSWORD_FILE": str(pw),
    }
    up_s = time.monotonic() - t0
    log(f"rollout fleet (build-1 + {n} GPU nodes, own dockerd each) up in {up_s:.0f} s")
    r = Rollouts(renv, overrides, work)
    full = subset_fleet(fleet, n, work / f"rollout-{n}.toml")
    dt, doc, out = r.run(full, ROOT, "--batch-size", "10")
    if not doc.get("ok"):
        raise SystemExit(f"converge rollout failed:\n{out[-4000:]}")
    log(f"converge (build, push, {n} nodes pull + probe + start): {dt:.0f} s")
    return {"fleet": fleet, "rollouts": r, "up_s": up_s, "converge_s": dt}


def deploy_fleet(stack: contextlib.ExitStack, n: int, work: Path, env: dict):
    """N shared-engine build hosts (as bench/run.py), converged; returns (runner, fleet file)."""
    fleet = stack.enter_context(
        SharedEngineFleet(n_ssh=0, n_build=n, workdir=work / "dfleet", name_prefix="sf-bench")
    )
    stack.callback(fleet.remove_images)
    r = deploy_bench.Runner(fleet, work, env)
    names = fleet.names()
    r.inputs, _ = deploy_bench.expected_state(fleet, names)
    fleet_file = r.files_for(names)
    dt, _, _ = r.sagefleet(fleet_file)
    log(f"deploy fleet of {n} shared-engine build hosts converged in {dt:.0f} s")
    return r, fleet_file


def old_tree(rev: str, work: Path) -> Path:
    path = work / f"old-{rev}"
    subprocess.run(
        ["git", "worktree", "add", "-q", "--detach", str(path), rev], cwd=ROOT, check=True
    )
    deploy_bench.compile_tree(path)
    return path


def measure(args, work: Path, env: dict) -> dict:
    sizes = [int(s) for s in args.sizes.split(",")]
    n_max = max(sizes)
    res: dict = {"sizes": sizes, "runs": args.runs, "old": args.old, "times": {}}
    with contextlib.ExitStack() as stack:
        rf = rollout_fleet(stack, n_max, work, env)
        res.update(rollout_fleet_up_s=round(rf["up_s"], 1), converge_s=round(rf["converge_s"], 1))
        deploy, deploy_file = deploy_fleet(stack, args.deploy_hosts, work, env)
        old = old_tree(args.old, work) if args.old else None
        if old:
            stack.callback(
                subprocess.run, ["git", "worktree", "remove", "--force", str(old)], cwd=ROOT
            )
        files = {n: subset_fleet(rf["fleet"], n, work / f"rollout-{n}.toml") for n in sizes}
        jobs = {f"deploy {args.deploy_hosts}": lambda: _deploy(deploy, deploy_file)}
        for n in sizes:
            jobs[f"rollout {n}"] = lambda n=n: _rollout(rf["rollouts"], files[n], ROOT, n)
            if old:
                jobs[f"rollout {n} (old)"] = lambda n=n: _rollout(rf["rollouts"], files[n], old, n)
        res["times"] = {k: [] for k in jobs}
        names = list(jobs)
        for rep in range(args.runs):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                dt = jobs[name]()
                res["times"][name].append(round(dt, 2))
                log(
                    f"run {rep + 1}/{args.runs} {name:<20} {dt:6.2f} s  load {deploy_bench.loadavg()}"
                )
        res["load_end"] = deploy_bench.loadavg()
    return res


def _deploy(runner, fleet_file: Path) -> float:
    dt, ok, out = runner.sagefleet(fleet_file)
    if not ok:
        raise SystemExit(f"deploy was not a no-change run:\n{out[-4000:]}")
    return dt


def _rollout(r: Rollouts, fleet_file: Path, tree: Path, n: int) -> float:
    dt, doc, out = r.run(fleet_file, tree)
    if not doc.get("ok") or len(doc.get("unchanged", [])) != n or doc.get("moved"):
        raise SystemExit(f"rollout of {n} ({tree}) was not a no-change run:\n{out[-4000:]}")
    return dt


def render(res: dict) -> str:
    med = {k: report.median(v) for k, v in res["times"].items()}
    deploy = next(k for k in med if k.startswith("deploy"))
    lines = [
        "# Benchmark: the no-change rollout",
        "",
        f"Measured by `bench/rollout_bench.py` on {res['started']} ({res['machine']}), load "
        f"{res['load_start']} at the start, {res['load_end']} at the end (2 cores shared with "
        "other engineers' test runs: compare within this table only). Medians of "
        f"{res['runs']} runs, alternating.",
        "",
        "| run (nothing to change) | median | runs | vs " + deploy + " |",
        "|---|---:|---|---:|",
    ]
    for k, v in res["times"].items():
        lines.append(f"| {k} | {med[k]:.2f} s | {', '.join(f'{x:.2f}' for x in v)} | "
                     f"{med[k] / med[deploy]:.2f}x |")  # fmt: skip
    lines += [
        "",
        "- `deploy N`: `pyinfra -y inventory.py deploy.py` over N shared-engine build hosts "
        "(bench/benchfleet.py), as in docs/benchmarks.md.",
        "- `rollout N`: `python -m sagefleet.rollout` over build-1 + gpu-1..N (own dockerd "
        "each, real registry): publish (build host: no bake, no push) + every node, with the "
        "default pins (canary gpu-1, then batches of rollout_batch_size = 2). This tree: "
        "one State for the publish (its steps decide from one `BuildState` read) and one "
        "planned State over every node (settled nodes: only the health check runs); each "
        "node's operations decide from one `NodeState` read, which reads the engine "
        "through its API (docs/rollout.md).",
        f"- `rollout N (old)`: the same command with the code of {res['old']} (from a git "
        "worktree of that commit).",
        f"- Setup (not measured): rollout fleet up {res['rollout_fleet_up_s']} s, converge "
        f"(build, push, pull + probe + start on every node) {res['converge_s']} s.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5,20", help="GPU nodes per rollout")
    ap.add_argument("--deploy-hosts", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--old",
        default="",
        help="also time this commit's rollout (default: none; it must accept today's pins)",
    )
    args = ap.parse_args(argv)
    from sagefleet.main import bridge_gateway
    from sagefleet.offline import build_wheelhouse, serve_wheelhouse
    from tests.offline_pins import offline_pins

    problem = harness.engine_problem()
    if problem:
        raise SystemExit(f"bench: {problem}")
    harness.reap_orphans()
    deploy_bench.compile_tree(ROOT)
    res: dict = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "load_start": deploy_bench.loadavg(),
                 "machine": f"{os.cpu_count()} cores"}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="sagefleet-rbench-") as tmp:
        work = Path(tmp)
        wheelhouse = work / "wheelhouse"
        build_wheelhouse(offline_pins(), wheelhouse)
        with serve_wheelhouse(wheelhouse, bridge_gateway()) as url:
            env = {**os.environ, "SAGEFLEET_OFFLINE": "1", "SAGEFLEET_WHEELHOUSE_URL": url}
            res.update(measure(args, work, env))
    OUT_JSON.write_text(json.dumps(res, indent=1) + "\n")
    OUT_DOC.write_text(render(res))
    print(render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
