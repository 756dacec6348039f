"""The real deploy with pyinfra on the real local engine (@local), offline profile.

build -> no-change -> --dry (changes nothing, shows the diff) -> one pin changed
(exactly one rebuild) -> a bake that fails (404 wheel) keeps the image tagged ->
force_rebuild. Steps share one build directory and image name, in order.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from sagefleet.commands import INPUTS_LABEL, previous_tag
from sagefleet.offline import build_wheelhouse, serve_wheelhouse
from tests.conftest import require_engine, run_pyinfra
from tests.offline_pins import group_file, offline_pins

pytestmark = pytest.mark.engine

# NEW and MISSING encode no torch/CUDA (sagefleet.pins.agreement): only the wheel changes.
OLD_BUILD, NEW_BUILD, MISSING_BUILD = "290.129", "291.1", "299.9"


def wheels(build_tag: str) -> str:
    return (
        "sage_wheels = {"
        f"'sageattention': {{'version': '2.2.0', 'release_tag': 'v2.2.0-build.16', 'build_tag': '{build_tag}'}},"
        "'sageattn3': {'version': '1.0.0', 'release_tag': 'v2.2.0-build.16', 'build_tag': '290.129'}}\n"
    )


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def image_id(ref: str) -> str | None:
    proc = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    require_engine()
    tmp = tmp_path_factory.mktemp("deploy")
    gw = docker("network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}")
    wheelhouse = tmp / "wheelhouse"
    for tag in (OLD_BUILD, NEW_BUILD):
        build_wheelhouse(offline_pins(sage_wheels_build=tag), wheelhouse)
    run_id = uuid.uuid4().hex[:8]
    registry = f"localhost/sagefleet-it-{run_id}"
    bake_variables = {**group_file("offline")["bake_variables"], "REGISTRY_URL": registry}
    overrides = tmp / "group_data"
    overrides.mkdir()
    with serve_wheelhouse(wheelhouse, gw) as url:
        proj = {
            "tmp": tmp,
            "overrides": overrides,
            "build_dir": str(tmp / "build"),
            "image": f"{registry}/comfyui-docker/complete-cuda:latest",
            "env": {
                "SAGEFLEET_OFFLINE": "1",
                "SAGEFLEET_WHEELHOUSE_URL": url,
                "SAGEFLEET_FLEET": "",
            },
        }
        proj["set_pins"] = lambda build_tag: (overrides / "offline.py").write_text(
            f"bake_variables = {bake_variables!r}\nbuild_dir = {proj['build_dir']!r}\n"
            + wheels(build_tag)
        )
        proj["set_pins"](OLD_BUILD)
        yield proj
    for ref in (proj["image"], previous_tag(proj["image"])):
        subprocess.run(["docker", "image", "rm", "-f", ref], capture_output=True)


def deploy(project, *extra: str):
    # --dry plans without asking; -y would skip change detection (and the diff).
    yes = () if "--dry" in extra else ("-y",)
    return run_pyinfra(
        *yes,
        "inventory.py",
        "deploy.py",
        "--group-data",
        str(project["overrides"]),
        *extra,
        env=project["env"],
    )


def deploy_then_reset(project):
    """deploy under pins a test changed; the pins of NEW_BUILD are back afterwards."""
    try:
        return deploy(project)
    finally:
        project["set_pins"](NEW_BUILD)


def requirements_in_image(ref: str) -> str:
    return docker("run", "--rm", ref, "cat", "/app/extra-requirements.txt")


def label(ref: str) -> str:
    return json.loads(docker("image", "inspect", "-f", "{{json .Config.Labels}}", ref))[
        INPUTS_LABEL
    ]


def test_first_run_builds(project):
    # A build_dir that exists already (here world-writable and sticky, like /tmp) is
    # not sagefleet's: its mode stays as it is.
    build_dir = Path(project["build_dir"])
    build_dir.mkdir()
    build_dir.chmod(0o1777)
    proc = deploy(project)
    assert proc.returncode == 0, proc.output
    assert build_dir.stat().st_mode & 0o7777 == 0o1777
    # The CA bundle (a secret) went up with its mode, never shown.
    assert (build_dir / "secrets").stat().st_mode & 0o777 == 0o700
    assert (build_dir / "secrets" / "pip-ca.pem").stat().st_mode & 0o777 == 0o600
    assert "bake needed: no image" in proc.output
    assert image_id(project["image"])
    assert label(project["image"]).startswith("sha256:")
    assert f"-{OLD_BUILD}-cp311" in requirements_in_image(project["image"])


def test_second_run_changes_nothing_and_runs_no_bake(project):
    log = Path(project["build_dir"]) / "bake.log"
    before = (image_id(project["image"]), log.stat().st_mtime_ns)
    proc = deploy(project)
    assert proc.returncode == 0, proc.output
    assert "bake needed" not in proc.output
    assert "Grand total" in proc.output
    total = next(line for line in proc.output.splitlines() if "Grand total" in line).split()
    # Grand total  <ops>  <success>  <error>  <no change>: no success means no change
    assert total[3] == "-" and total[4] == "-", proc.output
    assert (image_id(project["image"]), log.stat().st_mtime_ns) == before


# build_image with one more step, as a maintainer would add one: a deploy file that
# appends a dummy operation to sagefleet.deploys.build.BUILD_STEPS, then runs deploy.py's call.
DUMMY_DEPLOY = """
from pyinfra.operations import python

from sagefleet.deploys import build


def _mark():
    with open(MARKER, "a") as f:
        f.write("ran\\n")


def _dummy_step(run):
    return [(python.call, dict(name="Dummy step", function=_mark))]


build.BUILD_STEPS.append(_dummy_step)
build.build_image()
"""


def test_no_change_run_cannot_skip_an_added_operation(project):
    """A no-change run (every other operation decides "nothing to do" from the one
    BuildState read) still runs an operation added to build_image: no shortcut skips it."""
    marker = project["tmp"] / "dummy-step-ran"
    deploy_file = project["tmp"] / "deploy_with_dummy_step.py"
    deploy_file.write_text(DUMMY_DEPLOY.replace("MARKER", repr(str(marker))))
    proc = run_pyinfra(
        "-y",
        "inventory.py",
        str(deploy_file),
        "--group-data",
        str(project["overrides"]),
        env=project["env"],
    )
    assert proc.returncode == 0, proc.output
    assert marker.read_text() == "ran\n", proc.output
    assert "bake needed" not in proc.output
    total = next(line for line in proc.output.splitlines() if "Grand total" in line).split()
    # Grand total  <ops>  <success>  <error>  <no change>: the dummy step is the one change
    assert total[3] == "1" and total[4] == "-", proc.output


def test_dry_run_shows_diff_and_changes_nothing(project):
    rendered = Path(project["build_dir"]) / "context/services/comfy/complete/extra-requirements.txt"
    before = (image_id(project["image"]), rendered.read_text())
    project["set_pins"](NEW_BUILD)
    try:
        proc = deploy(project, "--dry", "--diff")
    finally:
        project["set_pins"](OLD_BUILD)
    assert proc.returncode == 0, proc.output
    assert "- http://" in proc.output and f"-{OLD_BUILD}-cp311" in proc.output
    assert f"-{NEW_BUILD}-cp311" in proc.output
    assert "bake needed" in proc.output
    assert (image_id(project["image"]), rendered.read_text()) == before


def test_one_pin_changed_rebuilds_once(project):
    old_id, old_label = image_id(project["image"]), label(project["image"])
    project["set_pins"](NEW_BUILD)
    proc = deploy(project)
    assert proc.returncode == 0, proc.output
    assert proc.output.count("bake needed") == 1
    new_id = image_id(project["image"])
    assert new_id != old_id
    assert label(project["image"]) != old_label
    assert f"-{NEW_BUILD}-cp311" in requirements_in_image(project["image"])
    # The replaced image stays tagged, not dangling.
    assert image_id(previous_tag(project["image"])) == old_id


def test_failed_bake_keeps_previous_image_tagged(project):
    current = image_id(project["image"])
    project["set_pins"](MISSING_BUILD)
    proc = deploy_then_reset(project)
    assert proc.returncode != 0, proc.output
    assert "bake of complete-cuda failed" in proc.output
    assert "404" in proc.output  # pip's own error, from the build log tail
    assert image_id(project["image"]) == current


def test_force_rebuild_bakes_although_inputs_match(project):
    log = Path(project["build_dir"]) / "bake.log"
    before = log.stat().st_mtime_ns
    proc = deploy(project, "--data", "force_rebuild=true")
    assert proc.returncode == 0, proc.output
    # The bake ran (it rewrites its log) although the inputs label matched.
    assert log.stat().st_mtime_ns != before, proc.output
    assert f"naming to {project['image']}" in log.read_text(), log.read_text()[-2000:]
    # And without force it is a no-op again: no bake, the log untouched.
    forced = log.stat().st_mtime_ns
    proc = deploy(project)
    assert proc.returncode == 0, proc.output
    assert "bake needed" not in proc.output, proc.output
    assert log.stat().st_mtime_ns == forced


def test_invalid_pin_stops_before_any_host(project):
    (project["overrides"] / "offline.py").write_text(
        "sage_release_base = 'https://x.example/$(touch /tmp/pwned-it)'\n"
    )
    proc = deploy_then_reset(project)
    assert proc.returncode != 0
    assert "invalid pins, no host was contacted" in proc.output
    assert "offline.py: sage_release_base = " in proc.output
    assert "Connected" not in proc.output
    assert not Path("/tmp/pwned-it").exists()


def _probe_files(project) -> set[str]:
    d = Path(project["build_dir"]) / "probe"
    return {p.name for p in d.glob("*.json")} if d.exists() else set()


def test_probe_ran_once_per_image_and_gate_passed(project):
    """Each built image was probed once; a re-run does not re-run the probe."""
    proc = deploy(project)
    assert proc.returncode == 0, proc.output
    current = image_id(project["image"]).removeprefix("sha256:") + ".json"
    assert current in _probe_files(project)
    stored = Path(project["build_dir"]) / "probe" / current
    before = stored.stat().st_mtime_ns
    proc = deploy(project, "-v")
    assert proc.returncode == 0, proc.output
    assert "already stored" in proc.output
    assert "verified image" in proc.output
    assert stored.stat().st_mtime_ns == before
    report = json.loads(stored.read_text())
    assert report["packages"]["sageattention"]["version"] == "2.2.0"
    assert report["packages"]["sageattention"]["build_tag"] == NEW_BUILD
    assert {k["status"] for k in report["kernels"]} == {"no-gpu"}


def _with_overlay(project, overlay: str, extra: str = "") -> None:
    project["set_pins"](NEW_BUILD)
    path = project["overrides"] / "offline.py"
    path.write_text(
        path.read_text()
        + "bake_files = ['docker-bake.hcl', 'tests/offline/offline.hcl', "
        + f"'tests/offline/drift.hcl', 'tests/offline/{overlay}']\n"
        + extra
    )


def test_gate_catches_wrong_sageattention_version(project):
    _with_overlay(project, "drift-sage106.hcl")
    proc = deploy_then_reset(project)
    assert proc.returncode != 0, proc.output
    assert "verification failed" in proc.output
    assert "sageattention is 1.0.6 in the image, pinned 2.2.0" in proc.output


def test_gate_catches_missing_sageattn3_where_required(project):
    _with_overlay(project, "drift-no-sageattn3.hcl", "require_sageattn3 = True\n")
    proc = deploy_then_reset(project)
    assert proc.returncode != 0, proc.output
    assert "requires sageattn3, which is not installed" in proc.output


def test_preflight_failure_names_the_fix_and_changes_nothing(project):
    """Too little disk for a bake: the host fails with what to do; the image stays."""
    current = image_id(project["image"])
    proc = deploy(project, "--data", "force_rebuild=true", "--data", "min_free_disk_gb=1000000")
    assert proc.returncode != 0, proc.output
    assert "preflight failed: only" in proc.output
    assert "min_free_disk_gb = 1000000" in proc.output
    assert "docker system prune" in proc.output
    assert image_id(project["image"]) == current
