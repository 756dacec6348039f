"""sagefleet benchmarks (issue 6): `python bench/run.py` (or `make bench`).

On a machine prepared by `scripts/setup-engine` (the repo's .venv, a Docker engine,
the base image), this sets up everything it measures and tears it down again:

1. no-change run of `pyinfra inventory.py deploy.py` at 1/5/20/50 hosts, beside the
   bare-pyinfra floor (bench/floor_deploy.py) and the Ansible playbook
   (bench/ansible/playbook.yml), alternating, medians of --runs runs;
2. `--dry` preview at the same sizes;
3. build reuse on a real build host with its own engine: cold build, no-change
   re-run (no bake), one pin changed (which stages ran, from bake's plain log);
4. probe cost per host here (CPU), and from the H100 sample.

Writes docs/benchmarks.md, docs/benchmarks.svg and bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
from benchfleet import SharedEngineFleet, harness  # noqa: E402

PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
ANSIBLE_VENV = BENCH / ".venv-ansible"
ANSIBLE_SPEC = os.environ.get("BENCH_ANSIBLE_SPEC", "ansible-core")
# NEW_BUILD is a pin change that encodes no torch/CUDA (the agreement rule refuses a tag
# that encodes another torch than the pins, as 291.129 would: sagefleet/pins/agreement.py).
OLD_BUILD, NEW_BUILD = "290.129", "291.1"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def compile_tree(root: Path) -> None:
    """Byte-compile a tree's sagefleet/ and group_data/ before measuring it, as an
    installed package is and as every run after the first finds it. This machine sets
    PYTHONDONTWRITEBYTECODE=1: without this, each measured run would compile the
    project's modules again, a cost that grows with the code, not with the hosts."""
    dirs = [str(root / d) for d in ("sagefleet", "group_data")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *dirs], capture_output=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> dict:
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu.group(1) if cpu else platform.processor(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "docker": sh(["docker", "version", "-f", "{{.Server.Version}}"]).stdout.strip(),
        "buildx": sh(["docker", "buildx", "version"]).stdout.split()[1:2],
        "pyinfra": sh([PYINFRA, "--version"]).stdout.strip(),
    }


def ensure_ansible() -> str:
    """ansible-core from PyPI in bench/.venv-ansible (gitignored), once."""
    exe = ANSIBLE_VENV / "bin" / "ansible-playbook"
    if not exe.exists():
        log(f"installing {ANSIBLE_SPEC} into {ANSIBLE_VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(ANSIBLE_VENV)], check=True)
        subprocess.run(
            [str(ANSIBLE_VENV / "bin" / "pip"), "install", "-q", ANSIBLE_SPEC], check=True
        )
    out = sh([str(exe), "--version"]).stdout.splitlines()[0]
    return out.strip()


# --------------------------------------------------------------------------- fleet runs


class Runner:
    """The three tools against one fleet file; each call returns (seconds, ok, detail)."""

    def __init__(self, fleet: SharedEngineFleet, work: Path, env: dict[str, str]) -> None:
        self.fleet, self.work, self.env = fleet, work, env
        self.floor_ctx = work / "floor-context.json"

    def files_for(self, names: list[str]) -> Path:
        return self.fleet.write_subset(self.work / f"fleet-{len(names)}.toml", names)

    def pyinfra(self, fleet_file: Path, deploy: str, *extra: str, inventory: str = "inventory.py"):
        yes = () if "--dry" in extra else ("-y",)
        cmd = [PYINFRA, *yes, inventory, deploy, *extra]
        env = {**self.env, "SAGEFLEET_FLEET": str(fleet_file)}
        t0 = time.monotonic()
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        dt = time.monotonic() - t0
        out = p.stdout + p.stderr
        total = next((ln.split() for ln in out.splitlines() if "Grand total" in ln), [])
        # Grand total <ops> <success> <error> <no change>: no success/error = no change.
        no_change = p.returncode == 0 and (
            "--dry" in extra or (len(total) >= 5 and total[3] == "-" and total[4] == "-")
        )
        if "--dry" in extra:
            no_change = p.returncode == 0 and "bake needed" not in out
        return dt, no_change, out

    def sagefleet(self, fleet_file: Path):
        return self.pyinfra(fleet_file, "deploy.py")

    def dry(self, fleet_file: Path):
        return self.pyinfra(fleet_file, "deploy.py", "--dry")

    def floor(self, fleet_file: Path):
        dt, _ok, out = self.pyinfra(
            fleet_file, "bench/floor_deploy.py", inventory="bench/floor_inventory.py"
        )
        total = next((ln.split() for ln in out.splitlines() if "Grand total" in ln), [])
        return dt, len(total) >= 5 and total[3] == "-" and total[4] == "-", out

    def ansible(self, names: list[str], extra_vars: Path):
        inv = self.work / f"ansible-{len(names)}.yml"
        hosts = {}
        for n in names:
            h = self.fleet.hosts[n]
            hosts[n] = {
                "ansible_host": h.ip,
                "image_ref": self.fleet.image_ref(n),
                "inputs_hash": self.inputs[n],
            }
        inv.write_text(json.dumps({"build_hosts": {"hosts": hosts}}))
        cp = Path(tempfile.mkdtemp(prefix="cp-", dir="/tmp"))  # short path for ssh sockets
        ssh_args = (
            "-o ControlMaster=auto -o ControlPersist=60s "
            f"-o UserKnownHostsFile={self.fleet.known_hosts} -o StrictHostKeyChecking=yes "
            "-o IdentitiesOnly=yes"
        )
        env = {
            **os.environ,
            "ANSIBLE_FORKS": str(max(len(names), 5)),
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_SSH_ARGS": ssh_args,
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp),
            "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
            "ANSIBLE_REMOTE_USER": "root",
            "ANSIBLE_PRIVATE_KEY_FILE": str(self.fleet.key_file),
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_LOCAL_TEMP": str(self.work / "ansible-tmp"),
            "ANSIBLE_NOCOLOR": "1",
        }
        cmd = [str(ANSIBLE_VENV / "bin" / "ansible-playbook"), "-i", str(inv)]
        cmd += ["-e", f"@{extra_vars}", str(BENCH / "ansible" / "playbook.yml")]
        t0 = time.monotonic()
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        dt = time.monotonic() - t0
        # Each run starts without warm SSH masters, as pyinfra does: close this run's.
        for sock in cp.iterdir():
            sh(["ssh", "-O", "exit", "-o", f"ControlPath={sock}", "x"])
        shutil.rmtree(cp, ignore_errors=True)
        recap = [ln for ln in p.stdout.splitlines() if re.search(r"\bok=\d+", ln)]
        ok = (
            p.returncode == 0
            and len(recap) == len(names)
            and all("changed=0" in ln and "failed=0" in ln for ln in recap)
        )
        return dt, ok, p.stdout + p.stderr


def expected_state(fleet: SharedEngineFleet, names: list[str]) -> tuple[dict, dict]:
    """What each host should hold, computed as sagefleet does: (inputs per host, shared vars)."""
    from sagefleet.inputs import TEMPLATE, build_inputs
    from tests.offline_pins import offline_pins

    inputs = {}
    for n in names:
        pins = offline_pins(bake_variables=fleet.bake_variables(n))
        b = build_inputs(pins, ROOT)
        inputs[n] = b.inputs
    sage = pins.image.wheel("sageattention")
    shared = {
        "build_dir": pins.build.build_dir,
        "context_digest": b.context_digest,
        "template_path": str(TEMPLATE),
        "ca_bundle": pins.build.pip_ca_bundle,
        "probe_script": str(ROOT / "sagefleet" / "probe.py"),
        "sage_version": sage.version,
        "sage_build_tag": sage.build_tag,
        **pins.image.template_vars(),
    }
    return inputs, shared


def fleet_bench(sizes: list[int], runs: int, work: Path, env: dict, skip_ansible: bool) -> dict:
    n_max = max(sizes)
    results: dict = {"sizes": sizes, "runs": runs, "times": {}, "checks": []}
    t0 = time.monotonic()
    with SharedEngineFleet(
        n_ssh=0, n_build=n_max, workdir=work / "fleet", name_prefix="sf-bench"
    ) as fleet:
        results["fleet_up_s"] = round(time.monotonic() - t0, 1)
        log(f"{n_max} shared-engine build hosts up in {results['fleet_up_s']} s")
        try:
            r = Runner(fleet, work, env)
            names = fleet.names()
            r.inputs, shared = expected_state(fleet, names)
            template_data = {k: shared[k] for k in ("python_version", "torch_version",
                             "cuda_version", "wheels", "extra_requirements")}  # fmt: skip
            r.floor_ctx.write_text(json.dumps({"template": shared["template_path"],
                                               "data": template_data}))  # fmt: skip
            env["BENCH_FLOOR_CONTEXT"] = str(r.floor_ctx)
            extra_vars = work / "ansible-vars.json"
            extra_vars.write_text(json.dumps(shared))
            files = {n: r.files_for(names[:n]) for n in sizes}

            t1 = time.monotonic()
            dt, _, out = r.sagefleet(files[n_max])
            results["converge_s"] = round(time.monotonic() - t1, 1)
            log(f"converge of {n_max} hosts (bakes on the shared engine): {dt:.1f} s")
            dt, ok, out = r.sagefleet(files[n_max])
            if not ok:
                raise SystemExit(
                    f"second run over {n_max} hosts is not a no-change run:\n{out[-4000:]}"
                )

            tools = ["sagefleet", "floor", "dry"] + ([] if skip_ansible else ["ansible"])
            for tool in tools:
                results["times"][tool] = {str(n): [] for n in sizes}
            for rep in range(runs):
                for n in sizes:
                    order = tools[rep % len(tools) :] + tools[: rep % len(tools)]
                    for tool in order:
                        if tool == "ansible":
                            dt, ok, out = r.ansible(names[:n], extra_vars)
                        else:
                            dt, ok, out = getattr(r, tool)(files[n])
                        if not ok:
                            (work / f"fail-{tool}-{n}-{rep}.log").write_text(out)
                            raise SystemExit(f"{tool} at {n} hosts did not run clean "
                                             f"(no-change expected):\n{out[-4000:]}")  # fmt: skip
                        results["times"][tool][str(n)].append(round(dt, 3))
                        results.setdefault("load1", []).append(float(loadavg().split()[0]))
                        log(
                            f"run {rep + 1}/{runs} {n:>3} hosts {tool:<9} {dt:6.2f} s  load {loadavg()}"
                        )
            results["checks"].append(
                "every measured sagefleet/floor run ended with no change; every --dry run "
                "planned no bake; every Ansible run reported changed=0 failed=0 on every host"
            )
        finally:
            fleet.remove_images()
    return results


# --------------------------------------------------------------------------- build reuse


_STEP = re.compile(r"^#(\d+) \[(?:([\w.-]+) )?([\w.-]+) +(\d+)/(\d+)\] (.*)$")


# Which bake target each Dockerfile of the offline profile builds.
_DOCKERFILES = {
    "runtime-cuda": "services/runtime/Dockerfile",
    "core-cuda": "tests/offline/core/Dockerfile",
    "complete-cuda": "services/comfy/complete/Dockerfile",
}


def steps_per_target(root: Path = ROOT) -> dict[int, str]:
    """Number of build steps (the m of bake's "[... n/m]") -> target. A bake of
    complete-cuda names steps of all three Dockerfiles after complete-cuda, so the
    step count, which differs per Dockerfile here, tells them apart."""
    out: dict[int, str] = {}
    for target, path in _DOCKERFILES.items():
        text = re.sub(r"\\\n", " ", (root / path).read_text())
        words = [
            ln.split()[0].upper()
            for ln in text.splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")
        ]
        n = sum(w in ("FROM", "RUN", "COPY", "ADD", "WORKDIR") for w in words)
        if n in out:
            raise SystemExit(
                f"{path} and {_DOCKERFILES[out[n]]} both have {n} steps: cannot tell stages apart"
            )
        out[n] = target
    return out


def bake_stages(log_text: str) -> dict[str, dict[str, int]]:
    """Per stage of bake's plain progress log: steps that came from cache vs ran."""
    by_total = steps_per_target()
    steps: dict[str, str] = {}
    cached: set[str] = set()
    for line in log_text.splitlines():
        m = _STEP.match(line)
        if m:
            vid, target, stage, _i, total, what = m.groups()
            if not what.startswith("FROM"):
                steps.setdefault(vid, by_total.get(int(total)) or target or stage)
            continue
        m = re.match(r"^#(\d+) CACHED", line)
        if m:
            cached.add(m.group(1))
    out: dict[str, dict[str, int]] = {}
    for vid, stage in steps.items():
        s = out.setdefault(stage, {"cached": 0, "ran": 0})
        s["cached" if vid in cached else "ran"] += 1
    return out


def build_bench(work: Path, env: dict, overrides: Path) -> dict:
    res: dict = {}
    t0 = time.monotonic()
    with harness.Fleet(
        n_ssh=0, n_build=1, workdir=work / "build-fleet", name_prefix="sf-bench"
    ) as f:
        res["host_up_s"] = round(time.monotonic() - t0, 1)
        fenv = {**env, "SAGEFLEET_FLEET": str(f.fleet_file)}

        def deploy(*extra: str):
            t = time.monotonic()
            p = subprocess.run([PYINFRA, "-y", "inventory.py", "deploy.py", "--group-data",
                                str(overrides), *extra], cwd=ROOT, env=fenv,
                               capture_output=True, text=True, timeout=1200)  # fmt: skip
            return time.monotonic() - t, p.returncode, p.stdout + p.stderr

        def bake_log() -> tuple[str, str]:
            r = f.exec(
                "build-1",
                "stat -c %Y /opt/sagefleet/build/bake.log; cat /opt/sagefleet/build/bake.log",
                check=False,
            )
            first, _, rest = r.output.partition("\n")
            return first.strip(), rest

        def set_build(tag: str) -> None:
            w = ("sage_wheels = {'sageattention': {'version': '2.2.0', 'release_tag': "
                 f"'v2.2.0-build.16', 'build_tag': '{tag}'}}, 'sageattn3': {{'version': '1.0.0', "
                 "'release_tag': 'v2.2.0-build.16', 'build_tag': '290.129'}}\n")  # fmt: skip
            (overrides / "offline.py").write_text(w)

        set_build(OLD_BUILD)
        dt, rc, out = deploy()
        if rc != 0:
            raise SystemExit(f"cold build failed:\n{out[-4000:]}")
        mtime, text = bake_log()
        res["cold"] = {
            "seconds": round(dt, 1),
            "bake": "bake needed" in out,
            "stages": bake_stages(text),
        }
        log(f"cold build {dt:.1f} s: {res['cold']['stages']}")

        dt, rc, out = deploy()
        mtime2, _ = bake_log()
        res["no_change"] = {"seconds": round(dt, 2), "bake": "bake needed" in out or mtime2 != mtime,
                            "rc": rc}  # fmt: skip
        log(f"no-change re-run {dt:.1f} s, bake invoked: {res['no_change']['bake']}")

        set_build(NEW_BUILD)
        dt, rc, out = deploy()
        _, text = bake_log()
        if rc != 0:
            raise SystemExit(f"pin-change run failed:\n{out[-4000:]}")
        stages = bake_stages(text)
        res["pin_change"] = {"seconds": round(dt, 1), "rc": rc, "bake": "bake needed" in out,
                             "stages": stages,
                             "only_complete_rebuilt": all(v["ran"] == 0 for k, v in stages.items()
                                                          if "complete" not in k)
                             and any(v["ran"] for k, v in stages.items() if "complete" in k)}  # fmt: skip
        res["pin_change_log"] = [
            ln for ln in text.splitlines() if _STEP.match(ln) or " CACHED" in ln
        ][:60]
        log(f"pin change {dt:.1f} s: {stages}")

        # Probe cost: the probe operation's own command, over SSH, timed on the host.
        from sagefleet.commands import probe as probe_cmd

        image = "localhost/sagefleet/comfyui-docker/complete-cuda:latest"
        times = []
        client = f.ssh_client("build-1", timeout=10)
        try:
            for i in range(3):
                cmd = probe_cmd(
                    image, "/opt/sagefleet/build/probe.py", f"/tmp/probe-bench-{i}", gpus=False
                )
                t = time.monotonic()
                _, so, se = client.exec_command(cmd, timeout=600)
                rc = so.channel.recv_exit_status()
                times.append(round(time.monotonic() - t, 2))
                if rc != 0:
                    raise SystemExit(f"probe failed: {se.read().decode()[-2000:]}")
            _, so, _ = client.exec_command("cat /tmp/probe-bench-0/*.json")
            report = json.loads(so.read().decode())
        finally:
            client.close()
        res["probe_cpu"] = {
            "seconds": times,
            "kernels": {k["kernel"]: k["status"] for k in report["kernels"]},
        }
        log(f"probe on CPU host: {times}")
    return res


def h100_probe() -> dict:
    out = {}
    names = (
        "h100-probe.json",
        "h100-probe-long-seq.json",
        "h100-probe-sa220-fix-ff71e1e.json",
        "h100-probe-sa220-tag-eb615cf.json",
    )
    for name in names:
        d = json.loads((ROOT / "docs" / "samples" / name).read_text())
        ks = [k for k in d["kernels"] if k.get("seconds") is not None]
        out[name] = {
            "gpu": d["gpu"]["name"],
            "kernels": {
                k["kernel"]: {
                    "status": k["status"],
                    "seconds": k["seconds"],
                    "shapes": len(k.get("shapes") or []),
                }
                for k in ks
            },  # fmt: skip
            "total_s": round(sum(k["seconds"] for k in ks), 2),
            # schema 2: the probe's own wall time (target for a 2.x build on an H100: <= 30 s)
            "probe_s": (d.get("timing") or {}).get("seconds"),
        }
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="sagefleet benchmarks (docs/benchmarks.md)")
    ap.add_argument("--sizes", default="1,5,20,50")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-ansible", action="store_true")
    ap.add_argument("--skip-build", action="store_true", help="skip build reuse and probe cost")
    ap.add_argument("--out", default=str(BENCH / "results.json"))
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    from sagefleet.main import bridge_gateway
    from sagefleet.offline import build_wheelhouse, serve_wheelhouse

    problem = harness.engine_problem()
    if problem:
        raise SystemExit(f"bench: {problem}")
    compile_tree(ROOT)
    harness.reap_orphans()
    results: dict = {
        "machine": machine(),
        "load_start": loadavg(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if not args.skip_ansible:
        results["machine"]["ansible"] = ensure_ansible()
    work = Path(tempfile.mkdtemp(prefix="sagefleet-bench-"))
    try:
        wheelhouse = work / "wheelhouse"
        with serve_wheelhouse(wheelhouse, bridge_gateway()) as url:
            os.environ["SAGEFLEET_WHEELHOUSE_URL"] = url
            from tests.offline_pins import offline_pins

            for tag in (OLD_BUILD, NEW_BUILD):
                build_wheelhouse(offline_pins(sage_wheels_build=tag), wheelhouse)
            env = {**os.environ, "SAGEFLEET_OFFLINE": "1", "SAGEFLEET_WHEELHOUSE_URL": url}
            results["fleet"] = fleet_bench(sizes, args.runs, work, env, args.skip_ansible)
            if not args.skip_build:
                overrides = work / "group_data"
                overrides.mkdir()
                results["build"] = build_bench(work, env, overrides)
        results["probe_h100"] = h100_probe()
        results["load_end"] = loadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    if Path(args.out) == BENCH / "results.json":
        (ROOT / "docs" / "benchmarks.md").write_text(report.render(results))
        (ROOT / "docs" / "benchmarks.svg").write_text(report.svg_plot(results["fleet"]))
    summary(results)
    return 0


def summary(results: dict) -> None:
    t = results["fleet"]["times"]
    n = str(max(results["fleet"]["sizes"]))
    median = report.median
    sf, fl = median(t["sagefleet"][n]), median(t["floor"][n])
    print(
        f"\n{n} hosts: sagefleet {sf:.2f} s, floor {fl:.2f} s, ratio {sf / fl:.2f} (target <= 1.5)"
    )
    if "ansible" in t:
        an = median(t["ansible"][n])
        print(f"{n} hosts: Ansible {an:.2f} s, ratio {sf / an:.3f} (target <= 0.12)")
    sl = report.slope_ms
    print(
        f"marginal cost per host: sagefleet {sl(t['sagefleet']):.0f} ms, floor {sl(t['floor']):.0f} ms"
    )
    print("written: bench/results.json, docs/benchmarks.md, docs/benchmarks.svg")


if __name__ == "__main__":
    sys.exit(main())
