"""Security of the real deploy over SSH, on the session fleet.

- pins carrying shell metacharacters are refused before any host is contacted, from
  every source (group_data file, host data in the fleet file, --data), and never run;
- one host's bad value (a pyinfra operation argument, a 1 MB value, deep nesting)
  refuses the whole run with zero connections: no host's sshd log grows;
- the registry login never appears in what a run prints (--diff, --json, -vvv, --dry),
  neither the password nor its base64;
- a host whose key does not match known_hosts is refused by the deploy;
- the CA bundle handed to pip (a BuildKit secret) appears neither in pyinfra's output
  (at -vvv: every command and its output) nor in any process's arguments on the
  build hosts during the bake, nor in the image.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path

import harness
import pytest
from fleet_deploy import BAKE_OP, FleetDeploy, RunningDeploy, wheels_with

from tests.offline_pins import group_file

pytestmark = pytest.mark.fleet

MARK = "/tmp/sagefleet-pwned"


@pytest.fixture(scope="module")
def project(fleet: harness.Fleet) -> FleetDeploy:
    return FleetDeploy.of(fleet)


def bake_vars(**over: str) -> dict[str, str]:
    """The offline profile's bake_variables with some values replaced."""
    return {**group_file("offline")["bake_variables"], **over}


# (source, key, value): every value would create MARK-<id> if a shell ever ran it.
PAYLOADS = {
    "subst": ("group", "bake_variables", bake_vars(IMAGE_LABEL=f"x$(touch {MARK}-subst)")),
    "backticks": (
        "group",
        "bake_variables",
        bake_vars(REGISTRY_URL=f"localhost/x`touch {MARK}-backticks`"),
    ),
    "semicolon": ("group", "build_dir", f"/opt/x;touch {MARK}-semicolon"),
    "and": (
        "host",
        "bake_variables",
        bake_vars(BASE_IMAGE=f"sagefleet/base:bookworm&&touch {MARK}-and"),
    ),
    "newline": ("group", "sage_release_base", f"http://172.17.0.1:1/x\ntouch {MARK}-newline"),
    "quotes": ("data", "bake_target", f"complete-cuda';touch {MARK}-quotes;'"),
    "dquotes": ("group", "extra_requirements", [f'piexif==1.1.3";touch {MARK}-dquotes;"']),
    "build_tag": ("host", "sage_wheels", wheels_with(f"290.129$(touch {MARK}-build_tag)")),
}


@pytest.mark.parametrize("case", list(PAYLOADS))
def test_shell_metacharacters_in_pins_never_run(
    fleet: harness.Fleet, project: FleetDeploy, case: str
) -> None:
    source, key, value = PAYLOADS[case]
    marker = f"{MARK}-{case}"
    if source == "group":
        result = project.run(data={key: value})
        # The run's own override file (FleetDeploy.prepare), not any group_data dir.
        where = result.args[result.args.index("--group-data") + 1] + "/offline.py"
    elif source == "host":
        result = project.run(host_data={"build-1": {key: value}})
        where = "inventory host build-1"
    else:
        result = project.run("deploy.py", "--data", f"{key}={value}")
        where = "--data"
    assert result.rc == 2, result.describe()
    _, _, refusal = result.stderr.partition("sagefleet: invalid pins, no host was contacted:\n")
    assert refusal, result.describe()
    # One line names the source, the key and the value (the payload, as its repr shows it).
    named = [
        line
        for line in refusal.splitlines()
        if line.startswith(f"  {where}: {key}") and f"touch {marker}" in line
    ]
    assert named, f"no line names {where}, {key} and the value:\n{refusal}"
    assert "Connected" not in result.output, result.describe()
    assert not Path(marker).exists()
    for host in fleet.hosts:
        assert fleet.exec(host, ["test", "-e", marker], check=False).exit_code == 1, host


def test_changed_host_key_is_refused_by_the_deploy(
    fleet: harness.Fleet, project: FleetDeploy
) -> None:
    """A build host serving another key than known_hosts pins: the deploy refuses it
    (no operation runs there) and goes on with the others; pinned again, it converges."""
    fleet.replace_host_key("build-1")
    try:
        refused = project.run()
    finally:
        fleet.trust_host_key("build-1")
    assert refused.rc != 0, refused.describe()
    assert refused.failed_hosts == ["build-1"], refused.describe()
    assert any("host key" in line.lower() for line in refused.lines("build-1")), refused.describe()
    assert not refused.touched("build-1")
    again = project.run()
    assert again.ok, again.describe()


class _PsSampler(threading.Thread):
    """Polls `ps -eo args` on hosts (docker exec, not SSH) until stopped."""

    def __init__(self, fleet: harness.Fleet, hosts: list[str]) -> None:
        super().__init__(daemon=True)
        self.fleet, self.hosts = fleet, hosts
        self.lines: set[tuple[str, str]] = set()
        self.samples = 0
        self._halt = threading.Event()

    def sample(self) -> None:
        for host in self.hosts:
            out = self.fleet.exec(host, ["ps", "-eo", "args"], check=False).output
            self.lines.update((host, line) for line in out.splitlines())
        self.samples += 1

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            time.sleep(0.1)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def test_ca_bundle_never_in_output_or_process_args(
    fleet: harness.Fleet, project: FleetDeploy
) -> None:
    bundle = project.ca_bundle.read_text()
    # A distinctive line of the first certificate, the canary comment, the PEM header.
    cert_line = next(line for line in bundle.splitlines()[3:] if len(line) == 64)
    secrets = [project.canary, cert_line, "BEGIN CERTIFICATE"]
    build = [h for h in fleet.hosts if h.startswith("build-")]
    wh, tag = project.wheelhouse, "321.1"
    sampler = _PsSampler(fleet, build)
    sampler.start()
    wh.hold(tag)
    try:
        run = project.start("deploy.py", "-vvv", build_tag=tag)
        for host in build:  # every bake is inside pip, the secret mounted: sample now
            wh.wait_request(tag, fleet.hosts[host].ip)
        sampler.sample()
    finally:
        wh.release(tag)
    result = run.wait()
    sampler.stop()
    assert result.ok, result.describe()
    for host in build:
        assert result.status(host, BAKE_OP) == "changed", result.describe()
        seen = [line for h, line in sampler.lines if h == host]
        assert any("buildx bake" in line for line in seen), f"{host}: no bake sampled"
        assert any("pip install" in line for line in seen), f"{host}: pip never sampled"
    for secret in secrets:
        assert secret not in result.output, f"{secret!r} in pyinfra's output"
        leaks = [(h, line) for h, line in sampler.lines if secret in line]
        assert not leaks, f"{secret!r} in process arguments: {leaks[:3]}"
    exp = project.expected(build_tag=tag)
    for host in build:
        mode = fleet.exec(host, ["stat", "-c", "%a", f"{exp.build_dir}/secrets/pip-ca.pem"])
        assert mode.output.strip() == "600"
        history = fleet.exec(host, ["docker", "history", "--no-trunc", exp.image_ref]).output
        inspect = fleet.exec(host, ["docker", "image", "inspect", exp.image_ref]).output
        found = fleet.exec(
            host,
            ["docker", "run", "--rm", exp.image_ref, "grep", "-rl", project.canary, "/app", "/etc"],
            check=False,
        )
        assert project.canary not in history + inspect
        assert found.exit_code == 1 and not found.output.strip(), f"{host}: {found.output}"
    print(f"ps samples: {sampler.samples} per build host, {len(sampler.lines)} distinct lines")


# (source, key, value): one host's (or the run's) bad value. The first would run
# MARK-underscore on every host if pyinfra ever applied it (operation argument).
ONE_BAD_VALUE = {
    "underscore": ("host", "_shell_executable", f"touch {MARK}-underscore; sh"),
    "sudo": ("data", "_sudo_user", "nobody"),
    "megabyte": ("host", "bake_target", "a" * 1_000_000),
    "nested": ("data", "extra_requirements", "[[[[[[[[[[]]]]]]]]]]"),
    "system dir": ("host", "state_dir", "/etc"),
    "tofu from --data": ("data", "ssh_strict_host_key_checking", "accept-new"),
}


def sshd_logs(fleet: harness.Fleet) -> dict[str, str]:
    """Each host's sshd log, framed so that a lost exec output (a docker exec race seen
    under load) is retried instead of read as an empty log."""
    logs = {}
    for host in fleet.hosts:
        for _ in range(5):
            out = fleet.exec(host, "echo BEGIN; cat /var/log/sshd.log; echo END").output
            if out.startswith("BEGIN") and out.rstrip().endswith("END"):
                logs[host] = out
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"{host}: could not read /var/log/sshd.log: {out[-200:]!r}")
    return logs


@pytest.mark.parametrize("case", list(ONE_BAD_VALUE))
def test_one_bad_value_refuses_the_run_with_zero_connections(
    fleet: harness.Fleet, project: FleetDeploy, case: str
) -> None:
    """Every host is valid but one (or the run's --data is bad): pyinfra connects to
    none of them — each host's sshd log is exactly what it was before the run."""
    source, key, value = ONE_BAD_VALUE[case]
    victim = sorted(fleet.hosts)[-1]
    before = sshd_logs(fleet)
    if source == "host":
        result = project.run(host_data={victim: {key: value}})
        where = f"inventory host {victim}"
    else:
        result = project.run("deploy.py", "--data", f"{key}={value}")
        where = "--data"
    assert result.rc == 2, result.describe()
    assert "invalid pins, no host was contacted" in result.output, result.describe()
    assert f"{where}: {key} = " in result.output, result.describe()
    assert "Traceback" not in result.output, result.describe()
    assert len(result.output) < 20_000, "a refused value is echoed whole"
    assert sshd_logs(fleet) == before, "a host was contacted"
    for host in fleet.hosts:
        assert fleet.exec(host, ["test", "-e", f"{MARK}-{case}"], check=False).exit_code == 1


def test_registry_login_never_in_what_a_run_prints(
    fleet: harness.Fleet, project: FleetDeploy, tmp_path: Path
) -> None:
    """The login goes up (mode 600) and changes with the password, yet no run prints
    the password or its base64: not with --diff, --json, -vvv, nor --dry."""
    host = sorted(h for h in fleet.hosts if not h.startswith("build-"))[0]
    user = "fleet-ci"
    dest = "/var/lib/sagefleet/registry/config.json"
    first, second = (f"pw-{n}-{os.urandom(6).hex()}" for n in (1, 2))
    runs = [
        (("-vvv", "--diff"), first, True),  # creates the file
        (("-vvv", "--diff"), second, True),  # modifies it: where files.put printed a diff
        (("-vvv", "--diff", "--dry"), f"pw-dry-{os.urandom(6).hex()}", False),
        (("-vvv",), second, True),  # up to date: no change
    ]
    printed = []
    for i, (flags, password, applies) in enumerate(runs):
        pw_file = tmp_path / f"password-{i}"
        pw_file.write_text(password + "\n")
        overrides, env = project.prepare()
        env.update(SAGEFLEET_REGISTRY_USER=user, SAGEFLEET_REGISTRY_PASSWORD_FILE=str(pw_file))
        cmd = project.command(overrides, "tests/fleet/login_deploy.py", *flags, "--limit", host)
        result = RunningDeploy(cmd, env).wait(300)
        assert result.ok, result.describe()
        secrets = {
            password,
            base64.b64encode(password.encode()).decode(),
            base64.b64encode(f"{user}:{password}".encode()).decode(),
        }
        leaks = [s for s in secrets if s in result.output]
        assert not leaks, f"run {i} {flags} printed {leaks}:\n{result.describe()}"
        printed.append(result)
        if applies:
            config = json.loads(fleet.exec(host, ["cat", dest]).output)
            auth = config["auths"]["registry.test:5000"]["auth"]
            assert base64.b64decode(auth).decode() == f"{user}:{password}"
            assert fleet.exec(host, ["stat", "-c", "%a", dest]).output.strip() == "600"
    assert printed[0].changed(host) and printed[1].changed(host), printed[1].describe()
    assert not printed[3].changed(host), printed[3].describe()
