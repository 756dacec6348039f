"""The service on a GPU node: its container, its health, the images present."""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase

from ..commands import q

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
        from ..commands import HEALTH_FALLBACK_LINE

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
