"""Run the real deploy (deploy.py, offline profile) against an SSH test fleet.

The fleet tests (sequence, faults, security) and scripts/demo drive exactly what an
operator runs, `pyinfra -y inventory.py deploy.py`, over SSH with strict host keys,
with three test-side pieces:

- ``Wheelhouse``: STAND-IN SageAttention wheels served over HTTP on the Docker bridge
  gateway. The build hosts' inner builds reach it through two NATs (inner engine ->
  build host container -> outer bridge). It can *hold* the wheels of one build tag,
  which parks a bake inside `pip install` (build lock held, CA secret mounted) until
  the test releases it: faults happen "during the bake" deterministically, not by sleep.
- ``FleetDeploy``: one fleet's deploy runs. Every run writes its own group_data
  override dir and fleet file (so concurrent runs do not share files) and passes the
  pins as data: the build tag of the sageattention wheel, extra group data, and
  host-level data in the fleet file's ``[hosts.NAME]`` tables.
- ``DeployResult``: pyinfra's ``--json`` results (per operation: hosts changed,
  unchanged, failed) with its log (stderr), and helpers that turn them into
  assertion messages naming host + operation.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness

REPO_ROOT = harness.REPO_ROOT
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sagefleet.inputs import REQUIREMENTS_PATH, build_inputs  # noqa: E402
from sagefleet.offline import build_wheelhouse, standin_sage_wheels  # noqa: E402
from sagefleet.pins import Pins, validate  # noqa: E402
from tests.offline_pins import group_file  # noqa: E402

# The sageattention wheel build tag of group_data/all.py; tests bake other tags to
# force a real (complete-stage) rebuild, and MISSING_BUILD is never in the wheelhouse.
BASE_BUILD = group_file("all")["sage_wheels"]["sageattention"]["build_tag"]
MISSING_BUILD = "299.9"  # encodes no torch/CUDA (sagefleet.pins.agreement)
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# A held wheel request is answered after this at the latest, so nothing hangs forever.
HOLD_MAX_S = 120.0

BAKE_OP = "Bake complete-cuda"
LOCK_MESSAGE = "another sagefleet run is building on this host"


def bridge_gateway() -> str:
    """The default bridge's gateway: this machine, as seen from every test host."""
    net = harness.docker_client().networks.get("bridge")
    return net.attrs["IPAM"]["Config"][0]["Gateway"]


# --------------------------------------------------------------------------- wheelhouse


class Wheelhouse:
    """Stand-in wheels over HTTP on ``host``; ``hold(tag)`` parks requests for a build tag.

    + root: directory served (``<release_tag>/<wheel file>``)
    + host: address to listen on (the bridge gateway)

    Examples:
        wh = Wheelhouse(tmp, bridge_gateway()).start()
        wh.add(pins)                      # every wheel those pins name
        wh.hold("301.1")                  # bakes wanting that build block in pip ...
        wh.wait_request("301.1", ip)      # ... until this host's bake asks for it
        wh.release("301.1")
    """

    def __init__(self, root: Path, host: str) -> None:
        self.root = Path(root)
        self.host = host
        self.requests: list[tuple[str, str]] = []  # (client ip, path), in arrival order
        self._holds: dict[str, threading.Event] = {}
        self._cond = threading.Condition()
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> Wheelhouse:
        handler = functools.partial(_WheelHandler, self, directory=str(self.root))
        self._server = _QuietServer((self.host, 0), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "Wheelhouse.start() first"
        return f"http://{self.host}:{self._server.server_address[1]}"

    def close(self) -> None:
        for event in self._holds.values():
            event.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def add(self, pins: Pins) -> None:
        """Write every wheel the pins name, except those of MISSING_BUILD (they 404)."""
        missing = [w for w in pins.image.wheels if w.build_tag == MISSING_BUILD]
        if missing:
            pins = _replace_wheels(pins, [w for w in pins.image.wheels if w not in missing])
        build_wheelhouse(pins, self.root)

    def hold(self, tag: str) -> None:
        """Requests for wheels with build tag ``tag`` wait until ``release(tag)``."""
        with self._cond:
            self._holds[tag] = threading.Event()

    def release(self, tag: str) -> None:
        with self._cond:
            event = self._holds.pop(tag, None)
        if event:
            event.set()

    @contextlib.contextmanager
    def holding(self, tag: str) -> Iterator[None]:
        self.hold(tag)
        try:
            yield
        finally:
            self.release(tag)

    def wait_request(self, tag: str, ip: str | None = None, timeout: float = 120) -> None:
        """Block until a request for a ``tag`` wheel (from ``ip``, if given) has arrived."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._seen(tag, ip):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no request for a {tag} wheel from {ip or 'any host'} within "
                        f"{timeout:.0f}s; requests so far: {self.requests[-10:]}"
                    )
                self._cond.wait(left)

    def _seen(self, tag: str, ip: str | None) -> bool:
        return any(f"-{tag}-" in p and (ip is None or c == ip) for c, p in self.requests)

    def _arrived(self, client: str, path: str) -> threading.Event | None:
        with self._cond:
            self.requests.append((client, path))
            self._cond.notify_all()
            return next((e for t, e in self._holds.items() if f"-{t}-" in path), None)


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up on a held request (pip timeout, killed bake)


class _WheelHandler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, house: Wheelhouse, *args: Any, **kwargs: Any) -> None:
        self.house = house
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        event = self.house._arrived(self.client_address[0], self.path)
        if event is not None:
            event.wait(HOLD_MAX_S)
        super().do_GET()

    def log_message(self, *args: Any) -> None:
        pass


def _replace_wheels(pins: Pins, wheels: list) -> Pins:
    import dataclasses

    return dataclasses.replace(pins, image=dataclasses.replace(pins.image, wheels=tuple(wheels)))


_wheelhouse: Wheelhouse | None = None


def wheelhouse() -> Wheelhouse:
    """The process's wheelhouse (one URL per test session, so the inputs hash of
    unchanged pins stays the same across every deploy of the session)."""
    global _wheelhouse
    if _wheelhouse is None:
        root = Path(tempfile.mkdtemp(prefix="sagefleet-wheelhouse-"))
        _wheelhouse = Wheelhouse(root, bridge_gateway()).start()
        atexit.register(_wheelhouse.close)
    return _wheelhouse


# --------------------------------------------------------------------------- results


class ResultUnreadable(AssertionError):
    """A run's ``--json`` result did not parse, or a question about it has no honest answer."""


@dataclass
class DeployResult:
    """One pyinfra run: exit status, its log (stderr) and its ``--json`` results (stdout).

    Never an empty success: asking which operations ran or changed, or which hosts
    failed, on a run whose stdout did not parse as pyinfra's JSON raises
    ``ResultUnreadable`` (with the parse error and the output), and so does asking
    what changed on a host where no operation ran at all. ``ok`` is false for a
    ``--json`` run that exited 0 without a parsable result.
    """

    args: list[str]
    rc: int
    stdout: str
    stderr: str
    seconds: float
    doc: dict | None = field(default=None)
    summary: dict | None = field(default=None)  # sagefleet's run-summary.json, if written
    parse_error: str | None = field(default=None)

    def __post_init__(self) -> None:
        if self.doc is not None:
            return
        try:
            doc = json.loads(self.stdout)
        except json.JSONDecodeError as e:
            self.parse_error = f"stdout is not JSON ({e}); stdout starts {self.stdout[:200]!r}"
            return
        if not isinstance(doc, dict):
            self.parse_error = f"stdout is JSON but not an object: {self.stdout[:200]!r}"
            return
        self.doc = doc

    @property
    def json_requested(self) -> bool:
        return "--json" in self.args

    @property
    def output(self) -> str:
        """Everything the operator would see."""
        return self.stderr + self.stdout

    @property
    def ok(self) -> bool:
        return self.rc == 0 and (self.doc is not None or not self.json_requested)

    def _results(self) -> dict:
        if self.doc is None:
            raise ResultUnreadable(
                f"pyinfra's --json result did not parse: {self.parse_error}\n{self.describe()}"
            )
        results = self.doc.get("results")
        if not isinstance(results, dict):
            raise ResultUnreadable(f"no 'results' object in pyinfra's JSON\n{self.describe()}")
        return results

    @property
    def operations(self) -> list[dict]:
        return self._results().get("operations") or []

    @property
    def failed_hosts(self) -> list[str]:
        return self._results().get("failed_hosts") or []

    def _pairs(self, key: str) -> list[tuple[str, str]]:
        return [(h, short_op(op["name"])) for op in self.operations for h in op[key]]

    def changed(self, host: str | None = None) -> list[tuple[str, str]]:
        """(host, operation) for every operation that changed something.

        Raises when no operation ran (on ``host``, if given): "nothing changed"
        must never hold on a run that did nothing."""
        if not self.operations:
            raise ResultUnreadable(f"the run lists no operations at all\n{self.describe()}")
        if host is not None and not self.touched(host):
            raise ResultUnreadable(f"no operation ran on {host}\n{self.describe()}")
        return [(h, op) for h, op in self._pairs("success") if host in (None, h)]

    def errors(self, host: str | None = None) -> list[tuple[str, str]]:
        return [(h, op) for h, op in self._pairs("error") if host in (None, h)]

    def status(self, host: str, op: str) -> str | None:
        """'changed', 'no change', 'error', or None (the operation did not run there)."""
        for o in self.operations:
            if short_op(o["name"]) == op:
                for key, word in (("success", "changed"), ("no_change", "no change")):
                    if host in o[key]:
                        return word
                if host in o["error"]:
                    return "error"
        return None

    def touched(self, host: str) -> bool:
        """Whether any operation ran on host (changed, unchanged or failed)."""
        return any(host in o[k] for o in self.operations for k in ("success", "no_change", "error"))

    def lines(self, host: str) -> list[str]:
        """The log lines pyinfra printed for host."""
        tag = f"[{host}]"
        return [line.strip() for line in self.stderr.splitlines() if tag in line]

    def host_output(self, host: str) -> str:
        return "\n".join(self.lines(host))

    def describe(self, tail: int = 60) -> str:
        """For assertion messages: the command, status, failed hosts and the log's tail."""
        log = "\n".join(self.stderr.splitlines()[-tail:])
        if self.doc is None:
            result = f"no parsable JSON result ({self.parse_error})"
        else:
            results = self.doc.get("results") or {}
            changed = [
                (h, short_op(op["name"]))
                for op in results.get("operations") or []
                for h in op["success"]
            ]
            result = f"failed hosts {results.get('failed_hosts') or []}, changed {changed}"
        return (
            f"pyinfra {' '.join(self.args)}\n  exit {self.rc} after {self.seconds:.1f}s, "
            f"{result}\n--- log tail:\n{log}"
        )


def short_op(name: str) -> str:
    """'Build the ComfyUI image | Bake complete-cuda' -> 'Bake complete-cuda'."""
    return name.rsplit(" | ", 1)[-1]


def offenders(result: DeployResult) -> str:
    """'  build-1: Bake complete-cuda' lines, one per changed (host, operation)."""
    return "\n".join(f"  {h}: {op}" for h, op in sorted(result.changed()))


# --------------------------------------------------------------------------- deploys


@dataclass(frozen=True)
class Expected:
    """What a build host should hold after a converge with given pins."""

    image_ref: str
    inputs: str  # the org.sagefleet.inputs label
    requirements: str  # the rendered extra-requirements.txt
    build_dir: str

    @property
    def requirements_path(self) -> str:
        return f"{self.build_dir}/context/{REQUIREMENTS_PATH}"


def wheels_with(build_tag: str) -> dict[str, dict[str, str]]:
    """sage_wheels of group_data/all.py with sageattention's build tag replaced."""
    wheels = {k: dict(v) for k, v in group_file("all")["sage_wheels"].items()}
    wheels["sageattention"]["build_tag"] = build_tag
    return wheels


class FleetDeploy:
    """Real deploys against one test fleet (offline profile, this session's wheelhouse).

    + fleet: a harness.Fleet that is up
    + ca_bundle: the CA bundle handed to pip as a BuildKit secret; by default the
      system bundle with a canary comment line (``canary``) so tests can look for it

    Examples:
        project = FleetDeploy(fleet)
        result = project.run()                                  # converge, base pins
        result = project.run(build_tag="301.1", limit="build-1")
        result = project.run(host_data={"build-2": {"sage_wheels": wheels_with(MISSING_BUILD)}})
    """

    _by_fleet: dict[str, FleetDeploy] = {}

    @classmethod
    def of(cls, fleet: harness.Fleet) -> FleetDeploy:
        """The one FleetDeploy of a fleet (tests sharing a fleet share its CA bundle)."""
        if fleet.run_id not in cls._by_fleet:
            cls._by_fleet[fleet.run_id] = cls(fleet)
        return cls._by_fleet[fleet.run_id]

    def __init__(self, fleet: harness.Fleet, ca_bundle: Path | None = None) -> None:
        self.fleet = fleet
        self.wheelhouse = wheelhouse()
        self.workdir = Path(fleet.workdir) / "deploy"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.canary = f"sagefleet-canary-{fleet.run_id}-{os.urandom(4).hex()}"
        if ca_bundle is None:
            ca_bundle = self.workdir / "pip-ca.pem"
            ca_bundle.write_text(f"# {self.canary}\n" + SYSTEM_CA_BUNDLE.read_text())
        self.ca_bundle = ca_bundle

    # ---- data
    def group_data(self, build_tag: str = BASE_BUILD, **extra: Any) -> dict[str, Any]:
        """The override group data (group_data/offline.py of this run's override dir)."""
        base = {**group_file("all"), **group_file("offline")}
        unhashed = validate(
            {
                **base,
                "sage_release_base": self.wheelhouse.url,
                "sage_wheels": wheels_with(build_tag),
            }
        )
        return {
            "sage_release_base": self.wheelhouse.url,
            "pip_ca_bundle": str(self.ca_bundle),
            # Pinned like a real fleet should: pip verifies every stand-in it installs.
            "sage_wheels": standin_sage_wheels(unhashed),
            **extra,
        }

    def expected(self, **pins_args: Any) -> Expected:
        """The image label and requirements deploy.py computes for the pins that ``pins``
        returns for these arguments (host, build_tag, data, host_data)."""
        pins = self.pins(**pins_args)
        b = build_inputs(pins)
        return Expected(b.image_ref, b.inputs, b.requirements, pins.build.build_dir)

    def pins(
        self,
        host: str | None = None,
        build_tag: str = BASE_BUILD,
        data: Mapping[str, Any] | None = None,
        host_data: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Pins:
        merged = {
            **group_file("all"),
            **group_file("offline"),
            **self.group_data(build_tag, **(data or {})),
            **((host_data or {}).get(host or "", {})),
        }
        return validate(merged)

    # ---- runs
    def prepare(
        self,
        build_tag: str = BASE_BUILD,
        data: Mapping[str, Any] | None = None,
        host_data: Mapping[str, Mapping[str, Any]] | None = None,
        group_source: str | None = None,
    ) -> tuple[Path, dict[str, str]]:
        """Write this run's override dir and fleet file; return (override dir, env).

        ``group_source`` replaces the generated override file (security tests)."""
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=self.workdir))
        overrides = run_dir / "group_data"
        overrides.mkdir()
        gd = self.group_data(build_tag, **(data or {}))
        if group_source is None:
            group_source = "".join(f"{k} = {v!r}\n" for k, v in gd.items())
            for host in [None, *(host_data or {})]:
                with contextlib.suppress(ValueError):  # invalid pins: the run must refuse them
                    self.wheelhouse.add(self.pins(host, build_tag, data, host_data))
        (overrides / "offline.py").write_text(group_source)
        fleet_file = run_dir / "fleet.toml"
        fleet_file.write_text(fleet_toml(self.fleet.fleet_file, host_data or {}))
        env = {
            "SAGEFLEET_OFFLINE": "1",
            "SAGEFLEET_FLEET": str(fleet_file),
            "SAGEFLEET_WHEELHOUSE_URL": self.wheelhouse.url,
            "SAGEFLEET_PIP_CA_BUNDLE": str(self.ca_bundle),
            # sagefleet.faults: this run's summary of failed hosts (machine-readable)
            "SAGEFLEET_RUN_SUMMARY": str(run_dir / "run-summary.json"),
        }
        return overrides, env

    def command(self, overrides: Path, *args: str, json_output: bool = True) -> list[str]:
        exe = Path(sys.executable).with_name("pyinfra")
        cmd = [str(exe) if exe.exists() else "pyinfra", "-y", "inventory.py", *args]
        cmd += ["--group-data", str(overrides)] + (["--json"] if json_output else [])
        return cmd

    def start(
        self, *args: str, limit: str | None = None, json_output: bool = True, **run_args: Any
    ) -> RunningDeploy:
        """Start ``pyinfra -y inventory.py deploy.py`` (or ``args`` after the inventory);
        ``run_args`` go to ``prepare`` (build_tag, data, host_data, group_source)."""
        overrides, env = self.prepare(**run_args)
        argv = list(args) or ["deploy.py"]
        if limit:
            argv += ["--limit", limit]
        cmd = self.command(overrides, *argv, json_output=json_output)
        return RunningDeploy(cmd, env)

    def run(self, *args: str, timeout: float = 600, **kw: Any) -> DeployResult:
        """Run a deploy to the end (see ``start`` for the arguments)."""
        return self.start(*args, **kw).wait(timeout)

    def fact(self, fact: str, *args: str, limit: str | None = None) -> dict[str, Any]:
        """``pyinfra inventory.py fact <fact> ARGS --json``: {host: value}."""
        result = self.run("fact", fact, *args, limit=limit)
        if not result.ok or not result.doc:
            raise AssertionError(f"fact {fact} failed:\n{result.describe()}")
        # {"<fact> (<args>)": {host: value}}
        (values,) = result.doc.values()
        return values

    # ---- host state, read with docker exec (not through the deploy under test)
    def image(self, host: str, ref: str) -> dict | None:
        """``docker image inspect`` on a build host: {id, inputs} or None."""
        res = self.fleet.exec(
            host, ["docker", "image", "inspect", "-f", "{{json .}}", ref], check=False
        )
        if res.exit_code != 0:
            return None
        doc = json.loads(res.output)
        labels = (doc.get("Config") or {}).get("Labels") or {}
        return {"id": doc["Id"], "inputs": labels.get("org.sagefleet.inputs")}

    def lock_free(self, host: str, build_dir: str) -> bool:
        """Whether nothing holds the host's build lock now."""
        lock = f"{build_dir}/build.lock"
        res = self.fleet.exec(host, ["flock", "-n", lock, "true"], check=False)
        return res.exit_code == 0

    def wait_lock_free(self, host: str, build_dir: str, timeout: float = 120) -> float:
        """Wait until the build lock is free; return how long that took."""
        t0 = time.monotonic()
        while not self.lock_free(host, build_dir):
            if time.monotonic() - t0 > timeout:
                ps = self.fleet.exec(host, "ps -eo pid,etime,args", check=False).output
                raise AssertionError(f"{host}: build lock still held after {timeout:.0f}s\n{ps}")
            time.sleep(0.3)
        return time.monotonic() - t0


class RunningDeploy:
    """A pyinfra run in the background (kill it, or wait for its result)."""

    def __init__(self, cmd: list[str], env: Mapping[str, str]) -> None:
        self.args = cmd[1:]
        self.summary_path = env.get("SAGEFLEET_RUN_SUMMARY")
        self.t0 = time.monotonic()
        self._out = tempfile.TemporaryFile()
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=self._out,
            stderr=self._err,
            start_new_session=True,  # a kill reaches pyinfra's children too
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL the run (its process group: pyinfra and anything it started)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def wait(self, timeout: float = 600) -> DeployResult:
        timed_out = False
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rc, timed_out = self.proc.wait(), True
        seconds = time.monotonic() - self.t0
        self._out.seek(0)
        self._err.seek(0)
        out = self._out.read().decode(errors="replace")
        err = self._err.read().decode(errors="replace")
        self._out.close()
        self._err.close()
        summary = None
        if self.summary_path and Path(self.summary_path).exists():
            summary = json.loads(Path(self.summary_path).read_text())
        result = DeployResult(self.args, rc, out, err, seconds, summary=summary)
        if timed_out:
            raise AssertionError(f"pyinfra ran past {timeout:.0f}s:\n{result.describe()}")
        return result


# --------------------------------------------------------------------------- fleet file


def fleet_toml(base: Path, host_data: Mapping[str, Mapping[str, Any]]) -> str:
    """The harness's fleet file with extra ``[hosts.NAME]`` data merged in."""
    doc = tomllib.loads(Path(base).read_text())
    hosts = doc.setdefault("hosts", {})
    for name, data in host_data.items():
        hosts.setdefault(name, {}).update(data)
    lines = ["[groups]"]
    lines += [f"{_key(g)} = {_toml(m)}" for g, m in doc["groups"].items()]
    for name, data in hosts.items():
        lines += ["", f"[hosts.{_key(name)}]"]
        lines += [f"{_key(k)} = {_toml(v)}" for k, v in data.items()]
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")
