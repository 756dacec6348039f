"""sagefleet's cache on the control machine (``$XDG_CACHE_HOME/sagefleet``, else
``~/.cache/sagefleet``): answers that cost time to compute and depend only on their
key. Everything here is safe to delete; a cache that cannot be read or written only
costs the next run time. Imports no pyinfra."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sagefleet"


def store(path: Path, text: str) -> None:
    """Write text to path atomically (a reader sees the old file or the whole new one)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError:
        pass
