"""Wheel hashes: an optional ``sha256`` per entry of ``sage_wheels``.

A pinned hash is rendered into the requirements as ``{url}#sha256={hex}``; pip
checks a URL's hash fragment against what it downloaded and refuses a mismatch,
so a wheel replaced on the release host (or by a proxy) does not install.

Compute them from wheel files or a wheelhouse (directories are searched for
``*.whl``)::

    python -m sagefleet.pins.hashes dist/sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl
    python -m sagefleet.pins.hashes /srv/wheelhouse --json

Pure: imports no pyinfra.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

__all__ = ["file_sha256", "sha256_refusal", "wheel_hashes", "with_hash"]

_SHA256 = re.compile(r"[0-9a-f]{64}")


def sha256_refusal(value: object) -> str | None:
    """Why value is not a sha256 hex digest, or None."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not _SHA256.fullmatch(value):
        return "not a sha256 digest (64 lowercase hex digits)"
    return None


def with_hash(url: str, sha256: str | None) -> str:
    """The URL pip verifies: ``url#sha256=...`` when a hash is pinned."""
    return f"{url}#sha256={sha256}" if sha256 else url


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def wheel_hashes(paths: Iterable[Path]) -> list[dict[str, str]]:
    """One record per wheel file under paths: file, name, version, build_tag, sha256."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found.extend(sorted(path.rglob("*.whl")))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such wheel file or directory")
    out = []
    for path in found:
        try:
            name, version, build, _ = parse_wheel_filename(path.name)
        except InvalidWheelFilename as exc:
            raise ValueError(f"{path}: not a wheel file name ({exc})") from None
        out.append(
            {
                "file": str(path),
                "name": str(name),
                "version": str(version),
                "build_tag": f"{build[0]}{build[1]}" if build else "",
                "sha256": file_sha256(path),
            }
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sagefleet.pins.hashes",
        description="sha256 of wheels, for the sha256 entries of sage_wheels",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="wheel files or wheelhouse dirs")
    parser.add_argument("--json", action="store_true", help="one JSON list instead of text")
    args = parser.parse_args(argv)
    try:
        records = wheel_hashes(args.paths)
    except (OSError, ValueError) as exc:
        print(f"sagefleet: {exc}", file=sys.stderr)
        return 2
    if not records:
        print("sagefleet: no *.whl found", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    for r in records:
        print(f"# {Path(r['file']).name}")
        print(f'sage_wheels["{r["name"]}"]["sha256"] = "{r["sha256"]}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
