"""Rollout on the SSH test fleet: build once, real registry, canary, batches, halt, rollback.

One fleet for the module: build-1 (own dockerd) builds the offline image once and
pushes it with bake to a real registry (Debian's docker-registry, distribution 2.8,
TLS from a CA made here + htpasswd auth) on the docker bridge; gpu-1..gpu-5 (own
dockerd each) pull by digest and run the STAND-IN ComfyUI server of the offline
core stage. gpu-1 is the canary; batch size 2: [gpu-1], [gpu-2, gpu-3], [gpu-4, gpu-5].

Release B (for halt, re-run, rollback) is release A plus one label, built and pushed
by the test on build-1 so the module builds the real image only once. Faults are
real: an iptables REJECT of the service port on a node makes its health check fail
(those runs pass --data rollout_auto_rollback=False: the halt itself is under test);
release C (A whose command never opens the port) fails the canary for the automatic
rollback. The tests run in order and share the fleet's state.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from conftest import require_fleet  # noqa: E402

from sagefleet.offline import build_wheelhouse, serve_wheelhouse  # noqa: E402
from tests.conftest import need  # noqa: E402
from tests.offline_pins import group_file, offline_pins  # noqa: E402

REGISTRY_BIN = "/usr/bin/docker-registry"
ROOT = Path(__file__).resolve().parents[2]
NODES = [f"gpu-{i}" for i in range(1, 6)]
REPO_PATH = "sagefleet/comfyui-docker/complete-cuda"
PORT = 8188
NO_AUTO_ROLLBACK = ("--data", "rollout_auto_rollback=False")


# --------------------------------------------------------------------------- registry


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@contextlib.contextmanager
def registry(workdir: Path, ip: str, user: str = "fleet"):
    """docker-registry serve on ip:<free port>, TLS (a CA made here) + htpasswd (bcrypt)."""
    if not os.access(REGISTRY_BIN, os.X_OK):
        need(f"{REGISTRY_BIN} missing: run scripts/setup-registry", "the test registry")
    workdir.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind((ip, 0))
        port = s.getsockname()[1]
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=sagefleet test CA", "-keyout", "ca.key", "-out", "ca.crt", cwd=workdir)  # fmt: skip
    (workdir / "san.ext").write_text(f"subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={ip}",
             "-keyout", "server.key", "-out", "server.csr", cwd=workdir)  # fmt: skip
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.crt",
             cwd=workdir)  # fmt: skip
    password = secrets.token_urlsafe(24)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    (workdir / "htpasswd").write_text(f"{user}:{hashed}\n")
    (workdir / "config.yml").write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage:\n  filesystem: {{rootdirectory: {workdir}/data}}\n"
        f"http:\n  addr: {ip}:{port}\n"
        f"  tls: {{certificate: {workdir}/server.crt, key: {workdir}/server.key}}\n"
        f"auth:\n  htpasswd: {{realm: sagefleet-test, path: {workdir}/htpasswd}}\n"
    )
    log = open(workdir / "registry.log", "w")
    proc = subprocess.Popen(
        [REGISTRY_BIN, "serve", str(workdir / "config.yml")], stdout=log, stderr=log
    )
    ctx = ssl.create_default_context(cafile=str(workdir / "ca.crt"))
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                urllib.request.urlopen(f"https://{ip}:{port}/v2/", context=ctx, timeout=2)
            except urllib.error.HTTPError as e:
                if e.code == 401:  # up, and it wants credentials
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"registry did not start: {(workdir / 'registry.log').read_text()[-2000:]}"
                )
            time.sleep(0.2)
        yield {"host": f"{ip}:{port}", "user": user, "password": password, "ca": workdir / "ca.crt"}
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


# --------------------------------------------------------------------------- fleet


def wait_docker(fleet: harness.Fleet, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while fleet.exec(name, ["docker", "version"], check=False).exit_code != 0:
        if time.monotonic() > deadline:
            raise harness.FleetError(f"{name}: dockerd not up within {timeout:.0f}s")
        time.sleep(0.5)


def start_registry_fleet(fleet: harness.Fleet, reg: dict, docker_timeout: float = 120) -> None:
    """Bring the fleet up for the registry reg: SSH on every host, dockerd on each (and
    the base image on build-1), reg's CA trusted by every host's dockerd."""
    fleet.up(ready=False)
    fleet._parallel(fleet.wait_ssh_host, fleet.names())
    # Only the build host needs the base image; GPU nodes just need their dockerd.
    fleet._parallel(
        lambda n: (
            fleet.wait_dockerd(n) if n == "build-1" else wait_docker(fleet, n, docker_timeout)
        ),
        fleet.names(),
    )
    ca = reg["ca"].read_text()
    certs = f"/etc/docker/certs.d/{reg['host']}"
    fleet._parallel(
        lambda n: fleet.exec(n, f"mkdir -p {certs} && cat > {certs}/ca.crt <<'EOF'\n{ca}EOF\n"),
        fleet.names(),
    )


def registry_overrides(tmp: Path, reg: dict, settings: str) -> tuple[Path, Path]:
    """(group_data override dir, registry password file) for runs that push to reg: the
    offline profile's bake variables with reg as REGISTRY_URL, then settings (lines)."""
    overrides = tmp / "group_data"
    overrides.mkdir()
    bake_variables = {
        **group_file("offline")["bake_variables"],
        "REGISTRY_URL": reg["host"] + "/sagefleet",
    }
    (overrides / "offline.py").write_text(f"bake_variables = {bake_variables!r}\n{settings}")
    pw_file = tmp / "registry-password"
    pw_file.write_text(reg["password"] + "\n")
    pw_file.chmod(0o600)
    return overrides, pw_file


class Ps:
    """Samples every host's process command lines while a run is in flight."""

    def __init__(self, fleet: harness.Fleet) -> None:
        self.fleet, self.seen, self._stop = fleet, set(), threading.Event()
        self.samples = 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name in self.fleet.hosts:
                with contextlib.suppress(Exception):
                    out = self.fleet.exec(name, ["ps", "-eo", "args"], check=False).output
                    self.seen.update(out.splitlines())
            self.samples += 1
            self._stop.wait(0.5)

    def __enter__(self) -> Ps:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    require_fleet()
    tmp = tmp_path_factory.mktemp("rollout")
    t0 = time.monotonic()
    gw = "172.17.0.1"
    with contextlib.ExitStack() as stack:
        reg = stack.enter_context(registry(tmp / "registry", gw))
        fleet = harness.Fleet(n_ssh=len(NODES), n_build=1, gpu_dockerd=True, workdir=tmp / "fleet")
        stack.callback(fleet.down)
        start_registry_fleet(fleet, reg)
        wheelhouse = tmp / "wheelhouse"
        build_wheelhouse(offline_pins(), wheelhouse)
        url = stack.enter_context(serve_wheelhouse(wheelhouse, gw))
        overrides, pw_file = registry_overrides(
            tmp, reg, "health_timeout_s = 15\nrollout_batch_size = 2\n"
        )
        yield {
            "fleet": fleet,
            "registry": reg,
            "repo": f"{reg['host']}/{REPO_PATH}",
            "tmp": tmp,
            "overrides": overrides,
            "setup_s": time.monotonic() - t0,
            "env": {
                "SAGEFLEET_FLEET": str(fleet.fleet_file),
                "SAGEFLEET_OFFLINE": "1",
                "SAGEFLEET_WHEELHOUSE_URL": url,
                "SAGEFLEET_REGISTRY_USER": reg["user"],
                "SAGEFLEET_REGISTRY_PASSWORD_FILE": str(pw_file),
            },
            "state": {},
        }


def rollout(env, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    summary = env["tmp"] / f"summary-{time.monotonic_ns()}.json"
    cmd = [sys.executable, "-m", "sagefleet.rollout", *args, "--group-data", str(env["overrides"])]
    if "--dry" not in args:
        cmd += ["--summary-json", str(summary)]
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env={**os.environ, **env["env"]},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    proc.seconds = time.monotonic() - t0  # type: ignore[attr-defined]
    proc.output = proc.stdout + proc.stderr  # type: ignore[attr-defined]
    proc.summary = json.loads(summary.read_text()) if summary.exists() else None  # type: ignore[attr-defined]
    print(
        f"[rollout {' '.join(args)}: {proc.seconds:.1f}s rc={proc.returncode}]\n{proc.output[-3000:]}"
    )
    return proc


def running(env, node: str) -> dict | None:
    for _ in range(3):  # docker exec now and then loses a short command's output
        res = env["fleet"].exec(
            node,
            'docker inspect -f \'{"image": {{json .Config.Image}}, "id": {{json .Id}}}\' comfyui',
            check=False,
        )
        if res.exit_code != 0 or res.output.strip():
            break
    return json.loads(res.output) if res.exit_code == 0 else None


def images(env) -> dict[str, str | None]:
    return {n: (running(env, n) or {}).get("image") for n in NODES}


def fault(env, node: str, on: bool) -> None:
    op = "-I" if on else "-D"
    env["fleet"].exec(node, f"iptables {op} INPUT -p tcp --dport {PORT} -j REJECT")


def rollout_with_fault(env, node: str, *args: str) -> subprocess.CompletedProcess:
    """A rollout while node's service port is refused; the fault is lifted afterwards."""
    fault(env, node, True)
    try:
        return rollout(env, *args)
    finally:
        fault(env, node, False)


def make_release_b(env, name: str = "b", extra: str = "") -> str:
    """Release B: release A plus one label, pushed from build-1 (no second real build).
    extra: more Dockerfile lines (release C: a command that never opens the port)."""
    fleet, reg, a = env["fleet"], env["registry"], env["state"]["A"]
    auth = base64.b64encode(f"{reg['user']}:{reg['password']}".encode()).decode()
    config = json.dumps({"auths": {reg["host"]: {"auth": auth}}})
    tag = f"{env['repo']}:release-{name}"
    # The login goes in as a file (put_archive), never through a command line.
    fleet.exec("build-1", "mkdir -p /root/b/cfg && chmod 700 /root/b/cfg")
    fleet._container("build-1").put_archive(
        "/root/b/cfg", harness._tar_one("config.json", config.encode(), 0o600)
    )
    fleet.exec(
        "build-1",
        f"printf 'FROM {a}\\nLABEL org.sagefleet.test.release={name}\\n{extra}' > /root/b/Dockerfile && "
        f"docker build -q -t {tag} /root/b >/dev/null && DOCKER_CONFIG=/root/b/cfg docker push -q {tag} >/dev/null",
    )
    digests = fleet.exec(
        "build-1", f"docker image inspect -f '{{{{json .RepoDigests}}}}' {tag}"
    ).output
    b = next(d for d in json.loads(digests) if d.startswith(env["repo"] + "@"))
    assert b == f"{env['repo']}@{served_digest(env, f'release-{name}')}"
    return b


MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def served_digest(env, tag: str) -> str:
    """The digest the registry serves for REPO_PATH:tag (HEAD of its manifest, over TLS
    with the test CA, basic auth): asked of the registry, not of bake or the nodes."""
    reg = env["registry"]
    auth = base64.b64encode(f"{reg['user']}:{reg['password']}".encode()).decode()
    request = urllib.request.Request(
        f"https://{reg['host']}/v2/{REPO_PATH}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": MANIFEST_TYPES, "Authorization": f"Basic {auth}"},
    )
    ctx = ssl.create_default_context(cafile=str(reg["ca"]))
    with urllib.request.urlopen(request, context=ctx, timeout=10) as response:
        digest = response.headers["Docker-Content-Digest"]
    assert digest and digest.startswith("sha256:"), f"registry served {digest!r} for {tag}"
    return digest


def running_digests(env, node: str) -> list[str]:
    """RepoDigests of the image the node's container really runs (by image ID)."""
    out = (
        env["fleet"]
        .exec(
            node,
            "docker image inspect -f '{{json .RepoDigests}}' \"$(docker inspect -f '{{.Image}}' comfyui)\"",
        )
        .output
    )
    return json.loads(out)


def assert_no_secret(env, text: str) -> None:
    reg = env["registry"]
    b64 = base64.b64encode(f"{reg['user']}:{reg['password']}".encode()).decode()
    assert reg["password"] not in text
    assert b64 not in text


# --------------------------------------------------------------------------- tests


def test_rollout_moves_every_node_then_changes_nothing(env):
    with Ps(env["fleet"]) as ps:
        first = rollout(env)
    assert first.returncode == 0, first.output
    s = first.summary
    assert set(s["moved"]) == set(NODES) and not s["failed"] and not s["untouched"]
    assert s["batches"] == [["gpu-1"], ["gpu-2", "gpu-3"], ["gpu-4", "gpu-5"]]
    target = s["target"]
    assert target.startswith(env["repo"] + "@sha256:")
    assert set(images(env).values()) == {target}
    # The pushed digest is what the registry serves under the tag: bake's metadata is right,
    # and every node runs an image with exactly that digest.
    tag = group_file("offline")["bake_variables"]["IMAGE_LABEL"]  # the pushed tag
    served = f"{env['repo']}@{served_digest(env, tag)}"
    assert target == served, f"rolled out {target}, the registry serves {served}"
    for n in NODES:
        assert served in running_digests(env, n), f"{n}: {running_digests(env, n)}"
    env["state"]["A"] = target
    env["state"]["first_s"] = first.seconds

    # No credential in pyinfra's output or on any host's process command lines.
    assert ps.samples > 0
    assert_no_secret(env, first.output)
    assert_no_secret(env, "\n".join(ps.seen))
    # ... and the login on the hosts is a root-only file.
    mode = env["fleet"].exec("gpu-2", "stat -c %a /var/lib/sagefleet/registry/config.json").output
    assert mode.strip() == "600"

    ids = {n: running(env, n)["id"] for n in NODES}
    second = rollout(env)
    assert second.returncode == 0, second.output
    assert set(second.summary["unchanged"]) == set(NODES) and not second.summary["moved"]
    assert {n: running(env, n)["id"] for n in NODES} == ids  # no container was replaced
    assert "bake needed" not in second.output
    env["state"]["second_s"] = second.seconds


def test_dry_shows_current_to_target_and_changes_nothing(env):
    a = env["state"]["A"]
    b = env["state"]["B"] = make_release_b(env)
    ids = {n: running(env, n)["id"] for n in NODES}
    proc = rollout(env, "--dry", "--image", b)
    assert proc.returncode == 0, proc.output
    for n in NODES:
        line = next(line for line in proc.stdout.splitlines() if line.strip().startswith(f"{n}:"))
        assert f"{a} -> {b}" in line and "would restart" in line
    assert {n: running(env, n)["id"] for n in NODES} == ids
    # B was not even pulled.
    assert env["fleet"].exec("gpu-1", ["docker", "image", "inspect", b], check=False).exit_code != 0


def test_failing_canary_halts_with_later_nodes_untouched(env):
    a, b = env["state"]["A"], env["state"]["B"]
    proc = rollout_with_fault(env, "gpu-1", "--image", b, *NO_AUTO_ROLLBACK)
    assert proc.returncode == 1, proc.output
    s = proc.summary
    assert list(s["failed"]) == ["gpu-1"] and "HTTP port did not answer" in s["failed"]["gpu-1"]
    assert s["untouched"] == NODES[1:] and not s["moved"]
    assert "untouched  gpu-5" in proc.stdout
    assert "Traceback" not in proc.output, proc.output  # a failed health check explains itself
    assert images(env) == {"gpu-1": b, **{n: a for n in NODES[1:]}}


def test_failing_node_in_batch_2_stops_batch_3_and_rerun_continues(env):
    a, b = env["state"]["A"], env["state"]["B"]
    proc = rollout_with_fault(env, "gpu-3", "--image", b, *NO_AUTO_ROLLBACK)
    assert proc.returncode == 1, proc.output
    s = proc.summary
    assert s["unchanged"] == ["gpu-1"] and list(s["moved"]) == ["gpu-2"]
    assert list(s["failed"]) == ["gpu-3"] and s["untouched"] == ["gpu-4", "gpu-5"]
    assert s["halted_at_batch"] == 1
    assert images(env) == {"gpu-1": b, "gpu-2": b, "gpu-3": b, "gpu-4": a, "gpu-5": a}

    again = rollout(env, "--image", b)
    assert again.returncode == 0, again.output
    assert set(again.summary["unchanged"]) == {"gpu-1", "gpu-2", "gpu-3"}
    assert set(again.summary["moved"]) == {"gpu-4", "gpu-5"}
    assert set(images(env).values()) == {b}


def test_rollback_a_node_and_a_group(env):
    a, b = env["state"]["A"], env["state"]["B"]
    proc = rollout(env, "rollback", "--limit", "gpu-5")
    assert proc.returncode == 0, proc.output
    assert proc.summary["moved"] == {"gpu-5": a}
    proc = rollout(env, "rollback", "--limit", "blackwell")  # gpu-2, gpu-4
    assert proc.returncode == 0, proc.output
    assert set(proc.summary["moved"]) == {"gpu-2", "gpu-4"}
    assert images(env) == {"gpu-1": b, "gpu-2": a, "gpu-3": b, "gpu-4": a, "gpu-5": a}
    # Healthy after the rollback: the stand-in answers on every node.
    for n in NODES:
        out = env["fleet"].exec(n, f"curl -fsS http://127.0.0.1:{PORT}/system_stats").output
        assert "stand-in" in out
    print(f"[rollout timings] setup {env['setup_s']:.1f}s, first rollout {env['state']['first_s']:.1f}s, "
          f"second (no change) {env['state']['second_s']:.1f}s")  # fmt: skip


def test_failing_canary_is_rolled_back_automatically(env):
    """Release C never opens the port: the canary fails its health check and goes
    back to the digest it ran before; no other node is touched."""
    before = images(env)
    ids = {n: running(env, n)["id"] for n in NODES[1:]}
    c = make_release_b(env, "c", 'CMD ["sleep", "infinity"]\\n')
    proc = rollout(env, "--image", c)
    assert proc.returncode == 1, proc.output
    s = proc.summary
    assert list(s["failed"]) == ["gpu-1"] and "HTTP port did not answer" in s["failed"]["gpu-1"]
    assert s["auto_rollback"] and s["rolled_back"] == {"gpu-1": before["gpu-1"]}
    assert not s["rollback_failed"] and not s["moved"] and s["untouched"] == NODES[1:]
    assert f"rolled back gpu-1: back on {before['gpu-1']}" in proc.stdout
    assert images(env) == before
    assert {n: running(env, n)["id"] for n in NODES[1:]} == ids
    out = env["fleet"].exec("gpu-1", f"curl -fsS http://127.0.0.1:{PORT}/system_stats").output
    assert "stand-in" in out
