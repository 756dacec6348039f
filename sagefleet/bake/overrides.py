"""sagefleet's additions to someone else's bake file, through bake's own override
mechanism (``--set TARGET.KEY=VALUE``), so the user's files are never edited.

Every value here ends up as one argv element: callers quote the whole
``TARGET.KEY=VALUE`` word (shlex.quote) when they build a shell command.
Pure: imports no pyinfra.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..pins.build import CACHE_REF as _CACHE_REF
from .resolve import BakeError

INPUTS_LABEL = "org.sagefleet.inputs"
_TARGET = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
# Characters bake's --set parser and the cache attribute list treat specially.
_INPUTS = re.compile(r"sha256:[0-9a-f]{64}")


def _check_target(target: str) -> str:
    if not isinstance(target, str) or not _TARGET.fullmatch(target):
        raise BakeError(f"invalid bake target {target!r}")
    return target


def label_set(target: str, inputs: str) -> str:
    """``TARGET.labels.org.sagefleet.inputs=<hash>``: the inputs label on the image."""
    if not isinstance(inputs, str) or not _INPUTS.fullmatch(inputs):
        raise BakeError(f"inputs hash {inputs!r} is not 'sha256:<64 hex>'")
    return f"{_check_target(target)}.labels.{INPUTS_LABEL}={inputs}"


def check_cache_ref(cache_ref: str) -> str:
    """A registry repository without tag or digest (``registry:5000/team/cache``);
    sagefleet adds one tag per target."""
    if not isinstance(cache_ref, str) or not _CACHE_REF.fullmatch(cache_ref):
        raise BakeError(
            f"bake_cache_ref {cache_ref!r} is not a registry repository like "
            "'registry.example:5000/team/comfyui-cache' (lowercase, no tag, no scheme)"
        )
    return cache_ref


def cache_ref_for(cache_ref: str, target: str) -> str:
    """One cache image per target: ``<cache_ref>:<target>`` (targets never overwrite
    each other's cache)."""
    return f"{check_cache_ref(cache_ref)}:{_check_target(target)}"


def cache_sets(targets: Iterable[str], cache_ref: str) -> list[str]:
    """``--set`` values that replace each target's cache-from / cache-to with the
    fleet's registry cache (``type=registry,mode=max``). Replacing drops the bake
    file's own cache-from entries for these targets: a build host then never waits
    on a registry the fleet does not use.

    Each target reads only its own cache image. With ``mode=max`` that image holds
    every step of the target's graph, a ``target:`` named context's steps included,
    so nothing is lost. Reading every target's cache made the cache hit of a stage
    built on a named context a coin toss: on the fixture (tests/fixtures/imagerepo,
    an emptied build engine importing another bake's export) the complete stage was
    CACHED in 2 of 8 runs when each target read all three caches and 1 of 4 when all
    read the final target's, against 19 of 19 with one cache per target
    (bench/bake-cache-hits, docs/bake-cache.md)."""
    names = [_check_target(t) for t in targets]
    out = []
    for n in names:
        ref = cache_ref_for(cache_ref, n)
        out.append(f"{n}.cache-from=type=registry,ref={ref}")
        out.append(f"{n}.cache-to=type=registry,ref={ref},mode=max")
    return out


def set_args(values: Iterable[str]) -> list[str]:
    """``["--set", v1, "--set", v2, ...]`` (argv elements; quote each when joining)."""
    out: list[str] = []
    for v in values:
        out += ["--set", v]
    return out
