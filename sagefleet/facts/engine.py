"""The Docker engine, read from a fact's one command: through its API over the unix
socket (curl) where the docker CLI would use that same socket, else through the
docker CLI. Both ways print what the engine answers (its JSON); process() reads one
format.

Why two ways: on a host where nothing changes these reads are most of the run. A
docker CLI run starts a large Go binary (~25 ms of CPU; ``docker info`` also runs
every CLI plugin for its metadata, ~60 ms); the same API call with curl costs 5-25 ms
(measured on a rollout bench node, docs/rollout.md).

The API is used only when nothing could point the CLI elsewhere: ``DOCKER_HOST`` unset
or ``unix://``, no ``DOCKER_CONTEXT``, no ``currentContext`` in the CLI's config.json,
curl installed and the socket writable by this user. Anything else (a tcp:// or ssh://
engine, a context, rootless docker through a context, no curl) takes the CLI.
"""

from __future__ import annotations

from ..commands import q

# Sets $sf_sock to the engine's socket when the API can be used, else to "".
SELECT = (
    'sf_sock=""; sf_h="${DOCKER_HOST:-unix:///var/run/docker.sock}"; '
    'if [ -z "${DOCKER_CONTEXT:-}" ] && [ "${sf_h#unix://}" != "$sf_h" ] '
    '&& [ -S "${sf_h#unix://}" ] && [ -w "${sf_h#unix://}" ] '
    "&& command -v curl >/dev/null 2>&1 "
    '&& ! grep -qs currentContext "${DOCKER_CONFIG:-$HOME/.docker}/config.json"; '
    'then sf_sock="${sf_h#unix://}"; fi'
)
# SELECT, then print which way the reads go ("api" or "cli"): a fact's first part.
SELECT_AND_SAY = f'{SELECT}; if [ -n "$sf_sock" ]; then echo api; else echo cli; fi'


def read(path: str, cli: str) -> str:
    """Shell: GET ``path`` of the engine's API (its JSON on stdout) when $sf_sock is set
    (``SELECT`` ran first), else run ``cli``. Prints nothing when the object is
    missing or the engine does not answer (either way)."""
    url = q(f"http://docker{path}")
    return (
        f'if [ -n "$sf_sock" ]; then curl -fsS --max-time 20 --unix-socket "$sf_sock" {url}'
        f" 2>/dev/null; else {{ {cli}; }} 2>/dev/null; fi"
    )


def container(name: str) -> str:
    """Shell: the container's inspect JSON (one line), or nothing."""
    return (
        read(
            f"/containers/{name}/json",
            f"docker container inspect --format '{{{{json .}}}}' {q(name)}",
        )
        + " || true"
    )


def image(ref: str) -> str:
    """Shell: the image's inspect JSON (one line), or nothing."""
    return read(f"/images/{ref}/json", f"docker image inspect --format '{{{{json .}}}}' {q(ref)}")


def logs(name: str) -> str:
    """Shell: the container's log, stdout and stderr (the API's stream carries a few
    bytes of framing per chunk: read it with ``grep -a``)."""
    return read(f"/containers/{name}/logs?stdout=1&stderr=1", f"docker logs {q(name)} 2>&1")


def info(cli_format: str) -> str:
    """Shell: the engine's info JSON (``/info``), or ``docker info --format cli_format``."""
    return read("/info", f"docker info --format {q(cli_format)}")


# The image ID, from an image's inspect JSON in $1 (its first "Id" is the image's).
IMAGE_ID = 'grep -o \'"Id":"sha256:[0-9a-f]\\{64\\}"\' | head -n 1 | cut -d \'"\' -f 4'
