"""Pure builders of command lines. Every user value goes through shlex.quote.

The operations decide; these helpers only format, so both can be tested alone.
"""

from __future__ import annotations

import hashlib
import math
import posixpath
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

INPUTS_LABEL = "org.sagefleet.inputs"
# Exit status used when another sagefleet run holds the host's build lock.
LOCKED_EXIT = 75


def content_mtime(data: bytes) -> int:
    """A file's mtime derived from its content (1970..2106): equal on every host for
    equal content, different (all but surely) for different content."""
    return int(hashlib.sha256(data).hexdigest()[:8], 16)


def q(value: object) -> str:
    """Quote one value for a POSIX shell."""
    return shlex.quote(str(value))


def previous_tag(image_ref: str) -> str:
    """The tag that keeps the image a rebuild replaces (rollback, nothing dangling)."""
    repo, _, tag = image_ref.rpartition(":")
    if not repo or "/" in tag:
        repo, tag = image_ref, "latest"
    return f"{repo}:{tag}-previous"


def fail(message: str) -> str:
    """A command that fails the host with a message (preflight problems)."""
    return f"printf '%s\\n' {q('sagefleet: ' + message)} >&2; exit 1"


def with_lock(lock_path: str, command: str) -> str:
    """Run command holding an exclusive lock on lock_path, or refuse at once.

    flock's lock dies with the process, so a killed run leaves no stale lock.
    """
    busy = (
        f"sagefleet: another sagefleet run is building on this host (lock {lock_path} held); "
        "refusing to start a second build. Re-run when it has finished."
    )
    return (
        f"exec 9>>{q(lock_path)} && "
        f"if ! flock -n 9; then printf '%s\\n' {q(busy)} >&2; exit {LOCKED_EXIT}; fi && "
        f"{command}"
    )


LOG_FIRST_LINE = "sagefleet-bake"


def _logged_bake(
    verb: str,
    bake_files: Sequence[str],
    target: str,
    variables: Mapping[str, str],
    flags: str,
    log_path: str,
    tail_lines: int,
    overrides: Sequence[str] = (),
) -> str:
    """`env VARS docker buildx bake -f ... [--set ...] FLAGS TARGET`, logged to log_path;
    on failure the tail of the log goes to stderr and bake's exit status is kept.

    The log's first line (``sagefleet-bake <pid>-<ns>``) is new for every bake, so a
    reader on the control machine knows when this bake's log begins."""
    env = " ".join(f"{k}={q(v)}" for k, v in sorted(variables.items()))
    files = " ".join(f"-f {q(f)}" for f in bake_files)
    sets = "".join(f" --set {q(o)}" for o in overrides)
    failed = f"sagefleet: {verb} of {target} failed; last lines of {log_path}:"
    return (
        f'printf \'{LOG_FIRST_LINE} %s-%s\\n\' "$$" "$(date +%s%N)" >{q(log_path)} && '
        f"{{ env {env} docker buildx bake {files}{sets} {flags} {q(target)} >>{q(log_path)} 2>&1 || "
        f"{{ rc=$?; printf '%s\\n' {q(failed)} >&2; "
        f"tail -n {int(tail_lines)} {q(log_path)} >&2; exit $rc; }}; }}"
    )


def bake(
    context_dir: str,
    bake_files: Sequence[str],
    target: str,
    variables: Mapping[str, str],
    image_ref: str,
    log_path: str,
    lock_path: str,
    load: bool = True,
    tail_lines: int = 60,
    overrides: Sequence[str] = (),
    docker_config: str | None = None,
    file_mtimes: Mapping[str, int] | None = None,
) -> str:
    """`docker buildx bake` in context_dir, locked, logged, previous image kept tagged.

    file_mtimes (path relative to context_dir -> POSIX time; the rendered
    requirements) are set first: BuildKit's cache key of a COPY includes the file's
    mtime, so the same file written at another time on another host would miss the
    fleet's cache. The time comes from the file's content (``content_mtime``), never
    a constant: BuildKit re-sends a context file only when its size or mtime changed.

    overrides are bake ``--set`` values (sagefleet's label, the registry cache), one
    quoted argument each. On failure the command prints the tail of the build log to
    stderr and exits with bake's status; the current tag is untouched because bake
    only tags on success.
    """
    flags = "--progress=plain" + (" --load" if load else "")
    keep_previous = (
        f"if docker image inspect {q(image_ref)} >/dev/null 2>&1; then "
        f"docker tag {q(image_ref)} {q(previous_tag(image_ref))}; fi"
    )
    env = dict(variables)
    if docker_config:  # a registry login for the cache (cache-from/cache-to)
        env["DOCKER_CONFIG"] = docker_config
    run = _logged_bake("bake", bake_files, target, env, flags, log_path, tail_lines, overrides)
    for path, mtime in sorted((file_mtimes or {}).items()):
        stamp = time.strftime("%Y%m%d%H%M.%S", time.gmtime(int(mtime)))
        keep_previous = f"TZ=UTC0 touch -m -t {stamp} -- {q(path)} && {keep_previous}"
    # cd failing must not fall through to the "bake failed" branch and tail an old log.
    return with_lock(lock_path, f"cd {q(context_dir)} || exit 1; {keep_previous} && {run}")


def replace_context(
    build_dir: str, tar_path: str, manifest_tmp: str, digest: str, keep: str
) -> str:
    """Unpack the context tarball into a new directory and switch ``{build_dir}/context``
    to it atomically (a symlink renamed over the old one): files removed locally are
    gone, and no reader ever sees half a context. ``keep`` (relative to the context:
    the rendered requirements) is carried over from the old context; the manifest and
    the digest marker are written last."""
    b = build_dir.rstrip("/")
    ctx, rel = f"{b}/context", f"context.d/{digest}"
    new = f"{b}/{rel}"
    return (
        f"rm -rf {q(new + '.tmp')} && mkdir -p {q(new + '.tmp')} && "
        f"tar -xf {q(tar_path)} -C {q(new + '.tmp')} --no-same-owner && "
        f"if [ -f {q(ctx + '/' + keep)} ]; then mkdir -p {q(posixpath.dirname(new + '.tmp/' + keep))} && "
        f"cp -p {q(ctx + '/' + keep)} {q(new + '.tmp/' + keep)}; fi && "
        f"rm -rf {q(new)} && mv {q(new + '.tmp')} {q(new)} && "
        # A context directory of an older sagefleet (or a git checkout) makes way once.
        f"if [ -e {q(ctx)} ] && [ ! -L {q(ctx)} ]; then rm -rf {q(ctx)}; fi && "
        f"ln -sfn {q(rel)} {q(ctx + '.lnk')} && mv -T {q(ctx + '.lnk')} {q(ctx)} && "
        f"mv {q(manifest_tmp)} {q(b + '/context.manifest')} && "
        f"printf '%s\\n' {q(digest)} > {q(b + '/context.digest')} && "
        f"rm -f {q(tar_path)} && "
        f'for d in {q(b + "/context.d")}/*; do [ "$d" = {q(new)} ] || rm -rf "$d"; done'
    )


def own_directory(path: str, mode: str) -> str:
    """Create path with mode unless it exists (an existing directory keeps its mode)."""
    return f"[ -d {q(path)} ] || {{ mkdir -p {q(path)} && chmod {q(mode)} {q(path)}; }}"


def git_context(url: str, ref: str, context_dir: str, marker_path: str, digest: str) -> str:
    """Check out url at ref into context_dir (fresh clone or fetch), then mark it."""
    return (
        f"if [ -d {q(context_dir + '/.git')} ]; then "
        f"git -C {q(context_dir)} fetch --depth 1 origin {q(ref)}; "
        f"else rm -rf {q(context_dir)} {q(context_dir.rstrip('/') + '.manifest')} && git clone --no-checkout {q(url)} {q(context_dir)} && "
        f"git -C {q(context_dir)} fetch --depth 1 origin {q(ref)}; fi && "
        f"git -C {q(context_dir)} checkout --force FETCH_HEAD && "
        f"printf '%s\\n' {q(digest)} > {q(marker_path)}"
    )


def probe(
    image_ref: str,
    probe_path: str,
    results_dir: str,
    gpu_flags: Sequence[str] = (),
    quick: bool = True,
    timeout_s: float = 300,
    workload_seq_lens: tuple[int, ...] = (),
) -> str:
    """Run the kernel probe inside the image (script on stdin, no bind mount: the
    engine may be remote) and store its JSON as <results_dir>/<image id>.json.
    gpu_flags: how the container gets the GPU (sagefleet.gpu_access.choose)."""
    args = ["--mode", "kernels", "--timeout", str(int(timeout_s))] + (["--quick"] if quick else [])
    if workload_seq_lens:
        args += ["--workload-seq-lens", *(str(int(n)) for n in workload_seq_lens)]
    run = ["docker", "run", "--rm", "-i", "--network", "none", *gpu_flags]
    run += ["--entrypoint", "python", image_ref, "-", *args]
    return (
        f"id=$(docker image inspect -f '{{{{.Id}}}}' {q(image_ref)}) && mkdir -p {q(results_dir)} && "
        f'out={q(results_dir)}/"${{id#sha256:}}".json && '
        f'{" ".join(q(a) for a in run)} < {q(probe_path)} > "$out.tmp" && '
        f'mv "$out.tmp" "$out"'
    )


# --------------------------------------------------------------------------- rollout

SETTINGS_LABEL = "org.sagefleet.settings"
HEALTH_FALLBACK_LINE = "using pytorch attention instead"


def health_restarts_path(state_dir: str) -> str:
    """Where await_service records the restart count before its settle time."""
    return f"{state_dir}/health-restarts"


def await_service(
    name: str,
    port: int,
    timeout_s: float,
    settle_s: float,
    state_dir: str,
    listen: str = "127.0.0.1",
) -> str:
    """Wait up to timeout_s for http://<listen>:<port>/ (127.0.0.1 for a wildcard listen)
    to answer, record the container's
    restart count, then wait until it has run settle_s (a restart loop shows as a higher
    count after it). A restart resets the container's StartedAt, so a container that has
    run settle_s already is not watched again: a node where nothing changed does not wait
    (no container: nothing to watch). Exits 0 either way: the ServiceHealth fact judges
    what it finds."""
    url = f"http://{health_host(listen)}:{int(port)}/"
    restarts = q(health_restarts_path(state_dir))
    look = f"docker container inspect -f '{{{{.RestartCount}}}} {{{{.State.StartedAt}}}}' {q(name)}"
    return (
        f"mkdir -p {q(state_dir)} && deadline=$(( $(date +%s) + {int(timeout_s)} )); "
        f"until curl -fsS -o /dev/null --max-time 2 {q(url)} 2>/dev/null; do "
        '[ "$(date +%s)" -ge "$deadline" ] && break; sleep 0.5; done; '
        f'if s=$({look} 2>/dev/null); then echo "${{s%% *}}" > {restarts}; '
        'up=$(date -d "${s#* }" +%s 2>/dev/null || date +%s); '
        f"left=$(( {math.ceil(settle_s)} - ($(date +%s) - up) )); "
        'if [ "$left" -gt 0 ]; then sleep "$left"; fi; '
        f"else rm -f {restarts}; fi"
    )


def registry_of(image_ref: str) -> str:
    """The registry host[:port] of an image reference ('docker.io' when it names none)."""
    first, _, rest = image_ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def docker_config_json(registry: str, user: str, password: str) -> bytes:
    """A docker config.json holding one registry login (goes to a mode-600 file, never argv)."""
    import base64
    import json

    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return (json.dumps({"auths": {registry: {"auth": auth}}}, indent=1) + "\n").encode()


def bake_push(
    context_dir: str,
    bake_files: Sequence[str],
    target: str,
    variables: Mapping[str, str],
    metadata_path: str,
    inputs_path: str,
    inputs: str,
    log_path: str,
    lock_path: str,
    docker_config: str | None = None,
    tail_lines: int = 60,
    overrides: Sequence[str] = (),
) -> str:
    """`docker buildx bake --push --metadata-file` (the build cache makes it a push of
    the image just built: the same overrides, so the same label); on success records
    which inputs were pushed."""
    env = dict(variables)
    if docker_config:
        env["DOCKER_CONFIG"] = docker_config
    flags = f"--progress=plain --push --metadata-file {q(metadata_path)}"
    run = f"rm -f {q(metadata_path)} {q(inputs_path)} && " + _logged_bake(
        "push", bake_files, target, env, flags, log_path, tail_lines, overrides
    )
    record = f"printf '%s\\n' {q(inputs)} > {q(inputs_path)}"
    return with_lock(lock_path, f"cd {q(context_dir)} || exit 1; {run} && {record}")


def pull(image: str, docker_config: str | None = None) -> str:
    """Pull one image (by digest) with the registry login in docker_config, if any."""
    env = f"env DOCKER_CONFIG={q(docker_config)} " if docker_config else ""
    return f"{env}docker pull -q {q(image)} >/dev/null"


@dataclass(frozen=True)
class ServiceRun:
    """What the ComfyUI service container is started with. network None: the default
    bridge, port published on listen; a name (e.g. "host"): that network, no -p."""

    name: str
    image: str
    port: int
    restart: str
    volumes: Sequence[tuple[str, str]]
    cli_args: Sequence[str]
    gpu_flags: Sequence[str]
    network: str | None = None
    listen: str = "127.0.0.1"


def service_args(run: ServiceRun, settings: str) -> list[str]:
    """The `docker run` argv of the service container run, labelled with settings."""
    argv = ["docker", "run", "-d", "--name", run.name, "--restart", run.restart]
    argv += ["--label", f"{SETTINGS_LABEL}={settings}"]
    if run.network is None:
        argv += ["-p", publish_arg(run.listen, run.port)]
    else:
        argv += ["--network", run.network]  # no published port: service_listen does not apply
    argv += ["-e", f"COMFY_PORT={int(run.port)}"]
    argv += ["-e", "CLI_ARGS=" + " ".join(run.cli_args)]
    for src, dst in run.volumes:
        argv += ["-v", f"{src}:{dst}"]
    argv += list(run.gpu_flags)
    return [*argv, run.image]


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def publish_arg(listen: str, port: int) -> str:
    """`-p` value publishing port on the address listen only (never all by default)."""
    return f"{_url_host(listen)}:{int(port)}:{int(port)}"


def health_host(listen: str) -> str:
    """Where the node itself reaches a service listening on listen (URL host part)."""
    loopback = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(listen, listen)
    return _url_host(loopback)


def start_service(
    name: str,
    image: str,
    run_argv: Sequence[str],
    volumes: Sequence[tuple[str, str]],
    state_dir: str,
) -> str:
    """Replace the service container; first record the digest it ran before (rollback)."""
    prev = f"{state_dir}/previous-image"
    dirs = " ".join(q(src) for src, _ in volumes)
    return (
        f"mkdir -p {q(state_dir)} {dirs} && "
        f"old=$(docker inspect -f '{{{{.Config.Image}}}}' {q(name)} 2>/dev/null || true) && "
        f'if [ -n "$old" ] && [ "$old" != {q(image)} ]; then '
        f"printf '%s\\n' \"$old\" > {q(prev + '.tmp')} && mv {q(prev + '.tmp')} {q(prev)}; fi && "
        f"{{ docker rm -f {q(name)} >/dev/null 2>&1 || true; }} && "
        f"{' '.join(q(a) for a in run_argv)} >/dev/null"
    )
