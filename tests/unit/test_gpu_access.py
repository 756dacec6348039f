"""GPU access from recorded engines: tests/unit/data/gpu_access/<case>.json.

A case: {"info": docker info JSON or null, "specs": {path: text}, "fact": the expected
EngineGpuAccess value, "choose": [{"pinned", "gpu_node", "mode", "flags", "problem"}]}
("problem": a part of the refusal message, or null for no refusal). Each case runs
twice: through process() on the fact's output format, and through the fact's real
shell command, both ways it reads the engine (sagefleet.facts.engine): with a
STAND-IN `docker` on PATH that prints the recorded info (the CLI way), and with a
STAND-IN engine API on a unix socket that answers /info with it (the API way).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import socketserver
import subprocess
import threading
from pathlib import Path

import pytest

from sagefleet.facts.gpu import EngineGpuAccess
from sagefleet.facts.util import MARKER
from sagefleet.gpu_access import cdi_spec_devices, choose

DATA = Path(__file__).parent / "data" / "gpu_access"
CASES = sorted(DATA.glob("*.json"))
KEYS = {"description", "info", "specs", "fact", "choose"}


def _params():
    for path in CASES:
        yield pytest.param(json.loads(path.read_text()), id=path.stem)


def test_cases_cover_each_mode_and_refusal():
    seen = {
        (c["mode"], c["problem"] is None)
        for p in CASES
        for c in json.loads(p.read_text())["choose"]
    }
    assert {("nvidia-runtime", True), ("cdi", True), ("none", True), ("none", False)} <= seen
    assert len(CASES) >= 10


def _output(info, specs: dict[str, str]) -> list[str]:
    """What EngineGpuAccess's command prints: each part after its marker line."""
    lines = [MARKER + "info"] + ([json.dumps(info, separators=(",", ":"))] if info else [])
    lines.append(MARKER + "specs")
    for path, text in specs.items():
        lines += [MARKER + "spec:" + path, *text.splitlines(), ""]
    return lines


@pytest.mark.parametrize("case", list(_params()))
def test_process_and_choose(case):
    assert set(case) <= KEYS, f"unknown keys {set(case) - KEYS}"
    dirs = (case["info"] or {}).get("CDISpecDirs") or []
    specs = {p: t for p, t in case["specs"].items() if any(p.startswith(d + "/") for d in dirs)}
    fact = EngineGpuAccess().process(_output(case["info"], specs))
    assert fact == case["fact"]
    _check_choices(fact, case["choose"])


def _check_choices(fact, choices):
    for want in choices:
        got = choose(fact, want["pinned"], want["gpu_node"])
        label = f"{want['pinned']} gpu_node={want['gpu_node']}"
        assert (got.mode, list(got.flags)) == (want["mode"], want["flags"]), label
        if want["problem"] is None:
            assert got.problem is None, label
        else:
            assert got.problem and want["problem"] in got.problem, (label, got.problem)
            assert not got.flags


def _standin_docker(bin_dir: Path, tmp: Path, info: dict | None) -> None:
    """STAND-IN for the docker CLI: `docker info --format` with the one template the
    fact uses (the engine's compact JSON on the first line, as docker prints it, then
    the CDI spec dirs one per line), answered from the recorded info; another
    template: exit 2; no engine: exit 1."""
    dirs = (info or {}).get("CDISpecDirs") or []
    answer = json.dumps(info, separators=(",", ":")) + "".join("\n" + d for d in dirs) + "\n"
    (tmp / "info.out").write_text(answer if info else "")
    (bin_dir / "docker").write_text(
        "#!/bin/sh\n"
        f"[ -s '{tmp}/info.out' ] || exit 1\n"
        "case \"$3\" in '{{json .}}{{range .CDISpecDirs}}{{println}}{{.}}{{end}}') "
        f"cat '{tmp}/info.out' ;; *) exit 2 ;; esac\n"
    )
    (bin_dir / "docker").chmod(0o755)


@contextlib.contextmanager
def _standin_engine(sock: Path, info: dict | None):
    """STAND-IN for the engine's API on a unix socket: GET /info answers the recorded
    info; anything else 404. No engine (info None): a socket nothing listens on."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = json.dumps(info).encode() if self.path == "/info" else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

        def address_string(self):
            return "stand-in"

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    server = Server(str(sock), Handler)
    if info is None:
        server.server_close()  # the socket file stays; connecting is refused
        yield
        return
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def _run_fact(way: str, tmp_path: Path, info: dict | None, cli_too: bool = False) -> dict:
    """EngineGpuAccess through its real shell command, the engine read the given way
    (the API way with cli_too: the stand-in CLI answers too, else it fails the test)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    sock = tmp_path / "engine.sock"
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    if way == "cli" or cli_too:
        _standin_docker(bin_dir, tmp_path, info)
    if way == "cli":
        env["DOCKER_HOST"] = "tcp://stand-in.invalid:2375"  # not a socket: the CLI way
    else:
        assert shutil.which("curl"), "curl is needed for the engine's API way"
        if not cli_too:
            (bin_dir / "docker").write_text("#!/bin/sh\necho 'docker CLI called' >&2; exit 3\n")
            (bin_dir / "docker").chmod(0o755)
        env["DOCKER_HOST"] = f"unix://{sock}"
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    with _standin_engine(sock, info) if way == "api" else contextlib.nullcontext():
        out = subprocess.run(
            ["sh", "-c", EngineGpuAccess().command()], env=env, capture_output=True, text=True
        )
    assert out.returncode == 0, out.stderr
    assert "docker CLI called" not in out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == [MARKER + "engine", way]
    return EngineGpuAccess().process(lines)


@pytest.mark.parametrize("way", ["cli", "api"])
@pytest.mark.parametrize("case", list(_params()))
def test_fact_command_with_standin_engine(case, way, tmp_path):
    """The fact's shell: finds the spec dirs in the engine's info, reads each spec file."""
    root = tmp_path / "root"
    info = case["info"]
    if info is not None:
        info = dict(info, CDISpecDirs=[f"{root}{d}" for d in info.get("CDISpecDirs") or []])
    for path, text in case["specs"].items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_text(text)
    (root / "etc" / "cdi" / "notes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "etc" / "cdi" / "notes.txt").write_text("not a spec\n")
    fact = _run_fact(way, tmp_path, info)
    strip = str(root)
    fact["cdi_spec_dirs"] = [d.removeprefix(strip) for d in fact["cdi_spec_dirs"]]
    fact["spec_errors"] = [e.removeprefix(strip) for e in fact["spec_errors"]]
    assert fact == case["fact"]
    _check_choices(fact, case["choose"])


def test_no_docker_cli(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}
    out = subprocess.run(
        ["/bin/sh", "-c", EngineGpuAccess().command()], env=env, capture_output=True, text=True
    )
    fact = EngineGpuAccess().process(out.stdout.splitlines())
    assert fact["docker"] is False
    assert "not reachable" in choose(fact, "auto", gpu_node=True).problem


@pytest.mark.parametrize("way", ["cli", "api"])
def test_spec_dir_with_space_and_quote_in_file_name(tmp_path, way):
    spec_dir = tmp_path / "cdi dir, (1)"
    spec_dir.mkdir()
    (spec_dir / "it's.yaml").write_text("kind: nvidia.com/gpu\ndevices:\n- name: all\n")
    info = {"ServerVersion": "26.1.5", "Runtimes": {"runc": {}}, "CDISpecDirs": [str(spec_dir)]}
    assert _run_fact(way, tmp_path, info)["cdi_devices"] == ["nvidia.com/gpu=all"]


@pytest.mark.parametrize("way", ["cli", "api"])
def test_a_spec_dir_it_cannot_read_is_named(tmp_path, way):
    """A spec dir whose name holds '"', '\\' or ']' is not read either way, and said so;
    the other dirs still are (the API way asks the CLI then: JSON escapes such names)."""
    odd, good = tmp_path / 'cdi "x"]', tmp_path / "cdi"
    for d in (odd, good):
        d.mkdir()
    (odd / "a.yaml").write_text("kind: nvidia.com/gpu\ndevices:\n- name: '0'\n")
    (good / "b.yaml").write_text("kind: nvidia.com/gpu\ndevices:\n- name: all\n")
    info = {"ServerVersion": "26.1.5", "Runtimes": {}, "CDISpecDirs": [str(odd), str(good)]}
    fact = _run_fact(way, tmp_path, info, cli_too=True)
    assert fact["cdi_devices"] == ["nvidia.com/gpu=all"]
    assert fact["spec_errors"] == [f"{odd}: not read (a CDI spec dir name with '\"', '\\' or ']')"]


@pytest.mark.parametrize(
    ("text", "kind", "names"),
    [
        ("kind: nvidia.com/gpu\ndevices:\n- name: all\n", "nvidia.com/gpu", ["all"]),
        # "name" keys of nested lists (mounts, hooks) are not device names
        ("devices:\n- containerEdits:\n    hooks:\n    - name: x\n  name: '0'\nkind: a/b\n", "a/b", ["0"]),
        ("kind: nvidia.com/gpu # comment\ndevices: []\n", "nvidia.com/gpu", []),
        ('{"kind": "nvidia.com/gpu", "devices": [{"name": "all"}]}', "nvidia.com/gpu", ["all"]),
    ],
)  # fmt: skip
def test_cdi_spec_devices(text, kind, names):
    assert cdi_spec_devices(text) == (kind, names)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: nvidia.com/gpu\ndevices: [{name: all}]\n", "flow style"),
        ("kind: nvidia.com/gpu\ndevices:\n\t- name: all\n", "tab in indentation"),
        ('{"kind": "nvidia.com/gpu", "devices": ', "not valid JSON"),
        ("just words\n", "cannot read line"),
    ],
)
def test_cdi_spec_devices_refuses_what_it_cannot_read(text, message):
    with pytest.raises(ValueError, match=message):
        cdi_spec_devices(text)


def test_choose_rejects_an_unknown_pin():
    with pytest.raises(
        ValueError, match="gpu_access must be one of auto, nvidia-runtime, cdi, none"
    ):
        choose({"docker": True}, "gpus")
