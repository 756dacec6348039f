"""pyinfra facts of sagefleet: each command prints one JSON document, process() parses it.

Facts run at planning time, also under --dry: they only read. One fact per
concern, each a single round trip.
"""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase

from .commands import INPUTS_LABEL, previous_tag, q

# Shell that prints {"docker_info": ..., "buildx": ..., "root_free_kb": ..., "image": ..., "previous": ...}
# using docker's own JSON output; a missing piece prints null.
_BUILD_HOST_SH = r"""
if ! command -v docker >/dev/null 2>&1; then printf '{"docker_cli": false}\n'; exit 0; fi
info=$(docker info --format '{{json .}}' 2>/dev/null) || info=''
[ -n "$info" ] || { printf '{"docker_cli": true, "docker_info": null}\n'; exit 0; }
root=$(printf '%s' "$info" | sed -n 's/.*"DockerRootDir":"\([^"]*\)".*/\1/p')
free=$(df -Pk "${root:-/}" 2>/dev/null | awk 'NR==2 {print $4}')
# docker info already ran buildx for its plugin list (ClientInfo.Plugins): take the
# version from there rather than start the CLI and the plugin again (~80 ms a host).
bx=$(printf '%s' "$info" | sed -n 's/.*"Version":"\([^"]*\)"[^{}]*"Name":"buildx".*/\1/p' | tr -cd 'A-Za-z0-9.+~-')
[ -n "$bx" ] || bx=$(docker buildx version 2>/dev/null | awk 'NR==1 {print $2}' | tr -cd 'A-Za-z0-9.+~-')
img=$(docker image inspect --format '{{json .}}' IMAGE_REF 2>/dev/null) || img=null
prev=$(docker image inspect --format '{{json .Id}}' PREVIOUS_REF 2>/dev/null) || prev=null
printf '{"docker_cli": true, "docker_info": %s, "buildx": "%s", "root_free_kb": %s, "image": %s, "previous_id": %s}\n' \
  "$info" "$bx" "${free:-null}" "${img:-null}" "${prev:-null}"
"""


def _version_tuple(version: str | None) -> tuple[int, ...]:
    out = []
    # Docker's own buildx builds say "v0.17.1"; Debian's say "0.13.1+ds1".
    for part in (version or "").lstrip("v").split("+")[0].split("~")[0].split("-")[0].split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)


class BuildHost(FactBase):
    """
    What a build host offers for a bake, and the image it holds now.

    Returns a dict: ``docker`` (engine reachable), ``docker_version``,
    ``buildx_version``, ``docker_root``, ``free_gb`` (under the Docker root),
    ``nvidia_runtime``, ``image`` (None or {id, created, labels, inputs}),
    ``previous_id`` (the image kept as <tag>-previous, or None), ``problems``
    (a list of what is missing and how to fix it; empty when ready).
    """

    def command(self, image_ref: str) -> str:
        return _BUILD_HOST_SH.replace("PREVIOUS_REF", q(previous_tag(image_ref))).replace(
            "IMAGE_REF", q(image_ref)
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        doc = json.loads("\n".join(output))
        info = doc.get("docker_info")
        # Some docker CLIs exit 0 with the daemon down, printing client info only and
        # ServerErrors: no ServerVersion means no engine answered.
        if info and (info.get("ServerErrors") or not info.get("ServerVersion")):
            info = None
        problems = []
        result: dict[str, Any] = {
            "docker": bool(info),
            "docker_version": None,
            "buildx_version": None,
            "docker_root": None,
            "free_gb": None,
            "nvidia_runtime": False,
            "image": None,
            "previous_id": doc.get("previous_id"),
            "problems": problems,
        }
        if not doc.get("docker_cli"):
            problems.append(
                "the docker CLI is not installed: install Docker Engine >= 23 "
                "(Debian/Ubuntu: apt-get install docker.io docker-buildx)"
            )
            return result
        if not info:
            problems.append(
                "the Docker engine is not reachable: start dockerd "
                "(systemctl start docker) and check that this user may use /var/run/docker.sock"
            )
            return result
        result["docker_version"] = info.get("ServerVersion")
        result["docker_root"] = info.get("DockerRootDir")
        result["nvidia_runtime"] = "nvidia" in (info.get("Runtimes") or {})
        if _version_tuple(result["docker_version"]) < (23,):
            problems.append(
                f"Docker Engine {result['docker_version']} is too old for named build contexts: "
                "install Docker Engine >= 23"
            )
        buildx = doc.get("buildx") or None
        result["buildx_version"] = buildx
        if not buildx:
            problems.append(
                "docker buildx is missing: install the buildx plugin "
                "(Debian/Ubuntu: apt-get install docker-buildx)"
            )
        elif _version_tuple(buildx) < (0, 10):
            problems.append(f"docker buildx {buildx} is too old for bake contexts: install >= 0.10")
        if doc.get("root_free_kb") is not None:
            result["free_gb"] = round(doc["root_free_kb"] / 1024 / 1024, 2)
        image = doc.get("image")
        if image:
            labels = (image.get("Config") or {}).get("Labels") or {}
            result["image"] = {
                "id": image.get("Id"),
                "created": image.get("Created"),
                "labels": labels,
                "inputs": labels.get(INPUTS_LABEL),
            }
        return result


_BUILD_STATE_SH = r"""
m=$(cat MARKER 2>/dev/null || true)
d=$( [ -d BUILD_DIR ] && stat -c %a BUILD_DIR 2>/dev/null || true)
printf '{"marker": "%s", "build_dir_mode": "%s", "files": {' "$m" "$d"
sep=''
for f in FILES; do
  if [ -f "$f" ]; then
    printf '%s"%s": {"sha1": "%s", "mode": "%s"}' "$sep" "$f" "$(sha1sum "$f" | cut -d' ' -f1)" "$(stat -c %a "$f")"
  else printf '%s"%s": null' "$sep" "$f"; fi
  sep=', '
done
printf '}, "image": '
if img=$(docker image inspect --format '{{.Id}} {{json (index .Config.Labels "INPUTS_LABEL")}}' IMAGE_REF 2>/dev/null); then
  id=${img%% *}
  printf '{"id": "%s", "inputs": %s}, "probe": ' "$id" "${img#* }"
  r=RESULTS_DIR/"${id#sha256:}".json
  if [ -s "$r" ]; then cat "$r"; else printf null; fi
else printf 'null, "probe": null'; fi
printf '}\n'
"""


class BuildState(FactBase):
    """
    Everything a no-change run of ``build_image`` compares, in one round trip.

    Returns ``{"marker": str | None, "build_dir_mode": str | None, "files": {path:
    None | {"sha1", "mode"}}, "image": None | {"id", "inputs"}, "probe": dict | None}``:
    the build context marker, the mode of build_dir (None: no directory), sha1 and
    octal mode of each file, the image's ID and ``org.sagefleet.inputs`` label, and
    the probe result stored for exactly that image ID.
    """

    def command(self, build_dir: str, image_ref: str, files: list[str]) -> str:
        return (
            _BUILD_STATE_SH.replace("MARKER", q(f"{build_dir}/context.digest"))
            .replace("BUILD_DIR", q(build_dir))
            .replace("FILES", " ".join(q(f) for f in files) or "''")
            .replace("INPUTS_LABEL", INPUTS_LABEL)
            .replace("IMAGE_REF", q(image_ref))
            .replace("RESULTS_DIR", q(f"{build_dir}/probe"))
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        doc = json.loads("\n".join(output))
        image = doc.get("image")
        if image is not None:
            image["inputs"] = image.get("inputs") or None
        return {
            "marker": doc.get("marker") or None,
            "build_dir_mode": doc.get("build_dir_mode") or None,
            "files": {k: v for k, v in (doc.get("files") or {}).items() if k},
            "image": image,
            "probe": doc.get("probe"),
        }


class ContextMarker(FactBase):
    """
    The digest of the build context last unpacked in a directory, or None.
    """

    def command(self, marker_path: str) -> str:
        return f"cat {q(marker_path)} 2>/dev/null || true"

    def process(self, output: list[str]) -> str | None:
        text = "\n".join(output).strip()
        return text or None


class ProbeResult(FactBase):
    """
    The stored kernel-probe result of the image a tag points to now.

    Returns ``{"image_id": str | None, "result": dict | None}``: ``result`` is the
    probe's JSON document stored by ``sagefleet.operations.probe`` for exactly
    this image ID, or None when this image has not been probed.
    """

    def command(self, image_ref: str, results_dir: str) -> str:
        return (
            f"id=$(docker image inspect -f '{{{{.Id}}}}' {q(image_ref)} 2>/dev/null) || "
            '{ printf \'{"image_id": null, "result": null}\\n\'; exit 0; }; '
            f'f={q(results_dir)}/"${{id#sha256:}}".json; '
            'if [ -s "$f" ]; then printf \'{"image_id": "%s", "result": \' "$id"; cat "$f"; printf \'}\\n\'; '
            'else printf \'{"image_id": "%s", "result": null}\\n\' "$id"; fi'
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        return json.loads("\n".join(output))


class GpuHost(FactBase):
    """
    The host's GPUs as nvidia-smi reports them, and whether Docker can hand them out.

    Returns ``{"gpus": [{"name", "capability", "driver", "memory_mib"}], "nvidia_smi": bool}``;
    no nvidia-smi (or no GPU) gives an empty list.
    """

    def command(self) -> str:
        return (
            "if command -v nvidia-smi >/dev/null 2>&1; then "
            'printf \'{"nvidia_smi": true, "gpus": [\'; '
            "nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total "
            "--format=csv,noheader,nounits 2>/dev/null | "
            'awk -F\', *\' \'{gsub(/"/, ""); printf "%s{\\"name\\": \\"%s\\", \\"capability\\": \\"%s\\", '
            '\\"driver\\": \\"%s\\", \\"memory_mib\\": %d}", (NR > 1 ? ", " : ""), $1, $2, $3, $4}\'; '
            "printf ']}\\n'; else printf '{\"nvidia_smi\": false, \"gpus\": []}\\n'; fi"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        return json.loads("\n".join(output))


# --------------------------------------------------------------------------- rollout


class PublishedImage(FactBase):
    """
    What a build host last pushed: ``{"inputs": str | None, "metadata": dict | None}``.

    ``metadata`` is bake's ``--metadata-file`` (per target: ``containerimage.digest``,
    ``image.name``); ``inputs`` is the inputs hash of the image that push carried.
    """

    def command(self, push_dir: str) -> str:
        meta, inputs = q(f"{push_dir}/metadata.json"), q(f"{push_dir}/inputs")
        return (
            f'i=$(cat {inputs} 2>/dev/null || true); printf \'{{"inputs": "%s", "metadata": \' "$i"; '
            f"if [ -s {meta} ]; then cat {meta}; else printf null; fi; printf '}}\\n'"
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        doc = json.loads("\n".join(output))
        return {"inputs": doc.get("inputs") or None, "metadata": doc.get("metadata")}

    @staticmethod
    def digest(published: dict[str, Any], target: str) -> str | None:
        meta = (published.get("metadata") or {}).get(target) or {}
        return meta.get("containerimage.digest")


_CONTAINER_FORMAT = (
    '{"id": {{json .Id}}, "image": {{json .Config.Image}}, "image_id": {{json .Image}}, '
    '"labels": {{json .Config.Labels}}, "status": {{json .State.Status}}, '
    '"restarts": {{json .RestartCount}}}'
)


class ServiceState(FactBase):
    """
    The service container on a node, the digest it ran before, and the engine.

    Returns ``{"docker": bool, "nvidia_runtime": bool, "container": None | {image,
    image_id, labels, status, restarts}, "previous": str | None}``: ``image`` is the
    reference the container was started from (repo@sha256:... for a rollout),
    ``previous`` the one recorded before the last replacement (rollback target).
    """

    def command(self, container: str, state_dir: str) -> str:
        return (
            "rt=$(docker info --format '{{json .Runtimes}}' 2>/dev/null) || rt=''; "
            f"c=$(docker inspect --format {q(_CONTAINER_FORMAT)} {q(container)} 2>/dev/null) || c=''; "
            f"p=$(cat {q(state_dir + '/previous-image')} 2>/dev/null || true); "
            'printf \'{"runtimes": %s, "container": %s, "previous": "%s"}\\n\' '
            '"${rt:-null}" "${c:-null}" "$p"'
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        doc = json.loads("\n".join(output))
        runtimes = doc.get("runtimes")
        container = doc.get("container")
        if container is not None:
            container["labels"] = container.get("labels") or {}
        return {
            "docker": runtimes is not None,
            "nvidia_runtime": "nvidia" in (runtimes or {}),
            "container": container,
            "previous": doc.get("previous") or None,
        }


# Polls until the port answers (or the deadline), then watches for settle_s that the
# container keeps running without restarting; prints one JSON line with what it saw.
_HEALTH_SH = r"""
name=NAME; port=PORT; deadline=$(( $(date +%s) + TIMEOUT )); http=false
while :; do
  if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null; then http=true; break; fi
  [ "$(date +%s)" -ge "$deadline" ] && break
  sleep 0.5
done
r1=$(docker inspect -f '{{.RestartCount}}' "$name" 2>/dev/null) || r1=null
sleep SETTLE
r2=$(docker inspect -f '{{.RestartCount}}' "$name" 2>/dev/null) || r2=null
st=$(docker inspect -f '{{.State.Status}}' "$name" 2>/dev/null) || st=missing
fb=$(docker logs "$name" 2>&1 | grep -ci 'FALLBACK' || true)
printf '{"http": %s, "restarts_before": %s, "restarts_after": %s, "status": "%s", "fallback_lines": %s}\n' \
  "$http" "$r1" "$r2" "$st" "${fb:-0}"
"""


class ServiceHealth(FactBase):
    """
    Health of the service container: the HTTP port answers, it is not restart-looping,
    its log has no "using pytorch attention instead" fallback line.

    Waits up to ``timeout_s`` for the port, then ``settle_s`` more. Returns
    ``{"healthy": bool, "problems": [str], "http", "status", "restarts_before",
    "restarts_after", "fallback_lines"}``. Read-only; used after a (re)start.
    """

    def command(self, container: str, port: int, timeout_s: float = 60, settle_s: float = 2) -> str:
        from .commands import HEALTH_FALLBACK_LINE

        return (
            _HEALTH_SH.replace("NAME", q(container))
            .replace("PORT", str(int(port)))
            .replace("TIMEOUT", str(int(timeout_s)))
            .replace("SETTLE", str(float(settle_s)))
            .replace("FALLBACK", HEALTH_FALLBACK_LINE)
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        doc = json.loads(output[-1])
        problems = []
        if doc.get("status") != "running":
            problems.append(f"container is {doc.get('status')}, not running")
        if not doc.get("http"):
            problems.append("HTTP port did not answer")
        before, after = doc.get("restarts_before"), doc.get("restarts_after")
        if before is not None and after is not None and after > before:
            problems.append(f"restart-looping (restart count {before} -> {after})")
        elif after:
            problems.append(f"container restarted {after} times")
        if doc.get("fallback_lines"):
            problems.append("log says 'using pytorch attention instead' (SageAttention fallback)")
        return {**doc, "healthy": not problems, "problems": problems}


class ImagePresent(FactBase):
    """The local image ID of a reference (e.g. repo@sha256:...), or None if not pulled."""

    def command(self, image_ref: str) -> str:
        return f"docker image inspect -f '{{{{.Id}}}}' {q(image_ref)} 2>/dev/null || true"

    def process(self, output: list[str]) -> str | None:
        text = "\n".join(output).strip()
        return text or None
