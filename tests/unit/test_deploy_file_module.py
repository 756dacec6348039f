"""deploys.build.deploy_file_known_to_inspect: frames of the deploy file pyinfra
exec()s map to a module for inspect (what pyinfra's CLI asks for every operation
call), so inspect stops scanning sys.modules for them."""

from __future__ import annotations

import inspect
import sys

from sagefleet.deploys.build import deploy_file_known_to_inspect


def test_frames_of_an_execd_deploy_file_map_to_a_module(tmp_path, monkeypatch):
    deploy = tmp_path / "deploy.py"
    deploy.write_text("import sys\nframe = sys._getframe()\n")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(deploy.read_text(), "deploy.py", "exec"), scope)  # as pyinfra_cli does
    assert inspect.getmodule(scope["frame"]) is None  # no module: each lookup scans

    name = deploy_file_known_to_inspect("deploy.py")
    try:
        assert inspect.getmodule(scope["frame"]) is sys.modules[name]
        assert deploy_file_known_to_inspect("deploy.py") == name  # once per file
        assert deploy_file_known_to_inspect(None) is None
    finally:
        sys.modules.pop(name, None)
