"""Files on the control machine that sagefleet uploads: they must be what they claim.

``pip_ca_bundle`` must be PEM certificates only (comment and blank lines between
them allowed): a private key, an SSH key or any other file is refused before it
could be shipped to a host. ``registry_auth_file`` must be a Docker config.json
holding only ``auths`` with base64 ``user:password`` entries: credential helpers
(``credsStore``, ``credHelpers``) would run programs on the hosts, and other keys
have no business there. Messages name the file and what is wrong, never its content.

Pure: imports no pyinfra.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
import warnings
from pathlib import Path

from ..cache import CACHE_ROOT, store

__all__ = ["MAX_BYTES", "auth_file_refusal", "ca_bundle_refusal"]

MAX_BYTES = 4 * 1024 * 1024  # a full system CA bundle is ~220 KB

_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END ([A-Z0-9 ]+)-----", re.DOTALL)


def _read(path: str) -> tuple[bytes | None, str | None]:
    p = Path(path)
    try:
        if not p.is_file():
            return None, "not a regular file on this machine"
        size = p.stat().st_size
        if size > MAX_BYTES:
            return None, f"{size} bytes, at most {MAX_BYTES}"
        return p.read_bytes(), None
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or type(exc).__name__})"


def ca_bundle_refusal(path: str) -> str | None:
    """Why the file at path is not a bundle of PEM certificates, or None.

    Parsed once per run for every host that names it (a system bundle is ~150
    certificates), again only when its size or mtime change."""
    try:
        st = Path(path).stat()
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
    except OSError:
        stamp = None
    return _ca_bundle_refusal(path, stamp)


# Bundles that passed, by content (sha256) and the X.509 parser's version: a run
# parses a bundle (~30 ms for a system bundle) only the first time it sees those bytes.
BUNDLES_PASSED = CACHE_ROOT / "ca-bundles-passed"


@functools.lru_cache(maxsize=16)
def _ca_bundle_refusal(path: str, stamp: tuple[int, int, int] | None) -> str | None:
    import cryptography

    data, problem = _read(path)
    if problem:
        return problem
    passed = BUNDLES_PASSED / f"{hashlib.sha256(data).hexdigest()}-{cryptography.__version__}"
    if passed.exists():
        return None
    refusal = _bundle_refusal(data)
    if refusal is None:
        store(passed, "")
    return refusal


def _bundle_refusal(data: bytes) -> str | None:
    from cryptography import x509

    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return "not a PEM file (binary content)"
    count = 0
    rest = []
    pos = 0
    for m in _BLOCK.finditer(text):
        rest.append(text[pos : m.start()])
        pos = m.end()
        kind = m.group(1)
        if kind != "CERTIFICATE" or m.group(3) != kind:
            return f"holds a PEM block of type {kind!r}; only certificates are allowed"
        try:
            with warnings.catch_warnings():  # old roots in system bundles have odd serials
                warnings.simplefilter("ignore")
                x509.load_pem_x509_certificate(m.group(0).encode())
        except ValueError:
            return f"certificate {count + 1} does not parse as X.509"
        count += 1
    rest.append(text[pos:])
    for chunk in rest:
        for line in chunk.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                if "-----BEGIN" in line or "-----END" in line:
                    return "holds a PEM block that is not a whole certificate"
                return "holds text outside certificates (only # comments are allowed)"
    if count == 0:
        return "holds no PEM certificate"
    return None


def auth_file_refusal(path: str) -> str | None:
    """Why the file at path is not a Docker config.json with only auths, or None."""
    data, problem = _read(path)
    if problem:
        return problem
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return "not JSON (expected a Docker config.json)"
    if not isinstance(doc, dict):
        return "not a JSON object (expected a Docker config.json)"
    other = sorted(k for k in doc if k != "auths")
    if other:
        return f"may hold only 'auths', not {', '.join(map(repr, other[:5]))}"
    auths = doc.get("auths")
    if not isinstance(auths, dict) or not auths:
        return "'auths' must map registries to {'auth': base64 user:password}"
    for registry, entry in auths.items():
        name = repr(registry[:80])
        if not isinstance(entry, dict) or set(entry) != {"auth"}:
            return f"auths[{name}] must hold only 'auth'"
        auth = entry["auth"]
        try:
            plain = base64.b64decode(auth, validate=True) if isinstance(auth, str) else b""
        except (binascii.Error, ValueError):
            plain = b""
        if b":" not in plain:
            return f"auths[{name}].auth is not base64 of user:password"
    return None
