"""The pre-built SageAttention-family wheels: pins checked, file names and URLs derived.

Pure: imports no pyinfra.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from packaging.utils import (
    InvalidName,
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import Version

from . import hashes
from .check import MISSING, Checker, unknown_reason
from .keys import WHEEL_KEYS

_WHEEL_SUBKEYS = ("version", "release_tag", "build_tag")  # required (keys.WHEEL_KEYS: all)
_FINGERPRINT = (
    re.compile(r"sha256:[0-9a-f]{64}"),
    "'sha256:' and 64 lower-case hex digits, as the probe reports it",
)
# (pattern, what a value must be) per key checked against a pattern.
_PYTHON_TAG = (re.compile(r"cp3(0|[1-9][0-9]*)"), "a CPython tag like 'cp312'")
_PLATFORM = (
    re.compile(
        r"(linux|manylinux(1|2010|2014)|(many|musl)linux_[0-9]+_[0-9]+)"
        r"_(x86_64|aarch64|ppc64le|s390x|armv7l|i686)"
    ),
    "a Linux platform tag like 'linux_x86_64' or 'manylinux_2_28_x86_64'",
)
_BUILD_TAG = (re.compile(r"[0-9][A-Za-z0-9._]*"), "a build tag like '290.129'")
_RELEASE_TAG = (
    re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*"),
    "a safe path segment matching [A-Za-z0-9][A-Za-z0-9._+-]*",
)


@dataclass(frozen=True)
class Wheel:
    """One pre-built SageAttention-family wheel; ``filename`` and ``url`` are derived."""

    name: str
    version: str
    release_tag: str
    build_tag: str
    python_tag: str
    platform: str
    release_base: str
    fingerprint: str | None = None  # sha256:… of the wheel's files (probe.wheel_fingerprint)
    sha256: str | None = None  # pinned: rendered as url#sha256=..., which pip verifies

    @property
    def filename(self) -> str:
        """The wheel file name (PEP 427), python tag doubling as ABI tag."""
        return (
            f"{self.name}-{self.version}-{self.build_tag}-"
            f"{self.python_tag}-{self.python_tag}-{self.platform}.whl"
        )

    @property
    def url(self) -> str:
        """Download URL: ``{release_base}/{release_tag}/{filename}``."""
        return f"{self.release_base.rstrip('/')}/{self.release_tag}/{self.filename}"

    @property
    def pip_url(self) -> str:
        """The URL as the requirements carry it: with ``#sha256=`` when a hash is pinned."""
        return hashes.with_hash(self.url, self.sha256)


def check_wheels(
    c: Checker, data: Mapping[str, object], python_minor: str, local_wheelhouse: bool
) -> tuple[Wheel, ...]:
    """sage_release_base, sage_wheel_python_tag, sage_wheel_platform and sage_wheels."""
    release_base = c.url("sage_release_base", data["sage_release_base"], local_wheelhouse)
    python_tag = c.matching("sage_wheel_python_tag", data["sage_wheel_python_tag"], *_PYTHON_TAG)
    expected_tag = f"cp3{python_minor}"
    if python_tag != expected_tag:
        c.fail(
            "sage_wheel_python_tag",
            python_tag,
            f"does not match python_version '3.{python_minor}' (expected {expected_tag!r})",
        )
    platform = c.matching("sage_wheel_platform", data["sage_wheel_platform"], *_PLATFORM)
    value = data["sage_wheels"]
    if not isinstance(value, Mapping):
        c.fail("sage_wheels", value, f"must be a dict of name -> pins, not {type(value).__name__}")
    if not value:
        c.fail("sage_wheels", value, "must pin at least one wheel")
    return tuple(
        _wheel(c, name, entry, python_tag, platform, release_base) for name, entry in value.items()
    )


def _wheel(
    c: Checker, name: object, entry: object, python_tag: str, platform: str, release_base: str
) -> Wheel:
    name = c.string("sage_wheels", name)
    c.no_meta("sage_wheels", name)
    try:
        canonical = canonicalize_name(name, validate=True)
    except InvalidName:
        c.fail("sage_wheels", name, "not a valid distribution name")
    if canonical != name:
        c.fail("sage_wheels", name, f"wheel name not canonical (write {canonical!r})")
    key = f"sage_wheels.{name}"
    if not isinstance(entry, Mapping):
        c.fail(key, entry, "must be a dict with keys version, release_tag, build_tag")
    for sub, sub_value in entry.items():
        if sub not in WHEEL_KEYS:
            c.fail(
                f"{key}.{sub}",
                sub_value,
                unknown_reason(
                    str(sub),
                    WHEEL_KEYS,
                    "expected version, release_tag, build_tag; optional: fingerprint, sha256",
                ),
            )
    for sub in _WHEEL_SUBKEYS:
        if sub not in entry:
            c.fail(f"{key}.{sub}", MISSING, "required key is missing")

    version = c.version(f"{key}.version", entry["version"])
    release_tag = c.matching(f"{key}.release_tag", entry["release_tag"], *_RELEASE_TAG)
    build_tag = c.string(f"{key}.build_tag", entry["build_tag"])
    c.no_meta(f"{key}.build_tag", build_tag)
    if not build_tag[:1].isdigit():
        c.fail(f"{key}.build_tag", build_tag, "build tag must start with a digit (PEP 427)")
    c.match(f"{key}.build_tag", build_tag, *_BUILD_TAG)

    fingerprint = None
    if "fingerprint" in entry:
        fingerprint = c.matching(f"{key}.fingerprint", entry["fingerprint"], *_FINGERPRINT)
    sha256 = entry.get("sha256")
    if sha256 is not None and (reason := hashes.sha256_refusal(sha256)):
        c.fail(f"{key}.sha256", sha256, reason)
    wheel = Wheel(
        name,
        version,
        release_tag,
        build_tag,
        python_tag,
        platform,
        release_base,
        fingerprint=fingerprint,
        sha256=sha256,
    )
    # Belt and braces: the derived name must read back as exactly these pins.
    try:
        p_name, p_version, p_build, p_tags = parse_wheel_filename(wheel.filename)
    except InvalidWheelFilename as exc:
        c.fail(key, wheel.filename, f"derived wheel file name is invalid: {exc}")
    tags = {(t.interpreter, t.abi, t.platform) for t in p_tags}
    if (
        p_name != name
        or p_version != Version(version)
        or f"{p_build[0]}{p_build[1]}" != build_tag
        or tags != {(python_tag, python_tag, platform)}
    ):
        c.fail(key, wheel.filename, "derived wheel file name does not read back as the pins")
    return wheel
