"""The SSH test fleet: real SSH hosts as containers on the local Docker engine.

This is the create/destroy half of a Molecule-style run. ``Fleet`` starts N
containers from two locally built images (never pulled):

- ``sagefleet/testhost-ssh``: sshd (root by key only), python3, flock, curl;
- ``sagefleet/testhost-docker``: the same plus its own dockerd + buildx, run
  privileged with /var/lib/docker on a named volume per host.

It writes a fleet file (the TOML that inventory.py reads) whose hosts are the
containers' IPs on the default bridge, a fresh ed25519 client key per run and a
known_hosts file pinned to each container's own host key, so pyinfra connects
with strict host key checking on. Everything it creates carries the label
``sagefleet.testfleet=<run id>``; ``down()`` removes all of it.

Used by tests/fleet (fixtures), scripts/fleet (by hand) and bench/.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = Path(__file__).resolve().parent / "images"
BASE_IMAGE = os.environ.get("SAGEFLEET_BASE_IMAGE", "sagefleet/base:bookworm")
DEBS_DIR = Path(os.environ.get("SAGEFLEET_CACHE", "/var/cache/sagefleet")) / "trixie" / "debs"
# The engine pieces a build host needs; docker.io ships no CLI in trixie.
ENGINE_DEBS = ("docker.io", "docker-cli", "docker-buildx")
SSH_IMAGE_REPO = "sagefleet/testhost-ssh"
DOCKER_IMAGE_REPO = "sagefleet/testhost-docker"

LABEL = "sagefleet.testfleet"
LABEL_HOST = "sagefleet.testfleet.host"
LABEL_OWNER = "sagefleet.testfleet.owner"
LABEL_INPUTS = "sagefleet.testhost.inputs"

DEFAULT_PREFIX = "sf-test"
SSH_READY_TIMEOUT = float(os.environ.get("SAGEFLEET_FLEET_SSH_TIMEOUT", "60"))
DOCKER_READY_TIMEOUT = float(os.environ.get("SAGEFLEET_FLEET_DOCKER_TIMEOUT", "120"))


class FleetError(RuntimeError):
    """The test fleet could not be created or driven; the message names the host."""


@dataclass
class ExecResult:
    exit_code: int
    output: str


@dataclass
class TestHost:
    """One container of the fleet, as the inventory sees it."""

    __test__ = False  # not a pytest test class

    name: str  # inventory name, e.g. "build-1"
    container: str  # container name on the local engine
    kind: str  # "ssh" or "docker"
    groups: list[str] = field(default_factory=list)
    ip: str = ""
    host_key: str = ""  # "ssh-ed25519 AAAA..." as served by the container


# --------------------------------------------------------------------------- engine


def docker_client() -> docker.DockerClient:
    return docker.from_env(max_pool_size=32, timeout=120)


def engine_problem() -> str | None:
    """Why the fleet cannot run here (no engine, no base image), or None."""
    try:
        client = docker_client()
        client.ping()
    except Exception as e:  # any failure means: no usable engine
        return f"no Docker engine answers ({e.__class__.__name__}: {e}); run scripts/setup-engine"
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        return f"base image {BASE_IMAGE} missing; run scripts/setup-engine"
    if shutil.which("docker") is None:
        return "docker CLI not on PATH (used for image builds and docker save/load)"
    return None


def _run(cmd: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-2000:]
        raise FleetError(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    return proc


# --------------------------------------------------------------------------- images


def _hash_files(h: Any, paths: Iterable[Path]) -> None:
    for p in sorted(paths):
        h.update(p.name.encode() + b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")


def engine_debs(debs_dir: Path = DEBS_DIR) -> list[Path]:
    found = []
    for pkg in ENGINE_DEBS:
        hits = sorted(debs_dir.glob(f"{pkg}_*.deb"))
        if not hits:
            raise FleetError(
                f"{debs_dir}: no {pkg}_*.deb; "
                "run scripts/setup-engine and scripts/setup-fleet-images"
            )
        found.append(hits[-1])
    return found


def _image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """Serialise image builds between concurrent test runs on one machine."""
    path = Path(tempfile.gettempdir()) / f"sagefleet-{name}.lock"
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_images(client: docker.DockerClient | None = None, log: Any = None) -> dict[str, str]:
    """Build the two test host images if their inputs changed; return {"ssh": tag, "docker": tag}.

    Tags are ``<repo>:<hash of inputs>`` (base image ID, Dockerfile, entrypoint,
    sshd config, and for the docker host the .debs), so an unchanged tree builds
    nothing and an edited Dockerfile rebuilds exactly that image.
    """
    client = client or docker_client()
    log = log or (lambda msg: print(f"[fleet] {msg}", file=sys.stderr))
    debs = engine_debs()
    tags = image_tags(client.images.get(BASE_IMAGE).id, IMAGES_DIR, debs)
    ssh_tag, docker_tag = tags["ssh"], tags["docker"]
    common = [IMAGES_DIR / "entrypoint", IMAGES_DIR / "sshd_config"]

    with _lock("testhost-images"):
        for tag, dockerfile, extra, args in (
            (ssh_tag, "Dockerfile.ssh", [], {}),
            (docker_tag, "Dockerfile.docker", debs, {"SSH_IMAGE": ssh_tag}),
        ):
            if _image_exists(client, tag):
                continue
            t0 = time.monotonic()
            with tempfile.TemporaryDirectory(prefix="sagefleet-img-") as ctx:
                for f in [IMAGES_DIR / dockerfile, *common]:
                    shutil.copy2(f, ctx)
                if extra:
                    os.mkdir(Path(ctx) / "debs")
                    for deb in extra:
                        shutil.copy2(deb, Path(ctx) / "debs")
                cmd = ["docker", "build", "--pull=false", "-q", "-f", f"{ctx}/{dockerfile}"]
                cmd += ["-t", tag, "--label", f"{LABEL_INPUTS}={tag.split(':')[1]}"]
                for k, v in args.items():
                    cmd += ["--build-arg", f"{k}={v}"]
                _run([*cmd, ctx], timeout=1800)
            log(f"built {tag} in {time.monotonic() - t0:.0f}s")
    return tags


def image_tags(base_id: str, images_dir: Path, debs: Sequence[Path]) -> dict[str, str]:
    """Tags named by a hash of each image's build inputs (pure; no engine needed)."""
    common = [images_dir / "entrypoint", images_dir / "sshd_config"]
    h = hashlib.sha256(base_id.encode())
    _hash_files(h, [images_dir / "Dockerfile.ssh", *common])
    ssh_tag = f"{SSH_IMAGE_REPO}:{h.hexdigest()[:12]}"
    h = hashlib.sha256(ssh_tag.encode())
    _hash_files(h, [images_dir / "Dockerfile.docker", *debs])
    return {"ssh": ssh_tag, "docker": f"{DOCKER_IMAGE_REPO}:{h.hexdigest()[:12]}"}


def _base_image_tar(client: docker.DockerClient) -> Path:
    """`docker save` of the base image, once per image ID (loaded into build hosts)."""
    image_id = client.images.get(BASE_IMAGE).id.split(":")[-1][:16]
    cache = Path(os.environ.get("SAGEFLEET_FLEET_CACHE", Path.home() / ".cache" / "sagefleet"))
    cache.mkdir(parents=True, exist_ok=True)
    tar = cache / f"base-{image_id}.tar"
    with _lock("base-tar"):
        if not tar.exists():
            tmp = tar.with_suffix(".tmp")
            _run(["docker", "save", "-o", str(tmp), BASE_IMAGE], timeout=600)
            tmp.rename(tar)
    return tar


# --------------------------------------------------------------------------- fleet


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def _in_workdir(name: str) -> property:
    """A read-only Fleet attribute: the file name in the fleet's workdir."""
    return property(lambda self: self.workdir / name)


def default_groups(build: Sequence[str], gpu: Sequence[str]) -> dict[str, list[str]]:
    """build_hosts and gpu_nodes; first gpu node is the canary; odd ones hopper, even blackwell."""
    groups: dict[str, list[str]] = {}
    if build:
        groups["build_hosts"] = list(build)
    if gpu:
        groups["gpu_nodes"] = list(gpu)
        groups["canary"] = [gpu[0]]
        groups["hopper"] = list(gpu[0::2])
        if len(gpu) > 1:
            groups["blackwell"] = list(gpu[1::2])
    return groups


class Fleet:
    """N test hosts on the local engine; a context manager that always tears down.

    + n_ssh: ssh-only hosts, named ``gpu-1..n`` (group gpu_nodes)
    + n_build: build hosts with their own dockerd, named ``build-1..k`` (group build_hosts)
    + groups: group -> host names; replaces the default groups (see default_groups)
    + workdir: where the fleet file, key and known_hosts go (a temp dir if None)
    + name_prefix: container names are ``<prefix>-<run id>-<host>``
    + owner: label value saying who may reap it (default: this machine and PID)
    + gpu_dockerd: the gpu-* hosts run their own dockerd too (kind "docker"), for
      tests that pull and run images on GPU nodes (rollout)

    Examples:
        with Fleet(n_ssh=3, n_build=2) as fleet:
            fleet.pyinfra("exec", "--", "hostname")
            fleet.kill_sshd("gpu-2")
    """

    def __init__(
        self,
        n_ssh: int = 3,
        n_build: int = 0,
        *,
        groups: dict[str, list[str]] | None = None,
        workdir: str | Path | None = None,
        name_prefix: str = DEFAULT_PREFIX,
        run_id: str | None = None,
        owner: str | None = None,
        client: docker.DockerClient | None = None,
        log: Any = None,
        gpu_dockerd: bool = False,
    ) -> None:
        if n_ssh < 0 or n_build < 0 or n_ssh + n_build == 0:
            raise FleetError(f"need at least one host (n_ssh={n_ssh}, n_build={n_build})")
        self.client = client or docker_client()
        self.run_id = run_id or secrets.token_hex(4)
        self.name_prefix = name_prefix
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"sagefleet-fleet-{self.run_id}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = log or (lambda msg: print(f"[fleet {self.run_id}] {msg}", file=sys.stderr))
        build = [f"build-{i}" for i in range(1, n_build + 1)]
        gpu = [f"gpu-{i}" for i in range(1, n_ssh + 1)]
        self.groups = groups if groups is not None else default_groups(build, gpu)
        self.hosts: dict[str, TestHost] = {}
        for name in build + gpu:
            self.hosts[name] = TestHost(
                name=name,
                container=f"{name_prefix}-{self.run_id}-{name}",
                kind="docker" if name in build or gpu_dockerd else "ssh",
                groups=[g for g, members in self.groups.items() if name in members],
            )
        orphans = [h.name for h in self.hosts.values() if not h.groups]
        if orphans:
            raise FleetError(f"hosts in no group: {orphans} (groups={self.groups})")
        self.timings: dict[str, float] = {}

    # ---- paths (in workdir)
    key_file = _in_workdir("id_ed25519")
    known_hosts = _in_workdir("known_hosts")
    fleet_file = _in_workdir("fleet.toml")
    state_file = _in_workdir("state.json")

    def names(self, kind: str | None = None) -> list[str]:
        return [h.name for h in self.hosts.values() if kind is None or h.kind == kind]

    def _host(self, name: str) -> TestHost:
        try:
            return self.hosts[name]
        except KeyError:
            raise FleetError(f"no host {name!r} in this fleet ({sorted(self.hosts)})") from None

    def _container(self, name: str) -> Any:
        return self.client.containers.get(self._host(name).container)

    # ---- create
    def __enter__(self) -> Fleet:
        try:
            return self.up()
        except BaseException:
            self.down()
            raise

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self, ready: bool = True) -> Fleet:
        """Create and start every host; with ready, wait for SSH (and dockerd on build hosts)."""
        t0 = time.monotonic()
        images = ensure_images(self.client, self.log)
        self.timings["images_s"] = time.monotonic() - t0
        self._make_client_key()
        t1 = time.monotonic()
        with ThreadPoolExecutor(max_workers=min(8, len(self.hosts))) as pool:
            list(pool.map(lambda h: self._create(h, images[h.kind]), self.hosts.values()))
        self.timings["create_s"] = time.monotonic() - t1
        self.write_files()
        if ready:
            self.wait_ready()
        self.timings["up_s"] = time.monotonic() - t0
        return self

    def _labels(self, host: TestHost) -> dict[str, str]:
        return {LABEL: self.run_id, LABEL_HOST: host.name, LABEL_OWNER: self.owner}

    def _make_client_key(self) -> None:
        """A fresh ed25519 key pair for this run (cryptography: no ssh-keygen needed here)."""
        if self.key_file.exists():
            return
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private)
        comment = f" sagefleet-testfleet-{self.run_id}\n".encode()
        self.key_file.with_suffix(".pub").write_bytes(public + comment)

    def _container_kwargs(self, host: TestHost) -> dict[str, Any]:
        """Extra docker create arguments: a docker host gets privileges and a volume
        for its own dockerd's /var/lib/docker (no overlay on overlay)."""
        if host.kind != "docker":
            return {}
        vol = self.client.volumes.create(name=f"{host.container}-docker", labels=self._labels(host))
        return {
            "privileged": True,
            "volumes": {vol.name: {"bind": "/var/lib/docker", "mode": "rw"}},
        }

    def _create(self, host: TestHost, image: str) -> None:
        kw = self._container_kwargs(host)
        container = self.client.containers.create(
            image,
            name=host.container,
            hostname=host.name,
            labels=self._labels(host),
            init=True,
            detach=True,
            **kw,
        )
        # The key goes in before sshd first starts, so no login can race it.
        pub = (self.key_file.with_suffix(".pub")).read_bytes()
        container.put_archive("/root/.ssh", _tar_one("authorized_keys", pub, 0o600))
        container.start()
        self._refresh_ip(host)
        host.host_key = self._read_host_key(host)

    def _refresh_ip(self, host: TestHost) -> bool:
        """Re-read the container's bridge IP; True if it changed."""
        c = self.client.containers.get(host.container)
        ip = c.attrs["NetworkSettings"]["Networks"].get("bridge", {}).get("IPAddress", "")
        if not ip:
            raise FleetError(f"{host.name} ({host.container}): no IP on the default bridge")
        changed = ip != host.ip
        host.ip = ip
        return changed

    def _read_host_key(self, host: TestHost, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        c = self.client.containers.get(host.container)
        while True:
            rc, out = c.exec_run(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])
            parts = out.decode(errors="replace").split()
            if rc == 0 and len(parts) >= 2 and parts[0] == "ssh-ed25519":
                return f"{parts[0]} {parts[1]}"
            if time.monotonic() > deadline:
                raise FleetError(
                    f"{host.name} ({host.container}): no host key after {timeout:.0f}s"
                )
            time.sleep(0.2)

    def write_files(self) -> None:
        """(Re)write known_hosts, fleet.toml and state.json from the current host table."""
        _atomic_write(
            self.known_hosts, "".join(f"{h.ip} {h.host_key}\n" for h in self.hosts.values())
        )
        lines = ["# Written by tests/fleet/harness.py; run " + self.run_id, "[groups]"]
        lines += [f"{g} = {json.dumps(members)}" for g, members in self.groups.items()]
        for h in self.hosts.values():
            lines += [
                "",
                f"[hosts.{_toml_str(h.name)}]",
                f"ssh_hostname = {_toml_str(h.ip)}",
                "ssh_port = 22",
                'ssh_user = "root"',
                f"ssh_key = {_toml_str(str(self.key_file))}",
                f"ssh_known_hosts_file = {_toml_str(str(self.known_hosts))}",
                'ssh_strict_host_key_checking = "yes"',
            ]
        _atomic_write(self.fleet_file, "\n".join(lines) + "\n")
        state = {
            "run_id": self.run_id,
            "name_prefix": self.name_prefix,
            "owner": self.owner,
            "groups": self.groups,
            "hosts": [asdict(h) for h in self.hosts.values()],
            "timings": self.timings,
        }
        _atomic_write(self.state_file, json.dumps(state, indent=2) + "\n")

    @classmethod
    def attach(cls, workdir: str | Path, client: docker.DockerClient | None = None) -> Fleet:
        """A Fleet object for a fleet created earlier (scripts/fleet up) from its state.json."""
        workdir = Path(workdir)
        try:
            state = json.loads((workdir / "state.json").read_text())
        except FileNotFoundError:
            raise FleetError(f"{workdir}: no state.json (no fleet was brought up there)") from None
        self = cls.__new__(cls)
        self.client = client or docker_client()
        self.run_id = state["run_id"]
        self.name_prefix = state["name_prefix"]
        self.owner = state["owner"]
        self._own_workdir = False
        self.workdir = workdir
        self.log = lambda msg: print(f"[fleet {self.run_id}] {msg}", file=sys.stderr)
        self.groups = state["groups"]
        self.hosts = {h["name"]: TestHost(**h) for h in state["hosts"]}
        self.timings = state.get("timings", {})
        return self

    # ---- readiness
    def wait_ready(self, names: Iterable[str] | None = None) -> None:
        """Wait for SSH on every host (a real login), then dockerd + base image on build hosts."""
        names = list(names or self.hosts)
        t0 = time.monotonic()
        self._parallel(self.wait_ssh_host, names)
        self.timings["ssh_ready_s"] = time.monotonic() - t0
        build = [n for n in names if self.hosts[n].kind == "docker"]
        if build:
            t1 = time.monotonic()
            self._parallel(self.wait_dockerd, build)
            self.timings["docker_ready_s"] = time.monotonic() - t1

    def _parallel(self, fn: Any, names: list[str]) -> None:
        if not names:
            return
        errors = []
        with ThreadPoolExecutor(max_workers=min(16, len(names))) as pool:
            for name, fut in [(n, pool.submit(fn, n)) for n in names]:
                try:
                    fut.result()
                except Exception as e:
                    errors.append(f"{name}: {e}")
        if errors:
            raise FleetError("fleet not ready:\n  " + "\n  ".join(errors))

    def ssh_client(self, name: str, timeout: float = 5) -> paramiko.SSHClient:
        """A logged-in paramiko client with strict host key checking against our known_hosts."""
        host = self._host(name)
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            host.ip,
            port=22,
            username="root",
            key_filename=str(self.key_file),
            look_for_keys=False,
            allow_agent=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
        return client

    def wait_ssh_host(self, name: str, timeout: float = SSH_READY_TIMEOUT) -> None:
        host = self._host(name)
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                client = self.ssh_client(name)
                try:
                    _, out, _ = client.exec_command("true", timeout=timeout)
                    if out.channel.recv_exit_status() == 0:
                        return
                finally:
                    client.close()
            except paramiko.BadHostKeyException as e:
                raise FleetError(
                    f"{name} ({host.container}, {host.ip}:22): "
                    f"host key does not match known_hosts: {e}"
                ) from e
            except (OSError, paramiko.SSHException, EOFError) as e:
                last = e
            time.sleep(0.3)
        raise FleetError(
            f"{name} ({host.container}, {host.ip}:22): sshd did not answer within {timeout:.0f}s "
            f"(last error: {last!r}); container log:\n{self._logs_tail(name)}"
        )

    def wait_dockerd(self, name: str, timeout: float = DOCKER_READY_TIMEOUT) -> None:
        """Wait for the build host's dockerd, then load the base image into it if missing."""
        host = self._host(name)
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            res = self.exec(name, ["docker", "version", "-f", "{{.Server.Version}}"], check=False)
            if res.exit_code == 0:
                break
            if time.monotonic() > deadline:
                log = self.exec(name, "tail -20 /var/log/dockerd.log", check=False).output
                raise FleetError(
                    f"{name} ({host.container}): dockerd not up within {timeout:.0f}s: "
                    f"{res.output.strip()}\n{log}"
                )
            time.sleep(0.5)
        t_up = time.monotonic()
        self.load_base_image(name)
        # Slowest host per phase (hosts come up in parallel).
        for key, secs in (("dockerd_s", t_up - t0), ("base_load_s", time.monotonic() - t_up)):
            self.timings[key] = max(self.timings.get(key, 0.0), secs)

    def load_base_image(self, name: str) -> bool:
        """`docker load` the base image into a build host's engine; False if it was there."""
        host = self._host(name)
        if self.exec(name, ["docker", "image", "inspect", BASE_IMAGE], check=False).exit_code == 0:
            return False
        tar = _base_image_tar(self.client)
        with open(tar, "rb") as f:
            proc = subprocess.run(
                ["docker", "exec", "-i", host.container, "docker", "load", "-q"],
                stdin=f,
                capture_output=True,
                text=True,
                timeout=600,
            )
        if proc.returncode != 0:
            raise FleetError(f"{name}: docker load of {BASE_IMAGE} failed: {proc.stderr[-1000:]}")
        return True

    def _logs_tail(self, name: str, lines: int = 20) -> str:
        try:
            c = self._container(name)
            out = c.logs(tail=lines).decode(errors="replace")
            rc, sshd = c.exec_run(["tail", f"-{lines}", "/var/log/sshd.log"])
            return out + (sshd.decode(errors="replace") if rc == 0 else "")
        except docker.errors.APIError as e:
            return f"(no log: {e})"

    # ---- drive hosts (fault tests)
    def exec(self, name: str, cmd: str | Sequence[str], check: bool = True) -> ExecResult:
        """Run cmd (shell string or argv) in the host's container as root, not over SSH."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        rc, out = self._container(name).exec_run(argv)
        res = ExecResult(rc, out.decode(errors="replace"))
        if check and rc != 0:
            raise FleetError(f"{name}: {argv} exited {rc}: {res.output[-1000:]}")
        return res

    def kill_sshd(self, name: str) -> None:
        """Stop the sshd listener (sessions and container stay); new connections are refused."""
        self.exec(
            name, "kill $(cat /run/sshd.pid) && while [ -e /run/sshd.pid ]; do sleep 0.1; done"
        )

    def start_sshd(self, name: str, wait: bool = True) -> None:
        self.exec(name, "/usr/sbin/sshd -E /var/log/sshd.log")
        if wait:
            self.wait_ssh_host(name)

    def stop(self, name: str, timeout: int = 2) -> None:
        """Stop the host's container (the host is down; its volume and keys are kept)."""
        self._container(name).stop(timeout=timeout)

    def start(self, name: str, wait: bool = True) -> None:
        """Start a stopped host; on a new bridge IP, rewrite the fleet file and known_hosts."""
        host = self._host(name)
        self._container(name).start()
        if self._refresh_ip(host):
            self.log(f"{name} came back at {host.ip}; fleet file rewritten")
            self.write_files()
        if wait:
            self.wait_ready([name])

    def replace_host_key(self, name: str) -> str:
        """Give the host a new host key (known_hosts keeps the old one); return the new key."""
        host = self._host(name)
        self.exec(
            name,
            "rm -f /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub"
            " && ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key"
            " && kill -HUP $(cat /run/sshd.pid)",
        )
        new = self._read_host_key(host)
        # sshd re-executes on HUP: wait until it serves the new key.
        deadline = time.monotonic() + 15
        while self.served_host_key(name) != new:
            if time.monotonic() > deadline:
                raise FleetError(f"{name}: sshd still serves the old host key after HUP")
            time.sleep(0.2)
        return new

    def trust_host_key(self, name: str) -> None:
        """Pin known_hosts to the key the host serves now (undo replace_host_key's mismatch)."""
        host = self._host(name)
        host.host_key = self._read_host_key(host)
        self.write_files()

    def served_host_key(self, name: str) -> str | None:
        """The host key sshd offers now, read with a bare handshake (no auth), or None."""
        host = self._host(name)
        try:
            with socket.create_connection((host.ip, 22), timeout=3) as sock:
                t = paramiko.Transport(sock)
                try:
                    t.get_security_options().key_types = ["ssh-ed25519"]
                    t.start_client(timeout=3)
                    key = t.get_remote_server_key()
                    return f"{key.get_name()} {key.get_base64()}"
                finally:
                    t.close()
        except (OSError, paramiko.SSHException, EOFError):
            return None

    # ---- pyinfra
    def pyinfra(
        self, *args: str, timeout: float = 600, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``pyinfra -y inventory.py ARGS`` in the repo root against this fleet (unchecked)."""
        exe = Path(sys.executable).with_name("pyinfra")
        cmd = [str(exe) if exe.exists() else "pyinfra", "-y", "inventory.py", *args]
        full_env = {**os.environ, "SAGEFLEET_FLEET": str(self.fleet_file), **(env or {})}
        return subprocess.run(
            cmd, cwd=REPO_ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
        )

    # ---- destroy
    def down(self) -> list[str]:
        """Remove every container and volume labelled with this run; return what was removed."""
        removed = remove_labelled(self.client, run_id=self.run_id)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return removed


# --------------------------------------------------------------------------- teardown by label


def labelled(client: docker.DockerClient, run_id: str | None = None) -> tuple[list, list]:
    """(containers, volumes) of one run, or of every test fleet when run_id is None."""
    label = f"{LABEL}={run_id}" if run_id else LABEL
    # ignore_removed: list() inspects each container after listing; another run that
    # tears down its fleet in between must not make this call fail with a 404.
    containers = client.containers.list(all=True, filters={"label": label}, ignore_removed=True)
    volumes = client.volumes.list(filters={"label": label})
    return containers, volumes


def remove_labelled(
    client: docker.DockerClient | None = None,
    run_id: str | None = None,
    only: Any = None,
) -> list[str]:
    """Force-remove labelled containers (then their volumes); ``only(labels)`` filters."""
    client = client or docker_client()
    containers, volumes = labelled(client, run_id)
    if only is not None:
        containers = [c for c in containers if only(c.labels)]
        volumes = [v for v in volumes if only(v.attrs.get("Labels") or {})]
    removed = []

    def rm_container(c: Any) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True, v=True)
        removed.append(c.name)

    if containers:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(rm_container, containers))
    for v in volumes:
        with contextlib.suppress(docker.errors.NotFound):
            v.remove(force=True)
        removed.append(f"volume {v.name}")
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_orphan(labels: dict[str, str]) -> bool:
    """Made by a process on this machine that has gone (a killed pytest), not by scripts/fleet."""
    owner = labels.get(LABEL_OWNER, "")
    hostname, _, pid = owner.rpartition(":")
    if hostname != socket.gethostname() or not pid.isdigit():
        return False
    return not _pid_alive(int(pid))


def reap_orphans(client: docker.DockerClient | None = None) -> list[str]:
    """Remove fleets whose creating process died without tearing down."""
    return remove_labelled(client, only=is_orphan)


# --------------------------------------------------------------------------- small helpers


def _tar_one(name: str, data: bytes, mode: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.uid, info.gid = len(data), mode, 0, 0
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
