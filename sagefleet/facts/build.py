"""pyinfra facts of sagefleet: each command prints one JSON document, process() parses it.

Facts run at planning time, also under --dry: they only read. One fact per
concern, each a single round trip.
"""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

from ..commands import INPUTS_LABEL, previous_tag, q
from . import engine
from .util import json_doc, sectioned, sections, text


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
    ``nvidia_runtime``, ``builder_driver`` (buildx's current builder: docker,
    docker-container, ...), ``image_store`` ("containerd" or the graph driver),
    ``cache_export`` (whether bake can export a registry cache here),
    ``image`` (None or {id, created, labels, inputs}),
    ``previous_id`` (the image kept as <tag>-previous, or None), ``problems``
    (a list of what is missing and how to fix it; empty when ready).
    """

    def requires_command(self, image_ref: str) -> str:
        return "docker"

    def command(self, image_ref: str) -> str:
        return sectioned(
            {
                "info": "docker info --format '{{json .}}' 2>/dev/null || true",
                "df": (
                    "df -Pk \"$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || echo /)\""
                    " 2>/dev/null || true"
                ),
                "buildx": "docker buildx version 2>/dev/null || true",
                "builder": "docker buildx inspect 2>/dev/null || true",
                "image": f"docker image inspect --format '{{{{json .}}}}' {q(image_ref)} 2>/dev/null || true",
                "previous": (
                    f"docker image inspect --format '{{{{json .Id}}}}' "
                    f"{q(previous_tag(image_ref))} 2>/dev/null || true"
                ),
            }
        )

    def default(self) -> dict[str, Any]:
        """No docker CLI on the host (pyinfra's requires_command)."""
        return _build_host_result({"docker_cli": False})

    def process(self, output: list[str]) -> dict[str, Any]:
        parts = sections(output)
        info = json_doc(parts.get("info"))
        return _build_host_result(
            {
                "docker_cli": True,
                "docker_info": info,
                "buildx": _buildx_version(info or {}, parts.get("buildx") or []),
                "root_free_kb": _free_kb(parts.get("df") or []),
                "builder_driver": _builder_driver(parts.get("builder") or []),
                "image": json_doc(parts.get("image")),
                "previous_id": json_doc(parts.get("previous")),
            }
        )


def _free_kb(df_lines: list[str]) -> int | None:
    """Available 1K blocks from ``df -Pk``'s data line."""
    rows = [line.split() for line in df_lines[1:] if line.strip()]
    try:
        return int(rows[-1][3])
    except (IndexError, ValueError):
        return None


def _builder_driver(lines: list[str]) -> str | None:
    """The driver of buildx's current builder (``docker``, ``docker-container``, ...)."""
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "Driver" and value.strip():
            return value.strip()
    return None


def _buildx_version(info: dict, version_lines: list[str]) -> str | None:
    """From docker info's plugin list, else from ``docker buildx version``."""
    for plugin in (info.get("ClientInfo") or {}).get("Plugins") or []:
        if plugin.get("Name") == "buildx" and plugin.get("Version"):
            return plugin["Version"]
    words = (text(version_lines) or "").split()
    return words[1] if len(words) > 1 else None


def _build_host_result(doc: dict[str, Any]) -> dict[str, Any]:
    """BuildHost's result from the parts read (None where one printed nothing)."""
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
        "builder_driver": doc.get("builder_driver") or None,
        "image_store": None,
        "cache_export": False,
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
    status = dict(tuple(x) for x in (info.get("DriverStatus") or []) if len(x) == 2)
    containerd = "containerd" in status.get("driver-type", "")
    result["image_store"] = "containerd" if containerd else info.get("Driver")
    # The docker driver exports a cache only with the containerd image store.
    result["cache_export"] = containerd or result["builder_driver"] not in (None, "docker")
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


class BuildState(FactBase):
    """
    Everything a no-change run of ``build_image`` compares, in one round trip.

    Returns ``{"marker": str | None, "dirs": {path: mode},
    "files": {path: None | {"sha1", "mode"}}, "image": None | {"id", "inputs"}, "probe":
    dict | None, "published": None | PublishedImage's document}``: the build context
    marker, the octal mode of build_dir and of each of ``dirs`` that exists (absent: no
    such directory), sha1 and octal mode of each file, the image's ID
    and ``org.sagefleet.inputs`` label, the probe result stored for exactly that image
    ID, and (with ``push_dir``) what the host last pushed.
    """

    def command(
        self,
        build_dir: str,
        image_ref: str,
        files: list[str],
        dirs: list[str] | tuple[str, ...] = (),
        push_dir: str | None = None,
    ) -> str:
        paths = " ".join(q(f) for f in files) or "''"
        results = q(f"{build_dir}/probe")
        parts = {
            "engine": engine.SELECT_AND_SAY,
            "marker": f"cat {q(build_dir + '/context.digest')} 2>/dev/null || true",
            "dirs": f"stat -c '%a %n' -- {' '.join(q(d) for d in (build_dir, *dirs))} 2>/dev/null || true",
            "sha1": f"sha1sum -- {paths} 2>/dev/null || true",
            "mode": f"stat -c '%a %n' -- {paths} 2>/dev/null || true",
            # The image's inspect JSON (the engine's API, else the docker CLI).
            "image": f'img=$({engine.image(image_ref)}) && printf \'%s\\n\' "$img" || img=""',
            # The probe result stored for exactly that ID (the file name is the ID).
            "probe": (
                f'[ -z "$img" ] || {{ id=$(printf \'%s\\n\' "$img" | {engine.IMAGE_ID}); '
                f'cat {results}/"${{id#sha256:}}".json; }} 2>/dev/null || true'
            ),
        }
        if push_dir:
            parts.update(PublishedImage().parts(push_dir))
        return sectioned(parts)

    def process(self, output: list[str]) -> dict[str, Any]:
        parts = sections(output)
        sha1 = dict(_path_value(line) for line in parts.get("sha1") or [] if line.strip())
        mode = dict(_path_value(line) for line in parts.get("mode") or [] if line.strip())
        image = None
        inspect = json_doc(parts.get("image"))
        if inspect:
            labels = (inspect.get("Config") or {}).get("Labels") or {}
            image = {"id": inspect.get("Id"), "inputs": labels.get(INPUTS_LABEL) or None}
        return {
            "marker": text(parts.get("marker")),
            "dirs": dict(_path_value(line) for line in parts.get("dirs") or [] if line.strip()),
            "files": {p: {"sha1": sha1[p], "mode": mode.get(p)} for p in sha1},
            "image": image,
            "probe": json_doc(parts.get("probe")) if image else None,
            "published": PublishedImage().process(output) if "inputs" in parts else None,
        }


def _path_value(line: str) -> tuple[str, str]:
    """``sha1sum``'s "<sha1>  <path>" or ``stat``'s "<mode> <path>" as (path, value)."""
    value, _, path = line.partition(" ")
    return path.lstrip(" *"), value


class ContextMarker(FactBase):
    """
    The digest of the build context last unpacked in a directory, or None.
    """

    def command(self, marker_path: str) -> str:
        return f"cat {q(marker_path)} 2>/dev/null || true"

    def process(self, output: list[str]) -> str | None:
        return text(output)


class ContextManifest(FactBase):
    """
    The manifest of the build context in place (``{build_dir}/context.manifest``):
    ``{path: [sha256, mode]}``; None when there is none.
    """

    def command(self, path: str) -> str:
        return f"cat {q(path)} 2>/dev/null || true"

    def process(self, output: list[str]) -> dict[str, list[str]]:
        from ..manifest import parse_manifest

        return {k: list(v) for k, v in parse_manifest("\n".join(output)).items()}


class PublishedImage(FactBase):
    """
    What a build host last pushed: ``{"inputs": str | None, "metadata": dict | None}``.

    ``metadata`` is bake's ``--metadata-file`` (per target: ``containerimage.digest``,
    ``image.name``); ``inputs`` is the inputs hash of the image that push carried.
    """

    def command(self, push_dir: str) -> str:
        return sectioned(self.parts(push_dir))

    @staticmethod
    def parts(push_dir: str) -> dict[str, str]:
        """The parts of this read (``BuildState`` reads them too, for a publish)."""
        return {
            "inputs": f"cat {q(push_dir + '/inputs')} 2>/dev/null || true",
            "metadata": f"cat {q(push_dir + '/metadata.json')} 2>/dev/null || true",
        }

    def process(self, output: list[str]) -> dict[str, Any]:
        parts = sections(output)
        return {"inputs": text(parts.get("inputs")), "metadata": json_doc(parts.get("metadata"))}

    @staticmethod
    def digest(published: dict[str, Any], target: str) -> str | None:
        meta = (published.get("metadata") or {}).get(target) or {}
        return meta.get("containerimage.digest")
