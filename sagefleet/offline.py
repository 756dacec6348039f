"""The offline profile: STAND-IN SageAttention wheels in a local wheelhouse, served
over HTTP to builds (the real 2.2.0 / sageattn3 1.0.0 wheels live on GitHub, which
cannot be reached here).

The stand-in wheels carry the real distribution names, versions, build tags and
file names, so pins, templates, pip, the image facts and the verification gate run
their real code paths; their functions raise instead of running GPU kernels.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import os
import threading
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from .pins import Pins, Wheel
from .project import PROJECT_ROOT

_STANDIN_SOURCES = {
    "sageattention": {
        "sageattention/__init__.py": (
            '"""STAND-IN for sageattention {version} (sagefleet offline profile): no kernels."""\n'
            "from .core import (sageattn, sageattn_qk_int8_pv_fp16_triton,\n"
            "    sageattn_qk_int8_pv_fp16_cuda, sageattn_qk_int8_pv_fp8_cuda,\n"
            "    sageattn_qk_int8_pv_fp8_cuda_sm90)\n"
            "STANDIN = True\n"
        ),
        "sageattention/core.py": (
            '"""STAND-IN: the compiled extensions of the real wheel are absent."""\n'
            "SM80_ENABLED = False\nSM89_ENABLED = False\nSM90_ENABLED = False\n\n"
            "def _standin(*args, **kwargs):\n"
            "    raise RuntimeError('sageattention stand-in wheel: no CUDA kernels')\n\n"
            "sageattn = sageattn_qk_int8_pv_fp16_triton = sageattn_qk_int8_pv_fp16_cuda = _standin\n"
            "sageattn_qk_int8_pv_fp8_cuda = sageattn_qk_int8_pv_fp8_cuda_sm90 = _standin\n"
        ),
    },
    "sageattn3": {
        "sageattn3/__init__.py": (
            '"""STAND-IN for sageattn3 {version} (sagefleet offline profile): no kernels."""\n'
            "STANDIN = True\n\n"
            "def sageattn3_blackwell(q, k, v, is_causal=False, per_block_mean=True):\n"
            "    raise RuntimeError('sageattn3 stand-in wheel: no Blackwell kernels')\n"
        ),
    },
}


WHEELHOUSE_URL_ENV = "SAGEFLEET_WHEELHOUSE_URL"
PIP_CA_BUNDLE_ENV = "SAGEFLEET_PIP_CA_BUNDLE"


def offline_group_data(environ: Mapping[str, str] | None = None) -> dict:
    """The offline group's data that depends on the run (group_data holds data only):
    the stand-in wheelhouse's URL and the CA bundle pip trusts. The inventory attaches
    it to the offline group, so group_data files (and --group-data) override it."""
    environ = os.environ if environ is None else environ
    return {
        "sage_release_base": environ.get(WHEELHOUSE_URL_ENV, "http://172.17.0.1:8765"),
        "pip_ca_bundle": environ.get(PIP_CA_BUNDLE_ENV, "/etc/ssl/certs/ca-certificates.crt"),
    }


def offline_profile() -> dict:
    """The offline profile's data as the inventory merges it: all < the run's < offline.py."""
    return {**group_file("all"), **offline_group_data(), **group_file("offline")}


def group_file(name: str) -> dict:
    """The data of group_data/<name>.py as pyinfra sees it (no imports, no dunders)."""
    import runpy
    import types

    data = runpy.run_path(str(PROJECT_ROOT / "group_data" / f"{name}.py"))
    return {
        k: v
        for k, v in data.items()
        if not k.startswith("_") and not isinstance(v, types.ModuleType)
    }


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def standin_wheel_bytes(wheel: Wheel) -> bytes:
    """A valid, installable wheel with the pinned name, version, build tag and tags."""
    files = {
        path: text.format(version=wheel.version).encode()
        for path, text in _STANDIN_SOURCES.get(wheel.name, {}).items()
    } or {f"{wheel.name}/__init__.py": b"STANDIN = True\n"}
    dist_info = f"{wheel.name}-{wheel.version}.dist-info"
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {wheel.name}\nVersion: {wheel.version}\n"
        f"Summary: STAND-IN wheel built by sagefleet tests (not the real {wheel.name})\n"
    ).encode()
    files[f"{dist_info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: sagefleet-standin\nRoot-Is-Purelib: false\n"
        f"Build: {wheel.build_tag}\nTag: {wheel.python_tag}-{wheel.python_tag}-{wheel.platform}\n"
    ).encode()
    record = [_record_line(name, data) for name, data in sorted(files.items())]
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


def standin_sage_wheels(pins: Pins) -> dict[str, dict[str, str]]:
    """sage_wheels of pins, each with the sha256 of the stand-in wheel the wheelhouse
    serves (stand-ins are byte-for-byte reproducible): the offline profile pins hashes
    like a real fleet should, and pip verifies them."""
    return {
        w.name: {
            "version": w.version,
            "release_tag": w.release_tag,
            "build_tag": w.build_tag,
            "sha256": hashlib.sha256(standin_wheel_bytes(w)).hexdigest(),
        }
        for w in pins.image.wheels
    }


def build_wheelhouse(pins: Pins, root: Path) -> list[Path]:
    """Write every pinned wheel as a stand-in at <root>/<release_tag>/<file name>."""
    written = []
    for wheel in pins.image.wheels:
        path = root / wheel.release_tag / wheel.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(standin_wheel_bytes(wheel))
        tmp.replace(path)
        written.append(path)
    return written


@contextlib.contextmanager
def serve_wheelhouse(root: Path, host: str, port: int = 0) -> Iterator[str]:
    """Serve root over HTTP on host:port for the duration; yields the base URL."""
    import http.server  # here, not at the top: every run imports this module (group_data)

    class _QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
