"""The rollout's in-process pyinfra runs (sagefleet.rollout.session) and its checks
before contact (sagefleet.rollout.cli), on real pyinfra: an inventory file written
here, the @local connector (commands run on this machine), no SSH and no mocks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from pyinfra import host
from pyinfra.api import OperationError
from pyinfra.operations import server

from sagefleet.deploys.rollout import NodePlan
from sagefleet.pins import ServicePins
from sagefleet.rollout import cli, driver, session
from sagefleet.rollout.driver import node_result
from sagefleet.rollout.plan import NodeResult

A = "reg:5000/s/complete-cuda@sha256:" + "a" * 64
B = "reg:5000/s/complete-cuda@sha256:" + "b" * 64


@pytest.fixture
def local(tmp_path: Path) -> session.Target:
    (tmp_path / "inventory.py").write_text('nodes = ["@local"]\n')
    return session.Target(inventory=str(tmp_path / "inventory.py"), cwd=str(tmp_path))


def test_the_failing_operation_names_the_reason(local):
    def prepare():
        server.shell(name="Fine", commands=["true"])
        server.shell(
            name="Gate", commands=["echo noise; echo 'sagefleet: gate said no' >&2; exit 1"]
        )
        server.shell(name="Never", commands=["touch never-run"])
        return "plan"

    runs = session.run(local, ["@local"], prepare)
    run = runs["@local"]
    assert not run.ok and run.error == "gate said no [Gate]"
    assert run.value == "plan"  # what prepare returned stays readable
    assert not (Path(local.cwd) / "never-run").exists()


def test_without_a_sagefleet_line_the_last_stderr_line_is_the_reason(local):
    def prepare():
        server.shell(
            name="Pull", commands=["echo 'first' >&2; echo 'denied: no access' >&2; false"]
        )

    assert session.run(local, ["@local"], prepare)["@local"].error == "denied: no access [Pull]"


def test_success_returns_the_plan_and_op_meta_tells_change(local):
    def prepare():
        return server.shell(name="Changes", commands=["true"])

    runs = session.run(local, ["@local"], prepare)
    assert runs["@local"].ok and runs["@local"].error is None
    assert runs["@local"].value.did_change()


def test_an_exception_while_preparing_fails_that_host(local):
    def prepare():
        raise OperationError("no previous digest recorded on this node")

    run = session.run(local, ["@local"], prepare)["@local"]
    assert not run.ok and run.error == "OperationError: no previous digest recorded on this node"


def test_an_operation_raising_while_executing_fails_the_host(local):
    from pyinfra.api import operation

    @operation()
    def explodes():
        if host.state.is_executing:
            raise OperationError("engine vanished")
        yield "true"

    def prepare():
        explodes()

    run = session.run(local, ["@local"], prepare)["@local"]
    assert not run.ok and "engine vanished" in run.error


def test_facts_only_look_runs_no_operation(local):
    def prepare():
        server.shell(name="Would change", commands=["touch changed"])
        return host.name

    run = session.run(local, ["@local"], prepare, execute=False)["@local"]
    assert run.ok and run.value == "@local"
    assert not (Path(local.cwd) / "changed").exists()


def test_finish_reads_after_the_run_and_its_error_fails_the_host(local):
    def finish(value):
        raise RuntimeError(f"no pushed digest after {value}")

    run = session.run(local, ["@local"], lambda: "push", finish=finish)["@local"]
    assert not run.ok and run.error == "RuntimeError: no pushed digest after push"


def test_node_result_from_the_service_operation(local):
    def prepare(cmds):
        def inner():
            service = server.shell(name="Service", commands=cmds)
            server.shell(name="Health", commands=["echo 'sagefleet: health check failed: HTTP port did not answer' >&2; exit 1"])  # fmt: skip
            return NodePlan(image=B, before=A, service=service)

        return inner

    failed = node_result(session.run(local, ["@local"], prepare(["true"]))["@local"])
    assert failed.status == "failed" and failed.replaced and failed.before == A
    assert failed.reason == "health check failed: HTTP port did not answer [Health]"
    # A service step that yielded nothing (noop) replaced nothing: no rollback needed.
    kept = node_result(session.run(local, ["@local"], prepare([]))["@local"])
    assert kept.status == "failed" and not kept.replaced


# --------------------------------------------------------------------------- before contact


FLEET = """\
gpu_nodes = ["gpu-1", "gpu-2", "gpu-3", "gpu-10"]
blackwell = ["gpu-2", "gpu-10"]
canary = ["gpu-1"]
build_hosts = ["build-1"]
"""


@pytest.fixture
def fleet(tmp_path: Path) -> session.Target:
    (tmp_path / "inventory.py").write_text(FLEET)
    return session.Target(inventory=str(tmp_path / "inventory.py"), cwd=str(tmp_path))


def test_limit_takes_pyinfra_patterns_groups_and_globs(fleet):
    inv = fleet.inventory_obj()
    assert cli.select_nodes(inv, []) == ["gpu-1", "gpu-2", "gpu-3", "gpu-10"]
    assert cli.select_nodes(inv, ["blackwell"]) == ["gpu-2", "gpu-10"]
    assert cli.select_nodes(inv, ["gpu-?"]) == ["gpu-1", "gpu-2", "gpu-3"]
    assert cli.select_nodes(inv, ["gpu-3", "blackwell"]) == ["gpu-2", "gpu-3", "gpu-10"]
    with pytest.raises(cli.UsageError, match="'gpu-9' matches no GPU node"):
        cli.select_nodes(inv, ["gpu-9"])
    with pytest.raises(cli.UsageError, match="'build-1' matches no GPU node"):
        cli.select_nodes(inv, ["build-1"])


def test_data_overrides_are_parsed_as_pyinfra_does(tmp_path):
    t = session.Target.from_cli(["rollout_batch_size=4", "rollout_auto_rollback=False"], [])
    assert t.data == {"rollout_batch_size": 4, "rollout_auto_rollback": False}
    with pytest.raises(ValueError, match="key=value"):
        session.Target.from_cli(["rollout_batch_size"], [])


def _Pins(size=2, canary="canary", auto=True):  # noqa: N802 - reads like the Pins it stands for
    service = ServicePins(
        rollout_batch_size=size, rollout_canary_group=canary, rollout_auto_rollback=auto
    )
    return SimpleNamespace(service=service)


def test_settings_come_from_the_pins_and_must_agree(fleet):
    inv = fleet.inventory_obj()
    nodes = ["gpu-1", "gpu-2"]
    args = cli.parser().parse_args([])
    got = cli.settings(args, inv, {"gpu-1": _Pins(3), "gpu-2": _Pins(3)}, nodes)
    assert got.batch_size == 3 and got.canary == ("gpu-1",) and got.auto_rollback
    args = cli.parser().parse_args(["--batch-size", "5", "--canary-group", "blackwell"])
    got = cli.settings(args, inv, {"gpu-1": _Pins(3), "gpu-2": _Pins(3)}, nodes)
    assert got.batch_size == 5 and got.canary == ("gpu-2", "gpu-10")
    with pytest.raises(cli.UsageError, match="rollout_auto_rollback differs.*gpu-2=False"):
        cli.settings(cli.parser().parse_args([]), inv,
                     {"gpu-1": _Pins(), "gpu-2": _Pins(auto=False)}, nodes)  # fmt: skip


def test_image_must_be_a_digest(fleet):
    inv = fleet.inventory_obj()
    for bad in (A.split("@")[0] + ":latest", A + ";id", "$(id)@sha256:" + "a" * 64):
        args = cli.parser().parse_args(["--image", bad])
        with pytest.raises(cli.UsageError, match="must be repo@sha256"):
            cli.resolve_target(args, fleet, inv)
    assert cli.resolve_target(cli.parser().parse_args(["--image", A]), fleet, inv) == A


def test_bad_pins_stop_before_any_contact(tmp_path, capsys):
    (tmp_path / "group_data").mkdir()
    project = Path(__file__).resolve().parents[2]
    all_py = (project / "group_data" / "all.py").read_text()
    (tmp_path / "group_data" / "all.py").write_text(all_py + "\nrollout_batch_size = 0\n")
    (tmp_path / "inventory.py").write_text(FLEET)
    t = session.Target(inventory=str(tmp_path / "inventory.py"), cwd=str(tmp_path))
    with pytest.raises(cli.UsageError, match="rollout_batch_size = 0: must be a whole number"):
        cli.validated_pins(t.inventory_obj(), t.cwd)


# --------------------------------------------------------------------------- the plan step


def _node_deploy(workdir: Path):
    """A stand-in for rollout_node on @local: a directory step (the 'service') and a
    check that, like the real health check, is no change while planning and leaves a
    file behind when it runs."""
    from pyinfra.api import deploy, operation
    from pyinfra.operations import files

    @operation()
    def check(marker: str):
        if not host.state.is_executing:
            host.noop("checked when the operations run")
            return
        yield f"touch {marker}"

    @deploy("Stand-in node")
    def node(image=None, health_if=None):
        service = files.directory(name="Service", path=str(workdir / "svc"))
        # A step that only shows itself when run: the plan must not run the steps.
        check(name="Step", marker=str(workdir / "step-ran"))
        check(name="Health check", marker=str(workdir / "healthy"), _if=health_if)
        return NodePlan(image=image, before=image, service=service)

    return node


def test_a_node_with_nothing_to_do_is_settled_and_only_health_checked(local, tmp_path):
    (tmp_path / "svc").mkdir()
    done = driver.settled(local, ["@local"], B, deploy=_node_deploy(tmp_path))
    assert done == {"@local": NodeResult("unchanged", image=B, before=B)}
    assert (tmp_path / "healthy").exists() and not (tmp_path / "step-ran").exists()


def test_a_node_with_a_change_is_left_to_its_batch_untouched(local, tmp_path):
    done = driver.settled(local, ["@local"], B, deploy=_node_deploy(tmp_path))
    assert done == {}
    # Planned only: the change was detected, not made; no health check ran either.
    assert not (tmp_path / "svc").exists() and not (tmp_path / "healthy").exists()
