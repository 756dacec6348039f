"""Two operations that keep what is not sagefleet's, and what is secret, safe.

- ``secret_file``: a file whose content must never appear in any output (the
  registry login, the pip CA bundle). pyinfra's ``files.put`` prints a content diff
  under ``--diff`` and reads the old content with ``cat``; this compares by sha256
  only, creates the file with its mode before any byte is written, and uploads.
- ``own_directory``: a directory sagefleet creates with a mode. One that exists
  already keeps its mode: sagefleet never changes the mode of a directory it did
  not create (``build_dir = "/tmp"`` once turned a mode-1777 /tmp into 755).
"""

from __future__ import annotations

import hashlib
import posixpath
from io import BytesIO

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation
from pyinfra.api.command import FileUploadCommand
from pyinfra.facts.files import Directory, File, Sha256File

MODES = {"600", "640", "644", "700", "750", "755"}


@operation()
def secret_file(src: bytes, dest: str, mode: str = "600"):
    """Put src at dest with mode, comparing by sha256: its content is never read
    back, diffed or printed.

    + src: the content (bytes on the control machine)
    + dest: absolute path on the host
    + mode: the file's mode, set before the content is written

    Idempotence: no change when dest has src's sha256 and the mode.

    Examples:
        secret_file(name="Registry login", src=config, dest="/var/lib/sagefleet/registry/config.json")
    """
    if not dest.startswith("/") or mode not in MODES:
        raise OperationError(f"secret_file: dest must be absolute and mode one of {sorted(MODES)}")
    want = hashlib.sha256(src).hexdigest()
    remote = host.get_fact(File, path=dest)
    have = host.get_fact(Sha256File, path=dest) if remote else None
    if have == want and remote and str(remote["mode"]) == mode:  # File gives 600 as int 600
        host.noop(f"{dest} is up to date (sha256 {want[:12]}..., mode {mode})")
        return
    # The file (and a missing parent, 700) exists with its mode before the secret is
    # written into it; an existing parent keeps its mode.
    parent = posixpath.dirname(dest)
    yield StringCommand(
        "umask 077 && mkdir -p",
        QuoteString(parent),
        "&& touch",
        QuoteString(dest),
        "&& chmod",
        mode,
        QuoteString(dest),
    )
    yield FileUploadCommand(BytesIO(src), dest)


@operation()
def own_directory(path: str, mode: str = "755"):
    """Create path with mode when it does not exist; an existing directory is left
    exactly as it is (mode, owner).

    + path: absolute directory path on the host
    + mode: the mode of the directory when sagefleet creates it

    Examples:
        own_directory(name="Build directory", path="/opt/sagefleet/build")
    """
    if not path.startswith("/") or mode not in MODES:
        raise OperationError(f"own_directory: path must be absolute, mode one of {sorted(MODES)}")
    existing = host.get_fact(Directory, path=path)
    if existing:
        host.noop(f"{path} exists (its mode is left as it is)")
        return
    if existing is False:
        raise OperationError(f"{path} exists and is not a directory")
    yield create_directory(path, mode)


def create_directory(path: str, mode: str) -> StringCommand:
    """The command that creates path (absent) with mode."""
    return StringCommand("mkdir -p", QuoteString(path), "&& chmod", mode, QuoteString(path))
