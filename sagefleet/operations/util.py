"""Argument checks shared by sagefleet's operations (raise OperationError before any yield)."""

from __future__ import annotations

import posixpath
import re

from pyinfra.api import OperationError

from ..pins.check import DIGEST_REF

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def require_abs(name: str, path: str) -> None:
    if not isinstance(path, str) or not posixpath.isabs(path) or "\n" in path:
        raise OperationError(f"{name} must be an absolute path, got {path!r}")


def require_name(what: str, value: str) -> None:
    if not NAME_RE.match(value or ""):
        raise OperationError(f"invalid {what} {value!r}")


def require_digest_ref(image: str) -> None:
    if not isinstance(image, str) or not DIGEST_REF.fullmatch(image):
        raise OperationError(
            f"image must be pinned by digest (repo@sha256:<64 hex>), got {image!r}: "
            "GPU nodes never run a moving tag"
        )
