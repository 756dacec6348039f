"""sagefleet.fleet: the fleet TOML file becomes pyinfra groups, or a FleetError that says where."""

from __future__ import annotations

import pytest

from sagefleet.fleet import FleetError, fleet_path, load_fleet, parse_fleet

FLEET = """
[groups]
build_hosts = ["build-1"]
gpu_nodes = ["gpu-1", "gpu-2"]
hopper = ["gpu-1"]

[hosts.build-1]
ssh_hostname = "10.0.0.5"
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("SAGEFLEET_FLEET", raising=False)
    monkeypatch.delenv("SAGEFLEET_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)


# Fleet-file SSH hosts refuse unknown or changed host keys unless their table says otherwise.
STRICT = {"ssh_strict_host_key_checking": "yes"}


def test_load_fleet_file(tmp_path):
    (tmp_path / "f.toml").write_text(FLEET)
    assert load_fleet(tmp_path / "f.toml") == {
        "build_hosts": [("build-1", {"ssh_hostname": "10.0.0.5", **STRICT})],
        "gpu_nodes": [("gpu-1", STRICT), ("gpu-2", STRICT)],
        "hopper": [("gpu-1", STRICT)],
    }


def test_no_fleet_file_means_local_build_host():
    assert fleet_path() is None
    assert load_fleet() == {"build_hosts": ["@local"]}


def test_fleet_from_env_then_cwd(tmp_path, monkeypatch):
    (tmp_path / "fleet.toml").write_text('[groups]\nbuild_hosts = ["cwd-host"]\n')
    assert load_fleet() == {"build_hosts": [("cwd-host", STRICT)]}
    (tmp_path / "env.toml").write_text('[groups]\nbuild_hosts = ["@docker/env-host"]\n')
    monkeypatch.setenv("SAGEFLEET_FLEET", str(tmp_path / "env.toml"))
    assert load_fleet() == {"build_hosts": [("@docker/env-host", {})]}


def test_offline_adds_every_host_to_the_offline_group(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGEFLEET_OFFLINE", "1")
    assert load_fleet() == {"build_hosts": ["@local"], "offline": ["@local"]}
    (tmp_path / "f.toml").write_text(FLEET)
    assert load_fleet(tmp_path / "f.toml")["offline"] == ["build-1", "gpu-1", "gpu-2"]


def test_offline_group_in_the_file_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGEFLEET_OFFLINE", "1")
    (tmp_path / "f.toml").write_text('[groups]\nbuild_hosts = ["a", "b"]\noffline = ["a"]\n')
    assert load_fleet(tmp_path / "f.toml")["offline"] == [("a", STRICT)]


def test_file_errors(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(FleetError) as info:
        load_fleet(missing)
    assert str(info.value) == (
        f"{missing}: fleet file not found (set SAGEFLEET_FLEET or create fleet.toml)"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("[groups\n")
    with pytest.raises(FleetError, match=rf"^{bad}: not valid TOML: "):
        load_fleet(bad)


S = "fleet.toml"
BAD = [
    (
        {"groups": {"a": ["h"]}, "host": {}},
        f"{S}: unknown table(s) ['host']; expected [groups] and [hosts.NAME]",
    ),
    ({}, f"{S}: groups: at least one group of hosts is required"),
    ({"groups": {}}, f"{S}: groups: at least one group of hosts is required"),
    ({"groups": ["h"]}, f"{S}: groups: at least one group of hosts is required"),
    ({"groups": {"GPU": ["h"]}}, f"{S}: groups.GPU: group names are lower_snake_case"),
    ({"groups": {"gpu": "h"}}, f"{S}: groups.gpu = 'h': expected a list of host names"),
    ({"groups": {"gpu": ["h", 7]}}, f"{S}: groups.gpu = ['h', 7]: expected a list of host names"),
    ({"groups": {"gpu": ["h;id"]}}, f"{S}: groups.gpu: host name 'h;id' is not valid"),
    (
        {"groups": {"gpu": ["-oProxyCommand=x"]}},
        f"{S}: groups.gpu: host name '-oProxyCommand=x' is not valid",
    ),
    ({"groups": {"gpu": ["@ssh/x"]}}, f"{S}: groups.gpu: host name '@ssh/x' is not valid"),
    ({"groups": {"gpu": ["h"]}, "hosts": {"other": {}}}, f"{S}: hosts.other: host is in no group"),
    (
        {"groups": {"gpu": ["h"]}, "hosts": {"h": "x"}},
        f"{S}: hosts.h: expected a table of host data",
    ),
    (
        {"groups": {"gpu": ["h"]}, "hosts": ["h"]},
        f"{S}: hosts: expected [hosts.NAME] tables of host data",
    ),
    ({"groups": {"gpu": ["h"]}, "hosts": {"other": "x"}}, f"{S}: hosts.other: host is in no group"),
]


@pytest.mark.parametrize("doc, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_parse_fleet_errors(doc, message):
    with pytest.raises(FleetError) as info:
        parse_fleet(doc, S)
    assert str(info.value) == message


def _offline_host_data(tmp_path, overrides: str | None = None) -> dict:
    """The offline profile's data of a host as pyinfra's CLI loads the inventory, in a
    fresh interpreter (loading inventory.py installs the validation hook and reads the
    fleet: process-wide state that earlier in-process pyinfra runs of the suite share)."""
    import json
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    dirs = []
    if overrides is not None:
        (tmp_path / "over").mkdir()
        (tmp_path / "over" / "offline.py").write_text(overrides)
        dirs.append(str(tmp_path / "over"))
    code = textwrap.dedent(
        f"""
        import json
        from pyinfra.api import State
        from pyinfra.context import ctx_state
        from pyinfra_cli.inventory import make_inventory
        state = State()
        state.cwd = {str(root)!r}
        with ctx_state.use(state):
            inventory = make_inventory(
                {str(root / "inventory.py")!r}, cwd={str(root)!r}, group_data_directories={dirs!r}
            )
        data = inventory.get_host("@local").data
        print(json.dumps({{k: data.get(k) for k in ("sage_release_base", "pip_ca_bundle")}}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_offline_run_data_comes_from_the_inventory_not_group_data(tmp_path, monkeypatch):
    """group_data is data only: the wheelhouse URL and the CA bundle of the run reach
    the offline group through the inventory (sagefleet.offline.offline_group_data)."""
    from sagefleet.offline import group_file

    assert "sage_release_base" not in group_file("offline")
    monkeypatch.setenv("SAGEFLEET_OFFLINE", "1")
    monkeypatch.setenv("SAGEFLEET_WHEELHOUSE_URL", "http://wheels.test:9")
    monkeypatch.setenv("SAGEFLEET_PIP_CA_BUNDLE", "/etc/ssl/test-ca.pem")
    assert _offline_host_data(tmp_path) == {
        "sage_release_base": "http://wheels.test:9",
        "pip_ca_bundle": "/etc/ssl/test-ca.pem",
    }


def test_a_group_data_override_wins_over_the_run_data(tmp_path, monkeypatch):
    """A --group-data offline.py (the security tests' hostile files) overrides it."""
    monkeypatch.setenv("SAGEFLEET_OFFLINE", "1")
    monkeypatch.setenv("SAGEFLEET_WHEELHOUSE_URL", "http://wheels.test:9")
    got = _offline_host_data(tmp_path, "sage_release_base = 'http://other.test:1'\n")
    assert got["sage_release_base"] == "http://other.test:1"
    assert got["pip_ca_bundle"] == "/etc/ssl/certs/ca-certificates.crt"


def test_trust_on_first_use_only_where_the_fleet_file_says_so(tmp_path):
    (tmp_path / "f.toml").write_text(
        '[groups]\nbuild_hosts = ["a", "b", "@docker/c"]\n'
        '[hosts.b]\nssh_strict_host_key_checking = "accept-new"\n'
    )
    assert load_fleet(tmp_path / "f.toml") == {
        "build_hosts": [
            ("a", STRICT),
            ("b", {"ssh_strict_host_key_checking": "accept-new"}),
            ("@docker/c", {}),
        ]
    }
