"""sagefleet.commands: exact command lines, and hostile values that never execute.

The hostile-value tests run each built command with `sh -c` in a temp dir where docker,
flock, tar and git are stubs on PATH that record their arguments; they check that no
payload ran and that every hostile value reached its program as one verbatim argument.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from sagefleet import commands

LOCK_BUSY = (
    "printf '%s\\n' 'sagefleet: another sagefleet run is building on this host "
    "(lock /opt/b/build.lock held); refusing to start a second build. "
    "Re-run when it has finished.' >&2; exit 75; fi && "
)


def test_with_lock():
    assert commands.with_lock("/opt/b/build.lock", "true") == (
        "exec 9>>/opt/b/build.lock && if ! flock -n 9; then " + LOCK_BUSY + "true"
    )


def test_fail_quotes_the_message():
    assert commands.fail("it's broken") == (
        "printf '%s\\n' 'sagefleet: it'\"'\"'s broken' >&2; exit 1"
    )


def test_replace_context_switches_atomically_and_drops_removed_files(tmp_path):
    """Real tar, real shell: the new context replaces the old one in one rename of a
    symlink; a file removed locally is gone, the rendered requirements survive."""
    import io
    import tarfile

    b = tmp_path / "b"
    (b / "context" / "svc").mkdir(parents=True)  # a context directory of an older sagefleet
    (b / "context" / "svc" / "removed.txt").write_text("old\n")
    (b / "context" / "svc" / "extra-requirements.txt").write_text("rendered\n")
    (b / "context.manifest.tmp").write_text("manifest\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("svc/Dockerfile")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"FROM\n"))
    (b / "context.tar").write_bytes(buf.getvalue())

    def replace(digest: str) -> None:
        command = commands.replace_context(
            str(b), str(b / "context.tar"), str(b / "context.manifest.tmp"), digest,
            "svc/extra-requirements.txt",
        )  # fmt: skip
        res = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr

    replace("d1")
    ctx = b / "context"
    assert ctx.is_symlink() and os.readlink(ctx) == "context.d/d1"
    assert sorted(p.name for p in (ctx / "svc").iterdir()) == [
        "Dockerfile", "extra-requirements.txt",
    ]  # fmt: skip
    assert (ctx / "svc" / "extra-requirements.txt").read_text() == "rendered\n"
    assert (b / "context.digest").read_text() == "d1\n"
    assert (b / "context.manifest").read_text() == "manifest\n"
    assert not (b / "context.tar").exists()
    (b / "context.tar").write_bytes(buf.getvalue())
    (b / "context.manifest.tmp").write_text("manifest 2\n")
    replace("d2")
    assert os.readlink(ctx) == "context.d/d2"
    assert sorted(p.name for p in (b / "context.d").iterdir()) == ["d2"]
    assert (ctx / "svc" / "extra-requirements.txt").read_text() == "rendered\n"


def test_probe_passes_the_workload_seq_lens():
    cmd = commands.probe("img:1", "/opt/b/probe.py", "/opt/b/probe", gpu_flags=("--gpus", "all"))
    assert "python img:1 - --mode kernels --timeout 300 --quick < /opt/b/probe.py" in cmd
    assert "--workload-seq-lens" not in cmd
    long = commands.probe(
        "img:1",
        "/opt/b/probe.py",
        "/opt/b/probe",
        gpu_flags=("--gpus", "all"),
        workload_seq_lens=(16384, 32760),
    )
    assert "--timeout 300 --quick --workload-seq-lens 16384 32760 < /opt/b/probe.py" in long


def test_git_context():
    assert commands.git_context(
        "https://g/x.git", "v1", "/opt/b/context", "/opt/b/context.digest", "abc"
    ) == (
        "if [ -d /opt/b/context/.git ]; then git -C /opt/b/context fetch --depth 1 origin v1; "
        "else rm -rf /opt/b/context /opt/b/context.manifest && "
        "git clone --no-checkout https://g/x.git /opt/b/context "
        "&& git -C /opt/b/context fetch --depth 1 origin v1; fi && "
        "git -C /opt/b/context checkout --force FETCH_HEAD && "
        "printf '%s\\n' abc > /opt/b/context.digest"
    )


def test_bake_without_load():
    assert commands.bake(
        "/opt/b/context",
        ["docker-bake.hcl"],
        "complete-cuda",
        {"B": "x y", "A": "1"},
        "reg/img:latest",
        "/opt/b/bake.log",
        "/opt/b/build.lock",
        load=False,
        tail_lines=5,
    ) == (
        "exec 9>>/opt/b/build.lock && if ! flock -n 9; then "
        + LOCK_BUSY
        + "cd /opt/b/context || exit 1; "
        "if docker image inspect reg/img:latest >/dev/null 2>&1; then "
        "docker tag reg/img:latest reg/img:latest-previous; fi && "
        'printf \'sagefleet-bake %s-%s\\n\' "$$" "$(date +%s%N)" >/opt/b/bake.log && '
        "{ env A=1 B='x y' docker buildx bake -f docker-bake.hcl --progress=plain complete-cuda "
        ">>/opt/b/bake.log 2>&1 || { rc=$?; printf '%s\\n' "
        "'sagefleet: bake of complete-cuda failed; last lines of /opt/b/bake.log:' >&2; "
        "tail -n 5 /opt/b/bake.log >&2; exit $rc; }; }"
    )


# (image reference, the tag that keeps the replaced image, the registry it is pulled from)
IMAGE_REFS = [
    ("reg/img:latest", "reg/img:latest-previous", "docker.io"),
    ("reg/img", "reg/img:latest-previous", "docker.io"),
    ("img", "img:latest-previous", "docker.io"),
    ("localhost:5000/img", "localhost:5000/img:latest-previous", "localhost:5000"),
    ("localhost:5000/img:v1", "localhost:5000/img:v1-previous", "localhost:5000"),
    ("localhost/x:1", "localhost/x:1-previous", "localhost"),
    ("reg:5000/x:1", "reg:5000/x:1-previous", "reg:5000"),
    ("ghcr.io/org/x:1", "ghcr.io/org/x:1-previous", "ghcr.io"),
    ("library/ubuntu:24.04", "library/ubuntu:24.04-previous", "docker.io"),
    ("ubuntu", "ubuntu:latest-previous", "docker.io"),
    ("localhostx/y", "localhostx/y:latest-previous", "docker.io"),
]


@pytest.mark.parametrize(
    "ref, previous", [r[:2] for r in IMAGE_REFS], ids=[r[0] for r in IMAGE_REFS]
)
def test_previous_tag(ref, previous):
    assert commands.previous_tag(ref) == previous


@pytest.mark.parametrize(
    "ref, registry", [(r[0], r[2]) for r in IMAGE_REFS], ids=[r[0] for r in IMAGE_REFS]
)
def test_registry_of(ref, registry):
    assert commands.registry_of(ref) == registry


# --- hostile values ------------------------------------------------------------------------

# Each tries to create ./pwned in the working directory. No "/" so each is also a valid
# file name there, which lets the whole command run to its end.
HOSTILE = [
    "$(touch pwned)",
    "`touch pwned`",
    "x; touch pwned",
    "x && touch pwned",
    "x || touch pwned",
    "x | touch pwned",
    "x\ntouch pwned",
    "x' ; touch pwned; '",
    'x" ; touch pwned; "',
    "x'$(touch pwned)'",
    "${IFS}touch${IFS}pwned",
    "x > pwned",
    "*",
]

STUB = """#!/bin/sh
n=$(ls "$CALLS" | wc -l)
printf '%s\\0' "$(basename "$0")" "$@" "V=$V" > "$CALLS/$n"
case "$(basename "$0") $1" in "docker buildx") exit "${BAKE_RC:-0}";; esac
case "$(basename "$0") $1 $2" in "docker image inspect") exit 0;; esac
exit 0
"""


def run_sh(tmp_path: Path, command: str, **env: str) -> tuple[subprocess.CompletedProcess, list]:
    stubs = tmp_path / "stubs"
    calls = tmp_path / "calls"
    work = tmp_path / "work"
    for d in (stubs, calls, work):
        d.mkdir(exist_ok=True)
    for name in ("docker", "flock", "tar", "git"):
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    result = subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=work,
        env={**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "CALLS": str(calls), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    recorded = [
        (calls / n).read_text().split("\0")[:-1] for n in sorted(os.listdir(calls), key=int)
    ]
    assert not (work / "pwned").exists(), f"payload ran: {command!r}"
    return result, recorded


@pytest.mark.parametrize("value", HOSTILE)
def test_fail_never_runs_the_message(tmp_path, value):
    result, calls = run_sh(tmp_path, commands.fail(value))
    assert result.returncode == 1
    assert result.stderr == f"sagefleet: {value}\n"


@pytest.mark.parametrize("value", HOSTILE)
def test_with_lock_never_runs_the_path(tmp_path, value):
    result, calls = run_sh(tmp_path, commands.with_lock("L" + value, "echo ran"))
    assert (result.returncode, result.stdout) == (0, "ran\n")
    assert calls == [["flock", "-n", "9", "V="]]
    assert (tmp_path / "work" / ("L" + value)).exists()


def bake_values(tmp_path: Path, value: str) -> dict:
    """The arguments bake and bake_push share, each carrying value; the context dir
    C<value> is made in the working directory."""
    (tmp_path / "work" / ("C" + value)).mkdir(parents=True)
    return {
        "context_dir": "C" + value,
        "bake_files": ["F" + value],
        "target": "T" + value,
        "variables": {"V": value},
        "log_path": "../G" + value,
        "lock_path": "../L" + value,
    }


@pytest.mark.parametrize("value", HOSTILE)
def test_bake_never_runs_its_values(tmp_path, value):
    command = commands.bake(**bake_values(tmp_path, value), image_ref="I" + value)
    result, calls = run_sh(tmp_path, command)
    assert result.returncode == 0, result.stderr
    bake = ["F" + value, "--progress=plain", "--load", "T" + value, "V=" + value]
    assert calls == [
        ["flock", "-n", "9", "V="],
        ["docker", "image", "inspect", "I" + value, "V="],
        ["docker", "tag", "I" + value, commands.previous_tag("I" + value), "V="],
        ["docker", "buildx", "bake", "-f", *bake],
    ]


@pytest.mark.parametrize("value", HOSTILE[:3])
def test_failed_bake_reports_the_log_tail_and_status(tmp_path, value):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "ctx").mkdir()
    command = commands.bake("ctx", ["b.hcl"], "T" + value, {}, "img", "../bake.log", "../lock")
    result, _ = run_sh(tmp_path, command, BAKE_RC="3")
    assert result.returncode == 3
    header, first, *rest = result.stderr.split("\n")
    assert header == f"sagefleet: bake of T{value} failed; last lines of ../bake.log:"
    # The log holds only this bake's first line (the stub printed nothing).
    assert first.startswith(f"{commands.LOG_FIRST_LINE} ") and rest == [""]


@pytest.mark.parametrize("value", HOSTILE)
def test_replace_context_never_runs_its_values(tmp_path, value):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / ("M" + value)).write_text("manifest\n")
    command = commands.replace_context("B" + value, "A" + value, "M" + value, value, "K" + value)
    result, calls = run_sh(tmp_path, command)
    assert result.returncode == 0, result.stderr
    new = f"B{value}/context.d/{value}"
    assert calls == [["tar", "-xf", "A" + value, "-C", new + ".tmp", "--no-same-owner", "V="]]
    assert (tmp_path / "work" / f"B{value}" / "context.digest").read_text() == value + "\n"
    assert os.readlink(tmp_path / "work" / f"B{value}" / "context") == f"context.d/{value}"
    assert not (tmp_path / "work" / "pwned").exists()


@pytest.mark.parametrize("value", HOSTILE)
def test_git_context_never_runs_its_values(tmp_path, value):
    command = commands.git_context("U" + value, "R" + value, "C" + value, "M" + value, value)
    result, calls = run_sh(tmp_path, command)
    assert result.returncode == 0, result.stderr
    assert calls == [
        ["git", "clone", "--no-checkout", "U" + value, "C" + value, "V="],
        ["git", "-C", "C" + value, "fetch", "--depth", "1", "origin", "R" + value, "V="],
        ["git", "-C", "C" + value, "checkout", "--force", "FETCH_HEAD", "V="],
    ]
    assert (tmp_path / "work" / ("M" + value)).read_text() == value + "\n"


# --- the probe, pull, push and service builders, tested like the others ------------------


def test_probe():
    assert commands.probe("reg/img:latest", "/opt/b/probe.py", "/opt/b/probe") == (
        "id=$(docker image inspect -f '{{.Id}}' reg/img:latest) && mkdir -p /opt/b/probe && "
        'out=/opt/b/probe/"${id#sha256:}".json && '
        "docker run --rm -i --network none --entrypoint python reg/img:latest "
        "- --mode kernels --timeout 300 --quick < /opt/b/probe.py "
        '> "$out.tmp" && mv "$out.tmp" "$out"'
    )


def test_probe_on_a_gpu_host_full_run():
    cmd = commands.probe(
        "i", "/p.py", "/r", ["--gpus", "all"], quick=False, timeout_s=90.9,
        workload_seq_lens=(4096.0, 1024),
    )  # fmt: skip
    assert "docker run --rm -i --network none --gpus all --entrypoint python i " in cmd
    assert cmd.endswith(
        '- --mode kernels --timeout 90 --workload-seq-lens 4096 1024 < /p.py > "$out.tmp" '
        '&& mv "$out.tmp" "$out"'
    )


def test_pull():
    digest = "reg:5000/s/x@sha256:" + "a" * 64
    assert commands.pull(digest) == f"docker pull -q {digest} >/dev/null"
    assert (
        commands.pull(digest, "/s/r")
        == f"env DOCKER_CONFIG=/s/r docker pull -q {digest} >/dev/null"
    )


def test_service_args():
    run = commands.ServiceRun(
        "comfyui", "i@sha256:x", 8188, "always", [("/m", "/app/m")], ["--a", "b c"],
        ["--gpus", "all"],
    )  # fmt: skip
    argv = commands.service_args(run, "h")
    assert argv == [
        "docker", "run", "-d", "--name", "comfyui", "--restart", "always",
        "--label", "org.sagefleet.settings=h", "-p", "127.0.0.1:8188:8188", "-e", "COMFY_PORT=8188",
        "-e", "CLI_ARGS=--a b c", "-v", "/m:/app/m", "--gpus", "all", "i@sha256:x",
    ]  # fmt: skip
    plain = commands.ServiceRun("c", "i", 1, "no", [], [], ())
    assert "--gpus" not in commands.service_args(plain, "h")
    host_net = commands.service_args(replace(plain, network="host"), "h")
    assert host_net[7:11] == ["--label", "org.sagefleet.settings=h", "--network", "host"]
    assert "-p" not in host_net


@pytest.mark.parametrize("value", HOSTILE)
def test_probe_never_runs_its_values(tmp_path, value):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / ("P" + value)).write_text("print('probe')\n")
    command = commands.probe("I" + value, "P" + value, "R" + value, ["--gpus", "all"])
    result, calls = run_sh(tmp_path, command)
    assert result.returncode == 0, result.stderr
    assert calls == [
        ["docker", "image", "inspect", "-f", "{{.Id}}", "I" + value, "V="],
        ["docker", "run", "--rm", "-i", "--network", "none", "--gpus", "all", "--entrypoint",
         "python", "I" + value, "-", "--mode", "kernels", "--timeout", "300", "--quick", "V="],
    ]  # fmt: skip
    # The stub prints no image ID: the result lands in R<value>/.json, inside the results dir.
    assert (tmp_path / "work" / ("R" + value) / ".json").exists()


@pytest.mark.parametrize("value", HOSTILE)
def test_pull_never_runs_its_values(tmp_path, value):
    result, calls = run_sh(tmp_path, commands.pull("I" + value, "D" + value))
    assert result.returncode == 0, result.stderr
    assert calls == [["docker", "pull", "-q", "I" + value, "V="]]


@pytest.mark.parametrize("value", HOSTILE)
def test_bake_push_never_runs_its_values(tmp_path, value):
    command = commands.bake_push(
        **bake_values(tmp_path, value),
        metadata_path="../M" + value,
        inputs_path="../N" + value,
        inputs="sha256:" + value,
        docker_config="D" + value,
    )
    result, calls = run_sh(tmp_path, command)
    assert result.returncode == 0, result.stderr
    assert calls == [
        ["flock", "-n", "9", "V="],
        ["docker", "buildx", "bake", "-f", "F" + value, "--progress=plain", "--push",
         "--metadata-file", "../M" + value, "T" + value, "V=" + value],
    ]  # fmt: skip
    # Paths are relative to the context dir: ../N lands in the working directory.
    assert (tmp_path / "work" / ("N" + value)).read_text() == "sha256:" + value + "\n"


@pytest.mark.parametrize("value", HOSTILE)
def test_start_service_never_runs_its_values(tmp_path, value):
    run = commands.ServiceRun("N", "I" + value, 1, "R" + value, [], ["A" + value], ())
    argv = commands.service_args(run, "h")
    command = commands.start_service("N", "I" + value, argv, [("S" + value, "/d")], "T" + value)
    result, calls = run_sh(tmp_path, command)
    assert result.returncode == 0, result.stderr
    assert calls[-1] == [*argv, "V="]
    assert (tmp_path / "work" / ("S" + value)).is_dir() and (
        tmp_path / "work" / ("T" + value)
    ).is_dir()


def test_start_service_creates_every_volume_dir():
    argv = commands.service_args(commands.ServiceRun("c", "i", 1, "no", [], [], ()), "h")
    cmd = commands.start_service("c", "i", argv, [("/a b", "/x"), ("/c", "/y")], "/s")
    assert cmd.startswith("mkdir -p /s '/a b' /c && ")
