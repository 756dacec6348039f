"""Issue 11: every bad input refused before contact, with its exact message.

One table per class (allow-list, size limits, paths, agreement, control-machine
files, hashes); each row is (id, overrides on top of group_data/all.py, the source
that supplied them, exact message). Values that need files on this machine are
written by the tests (tests/unit/pem.py makes the certificates).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import runpy
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pem
import pytest

from sagefleet.inputs import render_requirements
from sagefleet.offline import group_file
from sagefleet.pins import PinError, validate
from sagefleet.pins.agreement import build_tag_for, decode_build_tag
from sagefleet.pins.hashes import main as hashes_main
from sagefleet.pins.keys import KEYS, SAGEFLEET_KEYS
from sagefleet.pins.limits import shown

ROOT = Path(__file__).resolve().parents[2]
META = "whitespace, quotes and shell metacharacters are refused"
UNDERSCORE = (
    "pyinfra applies '_' keys in data as arguments of every operation "
    "(e.g. _sudo, _shell_executable); refused"
)
SENSITIVE = "sensitive; set allow_sensitive_volumes = True to mount it"
OPT = "use one like /opt/sagefleet/build"
SYSTEM = "a system directory; use a directory of its own (e.g. /opt/sagefleet/build)"
HEX = "not a sha256 digest (64 lowercase hex digits)"
D, H, G = "--data", "inventory host gpu-2", "group_data/blackwell.py"
ALL = "group_data/all.py"


def load(name: str) -> dict:
    data = runpy.run_path(str(ROOT / "group_data" / name))
    return {k: v for k, v in data.items() if not k.startswith("__")}


def refusal(overrides: dict, source: str = G, **kwargs) -> str:
    data = {**load("all.py"), **overrides}
    with pytest.raises(PinError) as info:
        validate(data, lambda key: source if key in map(str, overrides) else ALL, **kwargs)
    return str(info.value)


def wheel(**entry) -> dict:
    base = {"version": "2.2.0", "release_tag": "v2.2.0-build.16", "build_tag": "290.129"}
    return {"sageattention": {**base, **entry}}


def deep(n: int) -> list:
    value: list = []
    for _ in range(n):
        value = [value]
    return value


# --- 1. the allow-list -----------------------------------------------------------------------

KEY_CASES = [
    (
        "_shell_executable from --data",
        {"_shell_executable": "touch /tmp/x; sh"},
        D,
        f"--data: _shell_executable = 'touch /tmp/x; sh': {UNDERSCORE}",
    ),
    ("_sudo in host data", {"_sudo": True}, H, f"{H}: _sudo = True: {UNDERSCORE}"),
    ("_su_user in a group file", {"_su_user": "root"}, G, f"{G}: _su_user = 'root': {UNDERSCORE}"),
    (
        "ssh_password",
        {"ssh_password": "hunter2"},
        H,
        f"{H}: ssh_password = 'hunter2': secrets do not belong in data "
        "(use an SSH agent or ssh_key)",
    ),
    (
        "ssh_config_file",
        {"ssh_config_file": "/tmp/evil_config"},
        D,
        f"{D}: ssh_config_file = '/tmp/evil_config': an SSH config can run commands on this "
        "machine (ProxyCommand); not supported",
    ),
    (
        "ssh_paramiko_connect_kwargs",
        {"ssh_paramiko_connect_kwargs": {"sock": "x"}},
        H,
        f"{H}: ssh_paramiko_connect_kwargs = {{'sock': 'x'}}: "
        "arbitrary paramiko arguments are not supported",
    ),
    (
        "ssh_forward_agent",
        {"ssh_forward_agent": True},
        H,
        f"{H}: ssh_forward_agent = True: forwarding the agent lends this machine's keys to "
        "the host; not supported",
    ),
    (
        "winrm connector key",
        {"winrm_username": "admin"},
        H,
        f"{H}: winrm_username = 'admin': connector key not supported by sagefleet "
        "(see sagefleet/pins/keys.py)",
    ),
    (
        "misspelt connector key",
        {"ssh_hostnme": "10.0.0.5"},
        H,
        f"{H}: ssh_hostnme = '10.0.0.5': unknown key (did you mean 'ssh_hostname'?)",
    ),
    (
        "host keys not checked",
        {"ssh_strict_host_key_checking": "no"},
        H,
        f"{H}: ssh_strict_host_key_checking = 'no': must be one of 'yes', 'accept-new'",
    ),
    (
        "trust on first use from --data",
        {"ssh_strict_host_key_checking": "accept-new"},
        D,
        f"{D}: ssh_strict_host_key_checking = 'accept-new': "
        "may only be set per host in the fleet file",
    ),
    (
        "ssh_port as a string",
        {"ssh_port": "22"},
        H,
        f"{H}: ssh_port = '22': must be a whole number, not str",
    ),
    (
        "ssh_port zero",
        {"ssh_port": 0},
        H,
        f"{H}: ssh_port = 0: must be at least 1 and at most 65535",
    ),
    (
        "ssh_hostname with a command",
        {"ssh_hostname": "10.0.0.5;id"},
        H,
        f"{H}: ssh_hostname = '10.0.0.5;id': contains ';': {META}",
    ),
    (
        "ssh_hostname as an option",
        {"ssh_hostname": "-oProxyCommand"},
        H,
        f"{H}: ssh_hostname = '-oProxyCommand': not a host name or IP address",
    ),
    (
        "ssh_user with a space",
        {"ssh_user": "root user"},
        H,
        f"{H}: ssh_user = 'root user': contains ' ': {META}",
    ),
    (
        "ssh_connect_retries too many",
        {"ssh_connect_retries": 1000},
        D,
        f"{D}: ssh_connect_retries = 1000: must be at least 0 and at most 10",
    ),
    (
        "bake_variables not a dict",
        {"bake_variables": "X=1"},
        G,
        f"{G}: bake_variables = 'X=1': must be a dict of NAME -> value",
    ),
    (
        "bake_variables value with a command",
        {"bake_variables": {"TAG": "x$(id)"}},
        D,
        f"{D}: bake_variables.TAG = 'x$(id)': contains '$': {META}",
    ),
    (
        "non-string key",
        {7: "x"},
        G,
        f"{G}: 7 = 'x': keys must be strings, not int",
    ),
]

# --- 2. size limits, before parsing ------------------------------------------------------------

HUGE = "a" * 1_000_000
LIMIT_CASES = [
    (
        "1 MB value",
        {"bake_target": HUGE},
        D,
        f"{D}: bake_target = '{'a' * 99}... (1000002 characters): 1000000 characters, at most 2048",
    ),
    (
        "number of 5000 digits",
        {"service_port": 10**5000},
        G,
        f"{G}: service_port = <a whole number of about 5001 digits>: "
        "number too large (at most 18 digits)",
    ),
    (
        "infinity",
        {"min_free_disk_gb": float("inf")},
        D,
        f"{D}: min_free_disk_gb = inf: not a finite number",
    ),
    (
        "not a number",
        {"probe_timeout_s": float("nan")},
        D,
        f"{D}: probe_timeout_s = nan: not a finite number",
    ),
    (
        "nesting 10000 deep",
        {"extra_requirements": deep(10_000)},
        G,
        f"{G}: extra_requirements = <a list too deeply nested or too large to show>: "
        "nested deeper than 6 levels",
    ),
    (
        "nesting 7 deep",
        {"service_cli_args": deep(6)},
        G,
        f"{G}: service_cli_args = [[[[[[[]]]]]]]: nested deeper than 6 levels",
    ),
    (
        "too many items",
        {"extra_requirements": ["piexif==1.1.3"] * 1000},
        G,
        f"{G}: extra_requirements = {shown(['piexif==1.1.3'] * 1000)}: "
        "more than 500 items in one value",
    ),
    (
        "long nested string",
        {"sage_wheels": wheel(release_tag="v" * 3000)},
        G,
        f"{G}: sage_wheels.sageattention.release_tag = '{'v' * 99}... (3002 characters): "
        "3000 characters, at most 2048",
    ),
    (
        "dict with an int key",
        {"sage_wheels": {1: {"version": "1"}}},
        G,
        f"{G}: sage_wheels = 1: keys must be strings, not int",
    ),
    ("a set", {"bake_files": {"a"}}, G, f"{G}: bake_files = {{'a'}}: a set is not a data value"),
    (
        "bytes",
        {"build_dir": b"/opt/x"},
        G,
        f"{G}: build_dir = b'/opt/x': a bytes is not a data value",
    ),
]

# --- 3. paths ----------------------------------------------------------------------------------


def sensitive_volume(case_id: str, src: str, dst: str, source: str, reason: str) -> tuple:
    """A PATH_CASES row: service volume src -> dst, from source, refused as sensitive."""
    message = f"{source}: service_volumes[{src!r}] = {src!r}: {reason}: {SENSITIVE}"
    return case_id, {"service_volumes": {src: dst}}, source, message


PATH_CASES = [
    (
        "build_dir /etc",
        {"build_dir": "/etc"},
        G,
        f"{G}: build_dir = '/etc': inside the system directory /etc; {OPT}",
    ),
    ("build_dir /tmp", {"build_dir": "/tmp"}, D, f"{D}: build_dir = '/tmp': {SYSTEM}"),
    ("build_dir /root", {"build_dir": "/root"}, D, f"{D}: build_dir = '/root': {SYSTEM}"),
    ("build_dir /var/lib", {"build_dir": "/var/lib"}, H, f"{H}: build_dir = '/var/lib': {SYSTEM}"),
    (
        "state_dir in /usr",
        {"state_dir": "/usr/lib/sagefleet"},
        H,
        f"{H}: state_dir = '/usr/lib/sagefleet': inside the system directory /usr; {OPT}",
    ),
    (
        "state_dir in Docker's data",
        {"state_dir": "/var/lib/docker/sagefleet"},
        D,
        f"{D}: state_dir = '/var/lib/docker/sagefleet': inside the system directory "
        f"/var/lib/docker; {OPT}",
    ),
    (
        "build_dir in .ssh",
        {"build_dir": "/root/.ssh/build"},
        D,
        f"{D}: build_dir = '/root/.ssh/build': hidden directory '.ssh' refused "
        "(.ssh, .docker hold credentials)",
    ),
    sensitive_volume("volume /etc", "/etc", "/app/etc", D, "is /etc"),
    sensitive_volume(
        "volume Docker socket",
        "/var/run/docker.sock",
        "/var/run/docker.sock",
        H,
        "is inside /var/run",
    ),
    sensitive_volume("volume /", "/boot", "/host/boot", H, "is /boot"),
    sensitive_volume("volume /var", "/var", "/data", G, "contains /var/lib/containerd"),
    sensitive_volume(
        "volume of a home directory", "/home/alice/models", "/app/models", G, "is inside /home"
    ),
    sensitive_volume(
        "volume holding the build dir", "/opt/sagefleet", "/x", D, "contains /opt/sagefleet/build"
    ),
    sensitive_volume(
        "volume of the registry login",
        "/var/lib/sagefleet/registry",
        "/x",
        D,
        "is inside /var/lib/sagefleet",
    ),
    (
        "allow_sensitive_volumes as a string",
        {"allow_sensitive_volumes": "yes"},
        D,
        f"{D}: allow_sensitive_volumes = 'yes': must be True or False, not str",
    ),
    (
        "service_listen a name",
        {"service_listen": "localhost"},
        D,
        f"{D}: service_listen = 'localhost': not an IP address (e.g. '127.0.0.1' or '0.0.0.0')",
    ),
    (
        "service_listen not normal",
        {"service_listen": "::0001"},
        H,
        f"{H}: service_listen = '::0001': write the address as '::1'",
    ),
]

# --- 4. pins that agree --------------------------------------------------------------------------

AGREEMENT_CASES = [
    (
        "build tag of another torch and CUDA",
        {"sage_wheels": wheel(build_tag="280.128")},
        G,
        f"{G}: sage_wheels.sageattention.build_tag = '280.128': build tag encodes torch 2.8.0 + "
        "CUDA 12.8, but torch_version is '2.9.0' and cuda_version '12.9' (expected build tag "
        "'290.129'; convention in sagefleet/pins/agreement.py)",
    ),
    (
        "build tag of another CUDA",
        {"sage_wheels": wheel(build_tag="290.128")},
        H,
        f"{H}: sage_wheels.sageattention.build_tag = '290.128': build tag encodes torch 2.9.0 + "
        "CUDA 12.8, but torch_version is '2.9.0' and cuda_version '12.9' (expected build tag "
        "'290.129'; convention in sagefleet/pins/agreement.py)",
    ),
    (
        "torch index of another CUDA",
        {"torch_index_url": "https://download.pytorch.org/whl/cu128"},
        D,
        f"{D}: torch_index_url = 'https://download.pytorch.org/whl/cu128': index serves CUDA "
        "128, but cuda_version is '12.9' (use /cu129)",
    ),
    (
        "requirement differing from a wheel by separators",
        {"extra_requirements": ["sage-attention==2.2.0"]},
        G,
        f"{G}: extra_requirements[0] = 'sage-attention==2.2.0': 'sage-attention' differs from "
        "'sageattention' (sage_wheels.sageattention) only by separators: the same package "
        "misspelt, or another one",
    ),
    (
        "requirement differing from torch by separators",
        {"extra_requirements": ["triton==3.5.0", "Tor.ch==2.9.0"]},
        G,
        f"{G}: extra_requirements[1] = 'Tor.ch==2.9.0': 'Tor.ch' differs from 'torch' "
        "(torch_version) only by separators: the same package misspelt, or another one",
    ),
    (
        "two requirements differing by separators",
        {"extra_requirements": ["opencv-python==4.12.0.88", "opencvpython==4.12.0.88"]},
        G,
        f"{G}: extra_requirements[1] = 'opencvpython==4.12.0.88': 'opencvpython' differs from "
        "'opencv-python' (extra_requirements[0]) only by separators: the same package "
        "misspelt, or another one",
    ),
]

# --- 5. wheel hashes ----------------------------------------------------------------------------

HASH_CASES = [
    ("sha256 too short", {"sage_wheels": wheel(sha256="abc")}, G, f"{G}: sage_wheels.sageattention.sha256 = 'abc': {HEX}"),
    ("sha256 uppercase", {"sage_wheels": wheel(sha256="A" * 64)}, G, f"{G}: sage_wheels.sageattention.sha256 = '{'A' * 64}': {HEX}"),
    ("sha256 a number", {"sage_wheels": wheel(sha256=5)}, D, f"{D}: sage_wheels.sageattention.sha256 = 5: must be a string, not int"),
]  # fmt: skip

CASES = KEY_CASES + LIMIT_CASES + PATH_CASES + AGREEMENT_CASES + HASH_CASES


@pytest.mark.parametrize(
    "overrides, source, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_with_its_message(overrides, source, message):
    assert refusal(overrides, source) == message


def test_enough_distinct_cases():
    assert len(CASES) + len(FILE_CASES) >= 40
    messages = [c[3] for c in CASES]
    assert len(set(messages)) == len(messages)
    inputs = [c[1:3] for c in FILE_CASES]
    assert len(set(map(repr, inputs))) == len(inputs)


def test_messages_are_short():
    for case in CASES:
        assert len(case[3]) < 400, case[0]


def test_platform_must_suit_the_bake_platforms():
    assert refusal({}, bake_platforms=["linux/arm64"]) == (
        "group_data/all.py: sage_wheel_platform = 'linux_x86_64': wheels for this platform "
        "cannot install on bake platform 'linux/arm64' (expected a tag ending in '_aarch64')"
    )
    assert refusal({}, bake_platforms=["windows/amd64"]) == (
        "group_data/all.py: sage_wheel_platform = 'linux_x86_64': bake platform "
        "'windows/amd64' is not one sagefleet knows"
    )
    validate(load("all.py"), bake_platforms=["linux/amd64"])


def test_host_data_may_not_switch_off_a_group_requirement():
    layers = [("group_data/blackwell.py", load("blackwell.py"))]
    assert refusal({"require_sageattn3": False}, H, group_layers=layers) == (
        f"{H}: require_sageattn3 = False: group_data/blackwell.py requires True for its "
        "hosts; it may not be overridden"
    )
    data = {**load("all.py"), **load("blackwell.py")}
    assert validate(data, group_layers=layers).image.require_sageattn3 is True
    # all.py's False is a default, not a requirement: a group may turn it on, not off.
    hopper = [("group_data/hopper.py", load("hopper.py"))]
    assert validate({**load("all.py"), **load("hopper.py")}, group_layers=hopper)


def test_build_tag_convention():
    assert build_tag_for("2.9.0", "12.9") == "290.129"
    assert build_tag_for("2.10.0", "13.0") == "2100.130"
    assert decode_build_tag("2100.130") == ("2.10.0", "13.0")
    assert decode_build_tag("321.1") is None  # a stand-in's tag encodes nothing
    data = {**load("all.py"), **group_file("offline")}
    data["sage_wheels"] = wheel(build_tag="321.1")
    assert validate(data).image.wheel("sageattention").build_tag == "321.1"


def test_good_paths_and_volumes():
    pins = validate(
        {
            **load("all.py"),
            "build_dir": "/srv/sagefleet/build",
            "state_dir": "/var/lib/sagefleet",
            "service_listen": "0.0.0.0",
            "service_volumes": {"/srv/models": "/app/ComfyUI/models"},
        }
    )
    assert pins.service.service_listen == "0.0.0.0"
    assert pins.build.build_dir == "/srv/sagefleet/build"
    assert validate(load("all.py")).service.service_listen == "127.0.0.1"
    allowed = validate(
        {
            **load("all.py"),
            "allow_sensitive_volumes": True,
            "service_volumes": {"/etc/comfyui": "/app/etc"},
        }
    )
    assert allowed.service.service_volumes == (("/etc/comfyui", "/app/etc"),)


def test_trust_on_first_use_only_from_the_fleet_file():
    data = {**load("all.py"), "ssh_strict_host_key_checking": "accept-new"}
    assert validate(data, lambda key: "inventory host build-1")


# --- 6. files from the control machine -------------------------------------------------------

SECRET = "s3cr3t-Pa55"
AUTH = base64.b64encode(f"ci:{SECRET}".encode()).decode()
CERT = pem.certificate()
OPENSSH = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
# (id, key, content (str or bytes; None: no file), exact reason)
FILE_CASES = [
    ("CA: a private key", "pip_ca_bundle", pem.private_key(), "holds a PEM block of type 'PRIVATE KEY'; only certificates are allowed"),
    ("CA: an SSH key", "pip_ca_bundle", OPENSSH, "holds a PEM block of type 'OPENSSH PRIVATE KEY'; only certificates are allowed"),
    ("CA: a certificate and a key", "pip_ca_bundle", CERT + pem.private_key(), "holds a PEM block of type 'PRIVATE KEY'; only certificates are allowed"),
    ("CA: a credentials file", "pip_ca_bundle", f"[default]\naws_secret_access_key = {SECRET}\n", "holds text outside certificates (only # comments are allowed)"),
    ("CA: missing", "pip_ca_bundle", None, "not a regular file on this machine"),
    ("CA: garbage in a block", "pip_ca_bundle", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate 1 does not parse as X.509"),
    ("CA: binary", "pip_ca_bundle", b"\x7fELF\x02\x01\xff" + SECRET.encode(), "not a PEM file (binary content)"),
    ("CA: empty", "pip_ca_bundle", "", "holds no PEM certificate"),
    ("CA: half a block", "pip_ca_bundle", CERT + "-----BEGIN CERTIFICATE-----\nAAAA\n", "holds a PEM block that is not a whole certificate"),
    ("auth: a credential helper", "registry_auth_file", json.dumps({"auths": {}, "credsStore": "evil"}), "may hold only 'auths', not 'credsStore'"),
    ("auth: not JSON", "registry_auth_file", f"user={SECRET}", "not JSON (expected a Docker config.json)"),
    ("auth: an SSH key", "registry_auth_file", OPENSSH, "not JSON (expected a Docker config.json)"),
    ("auth: a list", "registry_auth_file", json.dumps([AUTH]), "not a JSON object (expected a Docker config.json)"),
    ("auth: identity token", "registry_auth_file", json.dumps({"auths": {"r.lan": {"identitytoken": SECRET}}}), "auths['r.lan'] must hold only 'auth'"),
    ("auth: not user:password", "registry_auth_file", json.dumps({"auths": {"r.lan": {"auth": base64.b64encode(SECRET.encode()).decode()}}}), "auths['r.lan'].auth is not base64 of user:password"),
    ("auth: no auths", "registry_auth_file", json.dumps({"auths": {}}), "'auths' must map registries to {'auth': base64 user:password}"),
]  # fmt: skip


@pytest.mark.parametrize(
    "key, content, reason", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES]
)
def test_control_machine_files_are_what_they_claim(tmp_path, key, content, reason):
    path = tmp_path / "file"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    message = refusal({key: str(path)}, D)
    assert message == f"{D}: {key} = {str(path)!r}: {reason}"
    assert SECRET not in message and AUTH not in message


def test_good_files_pass(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text(f"# corporate proxy\n{CERT}\n{pem.certificate('second')}")
    auth = tmp_path / "config.json"
    auth.write_text(json.dumps({"auths": {"registry.lan:5000": {"auth": AUTH}}}))
    pins = validate(
        {**load("all.py"), "pip_ca_bundle": str(bundle), "registry_auth_file": str(auth)}
    )
    assert pins.build.pip_ca_bundle == str(bundle)
    assert pins.service.registry_auth_file == str(auth)


def test_a_bundle_is_parsed_once_per_content(tmp_path, monkeypatch):
    """A bundle that passed is remembered by its bytes (across runs: the cache on disk);
    other bytes at the same path are parsed again, and a refusal is never remembered."""
    from sagefleet.pins import files

    monkeypatch.setattr(files, "BUNDLES_PASSED", tmp_path / "passed")
    parsed = []
    real = files._bundle_refusal
    monkeypatch.setattr(files, "_bundle_refusal", lambda data: parsed.append(data) or real(data))
    bundle = tmp_path / "ca.pem"

    def check(text: str) -> str | None:
        bundle.write_text(text)
        files._ca_bundle_refusal.cache_clear()  # as a new run would start
        return files.ca_bundle_refusal(str(bundle))

    assert check(CERT) is None and check(CERT) is None
    assert len(parsed) == 1
    assert check(CERT + pem.private_key()).startswith("holds a PEM block of type 'PRIVATE KEY'")
    assert check(CERT + pem.private_key()).startswith("holds a PEM block of type 'PRIVATE KEY'")
    assert len(parsed) == 3
    assert check(pem.certificate("second")) is None and len(parsed) == 4


# --- wheel hashes: rendered so pip verifies, computed by a command -----------------------------


def test_sha256_is_rendered_as_a_url_fragment():
    digest = "ab" * 32
    data = {**load("all.py"), "sage_wheels": wheel(sha256=digest)}
    pins = validate(data)
    text = render_requirements(pins.image.template_vars())
    url = pins.image.wheel("sageattention").url
    assert f"\n{url}#sha256={digest}\n" in text
    unhashed = validate(load("all.py"))
    assert "#sha256=" not in render_requirements(unhashed.image.template_vars())


def test_hashes_command_reads_a_wheelhouse(tmp_path, capsys):
    whl = tmp_path / "sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl"
    whl.write_bytes(b"not really a zip, only hashed")
    (tmp_path / "notes.txt").write_text("ignored")
    assert hashes_main([str(tmp_path), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert records == [
        {
            "file": str(whl),
            "name": "sageattention",
            "version": "2.2.0",
            "build_tag": "290.129",
            "sha256": hashlib.sha256(whl.read_bytes()).hexdigest(),
        }
    ]
    assert hashes_main([str(tmp_path / "missing.whl")]) == 2
    out = subprocess.run(
        [sys.executable, "-m", "sagefleet.pins.hashes", str(whl)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    assert f'sage_wheels["sageattention"]["sha256"] = "{records[0]["sha256"]}"' in out


# --- the allow-list is the one place keys are declared ---------------------------------------


def test_every_key_pins_reads_is_declared():
    v = importlib.import_module("sagefleet.pins.validate")

    sections = set(v.IMAGE_KEYS + v.BUILD_KEYS + v.VERIFY_KEYS + v.SERVICE_KEYS)
    assert sections <= set(SAGEFLEET_KEYS), sections - set(SAGEFLEET_KEYS)
    assert set(v.KNOWN_KEYS) == set(SAGEFLEET_KEYS)
    for name, spec in KEYS.items():
        assert spec.types, name
        assert spec.chars or spec.choices or not set(spec.types) & {str}, name


# --- the service listens where the pins say, loopback by default -----------------------------


def test_service_is_published_on_service_listen_only():
    from sagefleet.commands import ServiceRun, health_host, publish_arg
    from sagefleet.operations.service import desired_service

    pins = validate(load("all.py"))
    image = "r.lan/c@sha256:" + "a" * 64
    run = ServiceRun("comfyui", image, 8188, "no", (), (), (), None, pins.service.service_listen)
    argv, local = desired_service(run, False)
    assert argv[argv.index("-p") + 1] == "127.0.0.1:8188:8188"
    assert publish_arg("::1", 8188) == "[::1]:8188:8188"
    assert publish_arg("0.0.0.0", 80) == "0.0.0.0:80:80"
    assert health_host("0.0.0.0") == "127.0.0.1" and health_host("::") == "[::1]"
    assert health_host("10.0.0.5") == "10.0.0.5"
    _, everywhere = desired_service(replace(run, listen="0.0.0.0"), False)
    assert everywhere != local, "the listen address is part of the settings hash"
    from sagefleet.commands import await_service
    from sagefleet.facts.service import ServiceHealth

    fact = ServiceHealth().command("comfyui", 8188, "/var/lib/sagefleet", listen="10.0.0.5")
    assert "http://10.0.0.5:8188/" in fact and "127.0.0.1" not in fact
    wait = await_service("comfyui", 8188, 60, 2, "/var/lib/sagefleet", "::")
    assert "http://[::1]:8188/" in wait


def test_pip_verifies_the_rendered_hash(tmp_path):
    """The URL form the requirements carry (url#sha256=...) makes pip itself refuse a
    wheel whose bytes differ: a real pip, a stand-in wheel, no network."""
    from sagefleet.offline import standin_sage_wheels, standin_wheel_bytes

    base = {**load("all.py"), **group_file("offline")}
    pins = validate({**base, "sage_release_base": f"file://{tmp_path}"})
    hashed = validate({**base, "sage_release_base": f"file://{tmp_path}",
                       "sage_wheels": standin_sage_wheels(pins)})  # fmt: skip
    wheel = hashed.image.wheel("sageattention")
    path = tmp_path / wheel.release_tag / wheel.filename
    path.parent.mkdir()
    path.write_bytes(standin_wheel_bytes(wheel))
    assert wheel.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    def pip_download(url: str) -> subprocess.CompletedProcess:
        out = tempfile.mkdtemp(dir=tmp_path)  # a fresh dir: pip reuses a downloaded file
        return subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-index", "-q",
             "-d", out, url],
            capture_output=True, text=True,
        )  # fmt: skip

    assert pip_download(wheel.pip_url).returncode == 0
    path.write_bytes(standin_wheel_bytes(wheel) + b"tampered")
    refused = pip_download(wheel.pip_url)
    assert refused.returncode != 0 and "do not match the hashes" in refused.stderr.lower()


# --- the run's refusal, with pyinfra's own inventory ------------------------------------------


class _Hostile(dict):
    """A value a group file could build: its items() raises."""

    def items(self):
        raise RuntimeError("boom")


def _state(hosts):
    from pyinfra.api import Config, Inventory, State

    return State(Inventory((hosts, {})), Config())


def test_any_exception_in_validation_is_a_refusal():
    from sagefleet.pins import validate_inventory

    data = load("all.py")
    state = _state([("a", data), ("c", {**data, "service_volumes": _Hostile()})])
    assert validate_inventory(state.inventory) == [
        "validation failed: RuntimeError: 'boom' (host c)"
    ]


def test_dry_lists_tofu_hosts_and_unhashed_wheels():
    from sagefleet.pins import validate_inventory
    from sagefleet.validation import dry_notes

    data = load("all.py")
    hashed = {name: {**entry, "sha256": "ab" * 32} for name, entry in data["sage_wheels"].items()}
    state = _state(
        [
            ("a", {**data, "sage_wheels": hashed}),
            ("b", {**data, "ssh_strict_host_key_checking": "accept-new"}),
        ]
    )
    pins: dict = {}
    assert validate_inventory(state.inventory, pins=pins) == []
    assert dry_notes(state, pins) == [
        "host keys trusted on first use (fleet file: ssh_strict_host_key_checking = "
        "'accept-new'): b",
        "warning: no sha256 pinned for sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl "
        "(hosts b): pip cannot verify it; python -m sagefleet.pins.hashes computes one",
        "warning: no sha256 pinned for sageattn3-1.0.0-290.129-cp312-cp312-linux_x86_64.whl "
        "(hosts b): pip cannot verify it; python -m sagefleet.pins.hashes computes one",
    ]
