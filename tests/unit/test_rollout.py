"""Rollout: pure planning, summary, rollback, restart decision, facts' parsers,
command builders (quoted; no credential on a command line)."""

from __future__ import annotations

import json
import shlex

import pytest

from sagefleet import commands
from sagefleet.facts.build import PublishedImage
from sagefleet.facts.service import ServiceHealth, ServiceState
from sagefleet.facts.util import MARKER
from sagefleet.operations import service as service_ops
from sagefleet.rollout.plan import (
    NodeResult,
    Summary,
    apply_batch,
    apply_rollback,
    format_preview,
    format_summary,
    plan_batches,
    rollback_targets,
)

A = "reg:5000/s/complete-cuda@sha256:" + "a" * 64
B = "reg:5000/s/complete-cuda@sha256:" + "b" * 64
NODES = ["gpu-1", "gpu-2", "gpu-3", "gpu-4", "gpu-5"]
UNCHANGED = NodeResult("unchanged", image=B, before=B)


def test_canary_first_then_batches_of_size():
    assert plan_batches(NODES, ["gpu-1"], 2) == [["gpu-1"], ["gpu-2", "gpu-3"], ["gpu-4", "gpu-5"]]
    assert plan_batches(NODES, [], 3) == [["gpu-1", "gpu-2", "gpu-3"], ["gpu-4", "gpu-5"]]
    # Canary members outside the selection do not appear; order follows the nodes.
    assert plan_batches(["gpu-2", "gpu-3"], ["gpu-1", "gpu-3"], 5) == [["gpu-3"], ["gpu-2"]]
    with pytest.raises(ValueError):
        plan_batches(NODES, [], 0)


def test_failing_batch_halts_and_lists_untouched():
    batches = plan_batches(NODES, ["gpu-1"], 2)
    s = Summary("deploy", B, batches)
    assert apply_batch(s, 0, batches[0], {"gpu-1": UNCHANGED})
    results = {
        "gpu-2": NodeResult("moved", image=B, before=A, replaced=True),
        "gpu-3": NodeResult("failed", reason="HTTP port did not answer", before=A, replaced=True),
    }
    assert not apply_batch(s, 1, batches[1], results)
    assert s.moved == {"gpu-2": B} and s.unchanged == ["gpu-1"]
    assert s.failed == {"gpu-3": "HTTP port did not answer"}
    assert s.untouched == ["gpu-4", "gpu-5"] and s.halted_at == 1 and not s.ok
    text = format_summary(s)
    assert "FAILED     gpu-3: HTTP port did not answer" in text
    assert "untouched  gpu-5" in text and "halted at batch 2 of 3" in text


def test_a_node_without_result_fails_the_batch():
    s = Summary("deploy", B, [["gpu-1", "gpu-2"], ["gpu-3"]])
    assert not apply_batch(s, 0, ["gpu-1", "gpu-2"], {"gpu-1": UNCHANGED})
    assert s.failed == {"gpu-2": "no result from pyinfra"} and s.untouched == ["gpu-3"]
    assert s.unchanged == ["gpu-1"]


def test_last_batch_ok_means_ok():
    s = Summary("deploy", B, [["gpu-1"]])
    assert apply_batch(s, 0, ["gpu-1"], {"gpu-1": NodeResult("restarted", image=B, before=B)})
    assert s.ok and s.moved == {"gpu-1": B} and s.halted_at is None


def test_unknown_status_is_refused():
    with pytest.raises(ValueError, match="status"):
        NodeResult("published")


def test_rollback_targets_only_replaced_nodes_with_a_previous_digest():
    results = {
        "gpu-2": NodeResult("moved", image=B, before=A, replaced=True),
        "gpu-3": NodeResult("failed", image=B, reason="x", before=A, replaced=True),
        # failed before its container was touched (pull, gate): still runs A
        "gpu-4": NodeResult("failed", image=B, reason="pull", before=A, replaced=False),
        # had no service before: nothing to go back to
        "gpu-5": NodeResult("failed", image=B, reason="x", before=None, replaced=True),
        "gpu-6": NodeResult("unchanged", image=B, before=B),
    }
    batch = ["gpu-2", "gpu-3", "gpu-4", "gpu-5", "gpu-6", "gpu-7"]
    assert rollback_targets(batch, results) == {"gpu-2": A, "gpu-3": A}


def test_rollback_shows_in_summary_and_json():
    batches = [["gpu-1"], ["gpu-2", "gpu-3"]]
    s = Summary("deploy", B, batches, auto_rollback=True)
    assert apply_batch(s, 0, ["gpu-1"], {"gpu-1": NodeResult("moved", image=B, before=A)})
    failed = {
        "gpu-2": NodeResult("moved", image=B, before=A, replaced=True),
        "gpu-3": NodeResult("failed", image=B, reason="HTTP port did not answer", before=A,
                            replaced=True),
    }  # fmt: skip
    assert not apply_batch(s, 1, batches[1], failed)
    apply_rollback(
        s,
        {
            "gpu-2": NodeResult("moved", image=A, before=B, replaced=True),
            "gpu-3": NodeResult("failed", reason="pull: unauthorized", before=B),
        },
    )
    # gpu-2 is back on A, so no longer "moved"; gpu-1 (canary, passed) stays on B.
    assert s.moved == {"gpu-1": B} and s.rolled_back == {"gpu-2": A}
    assert s.rollback_failed == {"gpu-3": "pull: unauthorized"}
    assert s.failed == {"gpu-3": "HTTP port did not answer"} and not s.ok
    doc = s.to_json()
    assert doc["auto_rollback"] and doc["rolled_back"] == {"gpu-2": A}
    text = format_summary(s)
    assert f"rolled back gpu-2: back on {A}" in text
    assert "ROLLBACK FAILED gpu-3: pull: unauthorized" in text
    assert "automatic rollback of that batch" in text


def test_halt_without_a_replaced_node_says_nothing_was_rolled_back():
    """A batch that failed before any node was replaced (e.g. every pull refused):
    the summary must not claim a rollback happened."""
    batches = plan_batches(["gpu-1", "gpu-2"], ["gpu-1"], 2)
    s = Summary(action="deploy", target=B, batches=batches)
    s.auto_rollback = True
    canary = {"gpu-1": NodeResult("failed", image=B, reason="pull: unauthorized", before=A)}
    assert not apply_batch(s, 0, batches[0], canary)
    apply_rollback(s, {})
    text = format_summary(s)
    assert "automatic rollback of that batch" not in text
    assert "no node of that batch was replaced, nothing to roll back" in text
    assert "untouched  gpu-2" in text and s.rolled_back == {}


def test_preview_lines():
    records = {
        "gpu-1": {"current": A, "target": B, "restart": True, "reason": f"runs {A}, want {B}"},
        "gpu-2": {"current": B, "target": B, "restart": False, "reason": None},
    }
    text = format_preview(B, records, ["gpu-1", "gpu-2", "gpu-3"])
    assert f"gpu-1: {A} -> {B}  [would restart" in text
    assert f"gpu-2: {B} -> {B}  [no change]" in text
    assert "gpu-3: no preview" in text


# --------------------------------------------------------------------------- restart decision


def _desired(image=B, cli=(), gpu_flags=(), sage=False, network=None):
    run = commands.ServiceRun(
        "comfyui", image, 8188, "unless-stopped", (("/m", "/app/m"),), cli, gpu_flags, network
    )
    return service_ops.desired_service(run, sage)


def test_restart_only_when_digest_or_settings_change():
    argv, settings = _desired()
    running = {"image": B, "labels": {commands.SETTINGS_LABEL: settings}, "status": "running"}
    assert service_ops.restart_reason(running, B, settings) is None
    assert "want" in service_ops.restart_reason({**running, "image": A}, B, settings)
    _, other = _desired(sage=True)
    assert other != settings
    assert "settings changed" in service_ops.restart_reason(running, B, other)
    assert "restarting" in service_ops.restart_reason(
        {**running, "status": "restarting"}, B, settings
    )
    assert service_ops.restart_reason(None, B, settings) == "no service container yet"
    runtime_argv, runtime = _desired(gpu_flags=("--gpus", "all"))
    cdi_argv, cdi = _desired(gpu_flags=("--device", "nvidia.com/gpu=all"))
    assert "--gpus" in runtime_argv and "--gpus" not in argv
    assert cdi_argv[-3:] == ["--device", "nvidia.com/gpu=all", B]
    # Another way to the GPU is another docker run line: the service restarts.
    assert len({settings, runtime, cdi}) == 3
    assert "settings changed" in service_ops.restart_reason(running, B, cdi)


def test_settings_hash_unchanged_for_nodes_started_before_gpu_access():
    # A container started by the code before gpu_access/service_network (gpus=False)
    # carried this argv, but for the port: since service_listen (issue 11) it is
    # published on 127.0.0.1 only, so such a node restarts once, onto loopback.
    argv, _ = _desired()
    assert argv[argv.index("--label") + 2 :] == [
        "-p", "127.0.0.1:8188:8188", "-e", "COMFY_PORT=8188", "-e", "CLI_ARGS=", "-v", "/m:/app/m", B,
    ]  # fmt: skip


def test_host_network_publishes_no_port():
    argv, settings = _desired(network="host")
    assert ["--network", "host"] == argv[argv.index("--network") : argv.index("--network") + 2]
    assert "-p" not in argv and "COMFY_PORT=8188" in argv
    assert settings != _desired()[1]


def test_sage_flag_only_where_the_probe_recommends_it():
    argv, _ = _desired(cli=("--lowvram",), sage=True)
    assert "CLI_ARGS=--lowvram --use-sage-attention" in argv
    stored = {"result": {"recommendation": {"use_sage_attention": True}}}
    assert service_ops.use_sage_attention(stored)
    assert not service_ops.use_sage_attention({"result": None})
    assert not service_ops.use_sage_attention(
        {"result": {"recommendation": {"use_sage_attention": False}}}
    )


# --------------------------------------------------------------------------- facts


def _parts(**parts) -> list[str]:
    """Output of a sectioned fact command: each part's lines after its marker."""
    lines = []
    for name, value in parts.items():
        lines.append(MARKER + name)
        lines += [] if value is None else [value if isinstance(value, str) else json.dumps(value)]
    return lines


def test_service_state_parses_container_and_previous():
    inspect = {
        "Id": "c1",
        "Image": "sha256:x",
        "Config": {"Image": B, "Labels": None, "Env": ["PATH=/usr/bin", "CLI_ARGS=--lowvram"]},
        "State": {"Status": "running", "StartedAt": "2026-11-26T15:04:05.123456789Z"},
        "RestartCount": 0,
    }
    got = ServiceState().process(
        _parts(runtimes={"runc": {}, "nvidia": {}}, container=inspect, previous=A)
    )
    assert got["nvidia_runtime"] and got["docker"] and got["previous"] == A
    assert got["container"] == {
        "id": "c1",
        "image": B,
        "image_id": "sha256:x",
        "labels": {},
        "status": "running",
        "restarts": 0,
        "started_at": "2026-11-26T15:04:05.123456789Z",
        "cli_args": "--lowvram",
    }
    empty = ServiceState().process(_parts(runtimes=None, container=None, previous=None))
    assert empty == {"docker": False, "nvidia_runtime": False, "container": None, "previous": None}


def _health(http: bool, before, after, status: str, fallback: int) -> list[str]:
    inspect = None if status == "missing" else {"State": {"Status": status}, "RestartCount": after}
    return _parts(
        http="ok" if http else None,
        container=inspect,
        restarts_before=None if before is None else str(before),
        fallback_lines=str(fallback),
    )


@pytest.mark.parametrize(
    ("output", "problems"),
    [
        (_health(True, 0, 0, "running", 0), []),
        (_health(False, 0, 0, "running", 0), ["HTTP port did not answer"]),
        (_health(True, 2, 3, "running", 0), ["restart-looping (restart count 2 -> 3)"]),
        (_health(True, 0, 0, "running", 1),
         ["log says 'using pytorch attention instead' (SageAttention fallback)"]),
        (_health(False, None, None, "missing", 0),
         ["container is missing, not running", "HTTP port did not answer"]),
    ],
)  # fmt: skip
def test_service_health_verdicts(output, problems):
    got = ServiceHealth().process(output)
    assert got["problems"] == problems and got["healthy"] == (not problems)


def test_service_health_reads_once_and_the_wait_is_an_operation():
    cmd = ServiceHealth().command(container="comfyui", port=8188, state_dir="/var/lib/sagefleet")
    assert "grep -aci 'using pytorch attention instead'" in cmd and "127.0.0.1:8188" in cmd
    assert "sleep" not in cmd and "until" not in cmd  # a fact never waits
    wait = commands.await_service("comfyui", 8188, 5, 2, "/var/lib/sagefleet")
    assert "until curl" in wait and "left=$(( 2 - " in wait and 'sleep "$left"' in wait
    assert "/var/lib/sagefleet/health-restarts" in wait


def test_published_image_digest_from_bake_metadata():
    meta = {
        "complete-cuda": {"containerimage.digest": "sha256:" + "c" * 64, "image.name": "r/x:latest"}
    }
    got = PublishedImage().process(_parts(inputs="sha256:in", metadata=meta))
    assert PublishedImage.digest(got, "complete-cuda") == "sha256:" + "c" * 64
    assert (
        PublishedImage.digest(PublishedImage().process(_parts(inputs="", metadata=None)), "x")
        is None
    )


# --------------------------------------------------------------------------- commands


def test_pull_and_push_carry_no_credential():
    cmd = commands.pull(B, "/var/lib/sagefleet/registry")
    assert shlex.split(cmd)[:2] == ["env", "DOCKER_CONFIG=/var/lib/sagefleet/registry"]
    push = commands.bake_push("/b/context", ["docker-bake.hcl"], "complete-cuda", {"A": "x y"},
                              "/b/push/metadata.json", "/b/push/inputs", "sha256:i", "/b/push.log",
                              "/b/build.lock", docker_config="/s/registry")  # fmt: skip
    assert "--push --metadata-file /b/push/metadata.json complete-cuda" in push
    assert "A='x y'" in push and "DOCKER_CONFIG=/s/registry" in push


def test_docker_config_json_holds_the_login():
    doc = json.loads(commands.docker_config_json("reg:5000", "u", "p@ss"))
    assert doc == {"auths": {"reg:5000": {"auth": "dTpwQHNz"}}}


def test_start_service_records_previous_and_quotes():
    argv, _ = _desired(cli=("--port=1",))
    cmd = commands.start_service("comfyui", B, argv, (("/m x", "/app/m"),), "/var/lib/sagefleet")
    assert "/var/lib/sagefleet/previous-image" in cmd and "'/m x'" in cmd
    assert cmd.index("previous-image") < cmd.index("docker rm -f")


def test_registry_of():
    assert commands.registry_of("172.17.0.1:5000/s/x@sha256:" + "a" * 64) == "172.17.0.1:5000"
    assert commands.registry_of("library/ubuntu:24.04") == "docker.io"
