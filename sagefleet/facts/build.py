"""pyinfra facts of sagefleet: each command prints one JSON document, process() parses it.

Facts run at planning time, also under --dry: they only read. One fact per
concern, each a single round trip.
"""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase

from ..commands import INPUTS_LABEL, previous_tag, q

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
