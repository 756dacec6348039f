"""The checks every pin goes through, and the error that names file, key and value.

Pure: imports no pyinfra.
"""

from __future__ import annotations

import difflib
import math
import posixpath
import re
from collections.abc import Callable, Iterable
from typing import NoReturn
from urllib.parse import urlsplit

from packaging.version import InvalidVersion, Version

from .keys import SHELL_META as _SHELL_META
from .limits import shown


class _Missing:
    """The value of a required key that no source supplied."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


class PinError(ValueError):
    """A pin that cannot be used; says which file supplied it and why it is refused."""

    def __init__(self, source: str, key: str, value: object, reason: str) -> None:
        self.source = source
        self.key = key
        self.value = value
        self.reason = reason
        super().__init__(f"{source}: {key} = {shown(value)}: {reason}")

    def __reduce__(self):  # keep the exception picklable despite the 4-argument __init__
        return (type(self), (self.source, self.key, self.value, self.reason))


# An image pinned by digest: what GPU nodes run.
DIGEST_REF = re.compile(r"[^@\s]+@sha256:[0-9a-f]{64}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PATH = re.compile(r"[A-Za-z0-9._/-]+")
_DOMAIN = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
_COMPONENT = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
IMAGE_REF = re.compile(
    rf"(({_DOMAIN})(:[0-9]+)?/)?{_COMPONENT}(/{_COMPONENT})*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)


def unknown_reason(key: str, known: Iterable[str], hint: str) -> str:
    """ "unknown key", with the closest known key when one is close."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key ({hint})"


class Checker:
    """Raises PinError naming the file that supplied the top-level key."""

    def __init__(self, source_of: Callable[[str], str]) -> None:
        self.source_of = source_of

    def fail(self, key: str, value: object, reason: str) -> NoReturn:
        top = re.split(r"[.\[]", key, maxsplit=1)[0]
        raise PinError(self.source_of(top), key, value, reason)

    def string(self, key: str, value: object) -> str:
        if not isinstance(value, str):
            self.fail(key, value, f"must be a string, not {type(value).__name__}")
        return value

    def boolean(self, key: str, value: object) -> bool:
        if not isinstance(value, bool):
            self.fail(key, value, f"must be True or False, not {type(value).__name__}")
        return value

    def number(self, key: str, value: object, low: float, high: float | None) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self.fail(key, value, "must be a number")
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.fail(key, value, f"must be {bounds}")
        return float(value)

    def string_list(self, key: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, list | tuple):
            self.fail(key, value, f"must be a list of strings, not {type(value).__name__}")
        return tuple(self.string(f"{key}[{i}]", item) for i, item in enumerate(value))

    def no_meta(self, key: str, value: str) -> None:
        for ch in value:
            if ch in _SHELL_META or ch.isspace() or not ch.isprintable():
                self.fail(
                    key,
                    value,
                    f"contains {ch!r}: whitespace, quotes and shell metacharacters are refused",
                )

    def match(self, key: str, value: str, pattern: re.Pattern[str], what: str) -> str:
        self.no_meta(key, value)
        if not pattern.fullmatch(value):
            self.fail(key, value, f"not {what}")
        return value

    def matching(self, key: str, value: object, pattern: re.Pattern[str], what: str) -> str:
        """A string that fully matches pattern."""
        return self.match(key, self.string(key, value), pattern, what)

    def version(self, key: str, value: object) -> str:
        text = self.string(key, value)
        try:
            normal = str(Version(text))
        except InvalidVersion:
            self.fail(key, value, "not a valid version (PEP 440)")
        if normal != text:
            self.fail(key, value, f"version not in normal form (write {normal!r})")
        return text

    def url(self, key: str, value: object, local_wheelhouse: bool) -> str:
        text = self.string(key, value)
        self.no_meta(key, text)
        try:
            parts = urlsplit(text)
        except ValueError as exc:
            self.fail(key, value, f"not a URL ({exc})")
        if parts.scheme in ("http", "file") and not local_wheelhouse:
            self.fail(key, value, f"{parts.scheme}:// is only allowed with local_wheelhouse = True")
        if parts.scheme not in ("https", "http", "file"):
            self.fail(key, value, "URL must be https:// (http:// or file:// with local_wheelhouse)")
        if parts.scheme != "file" and not parts.hostname:
            self.fail(key, value, "URL has no host")
        if parts.scheme == "file" and (parts.netloc or not parts.path.startswith("/")):
            self.fail(key, value, "file:// URL must be file:///absolute/path")
        if parts.username is not None or parts.password is not None:
            # Credentials in a URL would land in logs and on command lines.
            self.fail(key, value, "URL must not contain credentials")
        if parts.query or parts.fragment or text.endswith(("?", "#")):
            self.fail(key, value, "URL must not have a query or fragment")
        return text

    def abs_path(self, key: str, value: object) -> str:
        text = self.string(key, value)
        self.path_chars(key, text)
        if not text.startswith("/"):
            self.fail(key, value, "must be an absolute path")
        self.normal_path(key, text)
        if text == "/":
            self.fail(key, value, "must not be /")
        return text

    def rel_path(self, key: str, value: object) -> str:
        text = self.string(key, value)
        self.path_chars(key, text)
        if text.startswith("/"):
            self.fail(key, value, "must be a relative path")
        if text.startswith("-"):
            self.fail(key, value, "must not start with '-'")  # would read as an option
        self.normal_path(key, text)
        if text == ".":
            self.fail(key, value, "must name a file or directory below the project, not '.'")
        return text

    def path_chars(self, key: str, text: str) -> None:
        self.no_meta(key, text)
        if not _PATH.fullmatch(text):
            self.fail(key, text, "path may only contain A-Z a-z 0-9 . _ / -")

    def normal_path(self, key: str, text: str) -> None:
        if ".." in text.split("/"):
            self.fail(key, text, "path must not contain '..'")
        normal = posixpath.normpath(text)
        if normal.startswith("//"):
            normal = normal[1:]  # POSIX keeps a leading "//"; we want one slash
        if normal != text:
            self.fail(key, text, f"path not in normal form (write {normal!r})")
