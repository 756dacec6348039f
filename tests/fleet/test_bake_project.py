"""Deploying someone else's bake project: the fixture tests/fixtures/imagerepo (its own
tag scheme with two tags per target and a trailing-slash REGISTRY_URL, dockerfile.*
names, named target contexts, requirements inside the complete target's context, a
cache-from at a registry that does not answer, no sagefleet label) over the SSH
test fleet, with the real `pyinfra -y inventory.py deploy.py`.

Sequence on build-1 (the engine's default docker driver): converge builds; a re-run
changes nothing and runs no bake; `--dry --diff` after a pin change shows the
requirements line and "bake needed" and changes nothing; applying it rebuilds only
the complete stage; a file removed from the project is gone on the host.
Then the fleet's registry cache (`bake_cache_ref`, a real TLS + auth registry):
build-2 bakes and exports it, and a fresh build-3 bakes with every step CACHED,
counted from bake's plain log. build-2 and build-3 run their dockerd with the
containerd image store, which the docker driver needs to export a cache.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest
from fleet_deploy import BASE_BUILD, FleetDeploy, RunningDeploy, bridge_gateway, offenders
from test_rollout_fleet import registry

from sagefleet.bake import BakeProgress

pytestmark = pytest.mark.fleet

FIXTURE = harness.REPO_ROOT / "tests" / "fixtures" / "imagerepo"
BUILD_DIR = "/opt/sagefleet/build"
IMAGE = "localhost/fixture/complete:cuda-t1"
SECOND_TAG = "localhost/fixture/complete:cuda-cache"
REQUIREMENTS = "services/comfy/complete/extra-requirements.txt"
NEW_BUILD = "321.7"
BAKE_OP = "Bake complete-cuda"
# Instructions of the fixture's complete stage (dockerfile.complete.cuda).
COMPLETE_STEPS = ("COPY extra-requirements.txt", "RUN if grep")


def fixture_data(project_dir: Path, **extra: object) -> dict:
    return {
        "build_context": {"dir": str(project_dir)},
        "bake_files": ["docker-bake.hcl"],
        "bake_target": "complete-cuda",
        "bake_variables": {
            "REGISTRY_URL": "localhost/fixture/",
            "IMAGE_LABEL": "t1",
            "BASE_IMAGE": "sagefleet/base:bookworm",
        },
        "extra_requirements": [],  # the stand-in wheels only: nothing from PyPI
        **extra,
    }


def use_containerd_store(fleet: harness.Fleet, name: str) -> None:
    """Restart the host's dockerd with the containerd image store (then reload the base)."""
    fleet.exec(
        name,
        "mkdir -p /etc/docker && "
        """printf '{"features": {"containerd-snapshotter": true}}\\n' > /etc/docker/daemon.json && """
        "kill $(cat /var/run/docker.pid) && "
        "for i in $(seq 100); do [ -e /var/run/docker.pid ] || break; sleep 0.2; done",
    )
    fleet._container(name).exec_run(
        ["sh", "-c", "setsid dockerd >/var/log/dockerd.log 2>&1 </dev/null &"], detach=True
    )
    fleet.wait_dockerd(name)
    driver = fleet.exec(name, ["docker", "info", "-f", "{{json .DriverStatus}}"]).output
    assert "io.containerd.snapshotter" in driver, driver


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if problem := harness.engine_problem():
        pytest.fail(f"SSH test fleet unavailable: {problem}")
    tmp = tmp_path_factory.mktemp("bake-project")
    project_dir = tmp / "imagerepo"
    shutil.copytree(FIXTURE, project_dir)
    saved = {
        k: os.environ.get(k)
        for k in ("SAGEFLEET_REGISTRY_USER", "SAGEFLEET_REGISTRY_PASSWORD_FILE")
    }
    with contextlib.ExitStack() as stack:
        reg = stack.enter_context(registry(tmp / "registry", bridge_gateway()))
        fleet = harness.Fleet(n_ssh=0, n_build=3, workdir=tmp / "fleet")
        stack.callback(fleet.down)
        fleet.up()
        ca = reg["ca"].read_text()
        certs = f"/etc/docker/certs.d/{reg['host']}"
        for name in ("build-2", "build-3"):
            fleet.exec(name, f"mkdir -p {certs} && cat > {certs}/ca.crt <<'EOF'\n{ca}EOF\n")
        fleet._parallel(lambda n: use_containerd_store(fleet, n), ["build-2", "build-3"])
        pw = tmp / "registry-password"
        pw.write_text(reg["password"] + "\n")
        os.environ["SAGEFLEET_REGISTRY_USER"] = reg["user"]
        os.environ["SAGEFLEET_REGISTRY_PASSWORD_FILE"] = str(pw)
        try:
            yield {
                "fleet": fleet,
                "project": FleetDeploy(fleet),
                "dir": project_dir,
                "cache_ref": f"{reg['host']}/sagefleet/fixture-cache",
                "runs": {},
            }
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def run(env: dict, *args: str, build_tag: str = BASE_BUILD, limit: str = "build-1", **extra):
    return env["project"].run(
        *args, build_tag=build_tag, data=fixture_data(env["dir"], **extra), limit=limit
    )


def dry_diff(env: dict, build_tag: str, limit: str = "build-1"):
    """`pyinfra inventory.py deploy.py --dry --diff` as an operator runs it: without -y
    (-y skips pyinfra's change detection and so the diff)."""
    overrides, penv = env["project"].prepare(build_tag, fixture_data(env["dir"]))
    cmd = env["project"].command(overrides, "deploy.py", "--dry", "--diff", "--limit", limit)
    cmd.remove("-y")
    return RunningDeploy(cmd, penv).wait(600)


def image(env: dict, host: str, ref: str = IMAGE) -> dict | None:
    return env["project"].image(host, ref)


def bake_log(env: dict, host: str) -> str:
    return env["fleet"].exec(host, f"cat {BUILD_DIR}/bake.log").output


def host_file(env: dict, host: str, rel: str) -> str | None:
    res = env["fleet"].exec(host, ["cat", f"{BUILD_DIR}/context/{rel}"], check=False)
    return res.output if res.exit_code == 0 else None


def test_converge_builds_the_first_tag_with_our_label(env: dict) -> None:
    result = run(env)
    assert result.ok, result.describe()
    assert result.status("build-1", BAKE_OP) == "changed", result.describe()
    img = image(env, "build-1")
    assert img and (img["inputs"] or "").startswith("sha256:"), img
    # bake tagged both of the target's tags; sagefleet checks the first.
    assert image(env, "build-1", SECOND_TAG)["id"] == img["id"]
    rendered = host_file(env, "build-1", REQUIREMENTS)
    assert rendered and f"-{BASE_BUILD}-cp311" in rendered, rendered
    in_image = (
        env["fleet"]
        .exec("build-1", ["docker", "run", "--rm", IMAGE, "cat", "/app/extra-requirements.txt"])
        .output
    )
    assert in_image == rendered
    # Live progress per step, then the slowest steps.
    out = result.host_output("build-1")
    assert "bake: complete-cuda step" in out, out
    assert "bake finished after" in out and "slowest:" in out, out
    env["runs"]["converged"] = img


def test_rerun_changes_nothing_and_runs_no_bake(env: dict) -> None:
    assert "converged" in env["runs"], "converge first"
    before = env["fleet"].exec("build-1", f"stat -c %Y.%s {BUILD_DIR}/bake.log").output
    again = run(env)
    assert again.ok, again.describe()
    assert not again.changed(), offenders(again) + "\n" + again.describe()
    assert "bake needed" not in again.output
    assert env["fleet"].exec("build-1", f"stat -c %Y.%s {BUILD_DIR}/bake.log").output == before
    assert image(env, "build-1") == env["runs"]["converged"]


def test_dry_diff_after_a_pin_change_shows_it_and_changes_nothing(env: dict) -> None:
    img = env["runs"]["converged"]
    rendered = host_file(env, "build-1", REQUIREMENTS)
    dry = dry_diff(env, NEW_BUILD)
    assert dry.ok, dry.describe()
    out = dry.output
    added = [line for line in out.splitlines() if f"-{NEW_BUILD}-cp311" in line]
    assert any("+" in line for line in added), out
    assert "bake needed" in out, out
    assert image(env, "build-1") == img
    assert host_file(env, "build-1", REQUIREMENTS) == rendered


def test_applying_the_pin_change_rebuilds_only_the_complete_stage(env: dict) -> None:
    result = run(env, build_tag=NEW_BUILD)
    assert result.ok, result.describe()
    assert result.status("build-1", BAKE_OP) == "changed"
    progress = BakeProgress()
    progress.feed(bake_log(env, "build-1"))
    ran = [s.instruction for s in progress.executed_steps()]
    assert ran and all(r.startswith(COMPLETE_STEPS) for r in ran), ran
    assert len(progress.cached_steps()) >= 5, progress.summary()
    assert f"-{NEW_BUILD}-cp311" in host_file(env, "build-1", REQUIREMENTS)


def test_a_file_removed_locally_is_gone_on_the_host(env: dict) -> None:
    notes = "services/comfy/core/app/NOTES.txt"
    assert host_file(env, "build-1", notes), "the fixture's file should be on the host"
    (env["dir"] / notes).unlink()
    preview = dry_diff(env, NEW_BUILD)
    assert preview.ok, preview.describe()
    assert f"- {notes}" in preview.output, preview.output
    assert "ustar" not in preview.output  # never the archive's bytes
    assert host_file(env, "build-1", notes)
    result = run(env, build_tag=NEW_BUILD)
    assert result.ok, result.describe()
    assert host_file(env, "build-1", notes) is None
    # The rendered requirements survived the replacement of the context.
    assert f"-{NEW_BUILD}-cp311" in host_file(env, "build-1", REQUIREMENTS)
    assert result.status("build-1", "Build context") == "changed"


def test_a_fresh_build_host_bakes_from_the_fleets_cache(env: dict) -> None:
    """build-2 bakes with bake_cache_ref and exports the cache; build-3, empty, bakes
    the same inputs with every step CACHED (counted from bake's plain log): the
    runtime and core stages and the complete stage built on the named context."""
    cache = env["cache_ref"]
    first = run(env, build_tag=NEW_BUILD, limit="build-2", bake_cache_ref=cache)
    assert first.ok, first.describe()
    assert "exporting cache to registry" in bake_log(env, "build-2")
    assert image(env, "build-3") is None, "build-3 must start empty"
    fresh = run(env, build_tag=NEW_BUILD, limit="build-3", bake_cache_ref=cache)
    assert fresh.ok, fresh.describe()
    assert fresh.status("build-3", BAKE_OP) == "changed"
    log = bake_log(env, "build-3")
    progress = BakeProgress()
    progress.feed(log)
    ran = [s.instruction for s in progress.executed_steps()]
    print(f"fresh build host: {progress.summary()}")
    assert ran == [], progress.summary() + "\n" + log[-3000:]
    cached = [s.instruction for s in progress.cached_steps()]
    assert len(cached) >= 7 and any(c.startswith(COMPLETE_STEPS) for c in cached), cached
    assert "importing cache manifest from " + cache in log
    assert image(env, "build-3")["inputs"] == image(env, "build-2")["inputs"]
