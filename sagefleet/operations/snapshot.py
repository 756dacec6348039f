"""One read of a build host's state for a whole run, and the file operations that decide from it.

``build_image`` reads ``BuildState`` once per host (one round trip) and hands the
``Snapshot`` to each of its operations. Each operation makes its own decision from it;
there is no second copy of their checks. The snapshot describes the host as it was
before the run, so it holds only until an operation changes something: from then on,
every later operation reads its own facts again (a run with changes pays round trips,
a no-change run pays one).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.util import get_template
from pyinfra.operations import files

from . import secure


class Snapshot:
    """A ``BuildState`` document, valid until an operation of this run changes the host."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self._doc = doc
        self.fresh = True

    def get(self) -> dict[str, Any] | None:
        """The document, or None once something changed (then read the facts)."""
        return self._doc if self.fresh else None

    def changes(self, commands: Iterator[Any]) -> Iterator[Any]:
        """Pass commands through; the first one makes the snapshot stale."""
        for command in commands:
            self.fresh = False
            yield command


def found(snapshot: Snapshot | None) -> dict[str, Any] | None:
    """The snapshot's document while it holds, else None."""
    return snapshot.get() if snapshot is not None else None


def changed(snapshot: Snapshot | None) -> None:
    """This operation changes the host: the snapshot no longer describes it."""
    if snapshot is not None:
        snapshot.fresh = False


def passthrough(snapshot: Snapshot | None, commands: Iterator[Any]) -> Iterator[Any]:
    """Commands of a changing operation: they make the snapshot (if any) stale."""
    return snapshot.changes(commands) if snapshot is not None else commands


@functools.lru_cache(maxsize=32)
def _sha1_file(path: str, mtime_ns: int) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def sha1_file(path: str) -> str:
    """sha1 of a local file, computed once per run (and again if the file changes)."""
    return _sha1_file(path, Path(path).stat().st_mtime_ns)


def _in_place(snapshot: Snapshot | None, dest: str, sha1: str, mode: str) -> bool:
    doc = found(snapshot)
    return doc is not None and doc["files"].get(dest) == {"sha1": sha1, "mode": mode}


def _local_sha1(src: str | IO[bytes]) -> str:
    """sha1 of what ``files.put`` would upload: a local file, or the bytes of a file object."""
    if isinstance(src, str):
        return sha1_file(src)
    return hashlib.sha1(src.getvalue()).hexdigest()


@operation()
def directory(path: str, mode: str, snapshot: Snapshot | None = None):
    """
    A directory sagefleet creates with this mode (``secure.own_directory``), decided
    from the snapshot. One that exists keeps its mode: sagefleet never changes the
    mode of a directory it did not create.

    + path, mode: as for ``secure.own_directory``
    + snapshot: the run's ``BuildState`` or ``NodeState`` (their ``dirs``)

    Idempotence: the snapshot saying the directory exists means nothing to do; without
    a (still valid) snapshot, ``own_directory`` decides from its own fact.
    """
    doc = found(snapshot)
    if doc is not None and doc["dirs"].get(path):
        host.noop(f"{path} exists (its mode is left as it is)")
        return
    if doc is not None:
        yield from passthrough(snapshot, iter([secure.create_directory(path, mode)]))
        return
    yield from passthrough(snapshot, secure.own_directory._inner(path=path, mode=mode))


@operation()
def template(
    src: str,
    dest: str,
    mode: str,
    snapshot: Snapshot | None = None,
    jinja_env_kwargs: dict | None = None,
    create_remote_dir: bool = True,
    **data: Any,
):
    """
    A file rendered from a local Jinja template (``files.template``), decided from the snapshot.

    + src, dest, mode, jinja_env_kwargs, create_remote_dir, data: as for ``files.template``
    + snapshot: the run's ``BuildState`` (sha1 and mode of ``dest``)

    Idempotence: the sha1 of the locally rendered text and the mode equal to the
    snapshot's mean nothing to do; else ``files.template`` (with ``--diff``) takes over.
    """
    rendered = get_template(src, jinja_env_kwargs or {}).render(data)
    if _in_place(snapshot, dest, hashlib.sha1(rendered.encode()).hexdigest(), mode):
        host.noop(f"{dest} is up to date")
        return
    yield from passthrough(
        snapshot,
        files.template._inner(
            src=src,
            dest=dest,
            mode=mode,
            create_remote_dir=create_remote_dir,
            jinja_env_kwargs=jinja_env_kwargs,
            **data,
        ),
    )


@operation()
def secret_put(src: str | bytes, dest: str, mode: str, snapshot: Snapshot | None = None):
    """
    Content that must never be printed (``secure.secret_file``), decided from the snapshot.

    + src: path of a local file, or the bytes themselves; dest, mode: as for
      ``secure.secret_file``
    + snapshot: the run's ``BuildState`` or ``NodeState`` (sha1 and mode of ``dest``)

    Idempotence: the content's sha1 and the mode equal to the snapshot's mean nothing
    to do; else ``secret_file`` compares sha256 (never a diff, never a read).
    """
    data = src if isinstance(src, bytes) else None
    sha1 = hashlib.sha1(data).hexdigest() if data is not None else sha1_file(src)
    if _in_place(snapshot, dest, sha1, mode):
        host.noop(f"{dest} is up to date")
        return
    if data is None:
        data = Path(src).read_bytes()
    yield from passthrough(snapshot, secure.secret_file._inner(src=data, dest=dest, mode=mode))


@operation()
def put(
    src: str | IO[bytes],
    dest: str,
    mode: str,
    snapshot: Snapshot | None = None,
    create_remote_dir: bool = True,
):
    """
    A local file uploaded (``files.put``), decided from the snapshot.

    + src, dest, mode, create_remote_dir: as for ``files.put`` (a path or a ``BytesIO``)
    + snapshot: the run's ``BuildState`` or ``NodeState`` (sha1 and mode of ``dest``)

    Idempotence: the local file's sha1 and the mode equal to the snapshot's mean
    nothing to do; else ``files.put`` decides from its own facts.
    """
    if _in_place(snapshot, dest, _local_sha1(src), mode):
        host.noop(f"{dest} is up to date")
        return
    yield from passthrough(
        snapshot,
        files.put._inner(src=src, dest=dest, mode=mode, create_remote_dir=create_remote_dir),
    )
