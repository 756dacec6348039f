#!/usr/bin/env python3
"""Build the GPU end-to-end image where no registry or build tool can be reached.

Used by scripts/gpu-e2e on the lent GPU machine (docs/gpu.md). Stdlib only. It writes
a `docker load` archive (docker save format) from what the machine has:

- base: the machine's own root file system (bin sbin lib lib64 usr/... etc) or a
  root file system tarball, plus torch and its dependency closure (every file its
  installed distributions' RECORD lists) from an existing virtualenv;
- app: the SageAttention wheel installed into that virtualenv's site-packages, and
  the ComfyUI STAND-IN as /app/ComfyUI/main.py (tests/offline/core/comfyui_standin.py).

The base is split into many layers of about equal size: `docker push` compresses
each layer in its own stream (max-concurrent-uploads), so ~10 GB go in parallel.
Base layers are kept on disk and loaded once; another app layer (another
SageAttention build) reuses them.

    python3 scripts/gpu_image.py --work DIR --tag T --venv /opt/torch/.venv \
        --dists torch --wheel sageattention-1.0.6-1-py3-none-any.whl \
        --standin tests/offline/core/comfyui_standin.py | docker load
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HOST_DIRS = ("bin", "sbin", "lib", "lib64", "etc", "usr/bin", "usr/sbin", "usr/lib", "usr/lib64",
             "usr/libexec", "usr/include", "usr/share/zoneinfo")  # fmt: skip
# /usr/include: Triton compiles its launcher with the system C compiler and Python.h.
SKIP_PREFIXES = ("etc/docker", "etc/cdi", "etc/ssh/ssh_host_", "usr/lib/modules", "usr/lib/firmware",
                 "usr/lib/debug")  # fmt: skip


def log(msg: str) -> None:
    print(f"[gpu_image] {msg}", file=sys.stderr, flush=True)


def closure(python: str, roots: list[str]) -> list[str]:
    """Absolute paths of every file of the roots' installed distributions and of
    their requirements (recursively, markers evaluated, extras followed)."""
    code = r"""
import json, os, re, sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    try:
        from pip._vendor.packaging.requirements import Requirement
    except ImportError:
        Requirement = None
def wanted(text, extras):
    # (name, extras) to follow, or None; markers are evaluated for the extras asked
    # of this distribution (torch asks cuda-toolkit[nvrtc,...]).
    if Requirement is None:  # no packaging here: follow requirements without markers
        return None if ";" in text else (re.match(r"[A-Za-z0-9._-]+", text).group(0), ())
    req = Requirement(text)
    if req.marker is not None and not any(
        req.marker.evaluate({"extra": e}) for e in ("", *extras)
    ):
        return None
    return req.name, tuple(sorted(req.extras))
done, todo, files, dists = set(), [(n, ()) for n in sys.argv[1:]], [], set()
while todo:
    name, extras = todo.pop()
    key = (name.lower().replace("_", "-"), extras)
    if key in done:
        continue
    done.add(key)
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        continue
    if key[0] not in dists:
        dists.add(key[0])
        files += [os.path.normpath(str(dist.locate_file(f))) for f in dist.files or []]
    todo += [w for w in (wanted(t, extras) for t in dist.requires or []) if w]
seen = dists
print(json.dumps({"dists": sorted(seen), "files": files}))
"""
    out = subprocess.run([python, "-c", code, *roots], check=True, capture_output=True, text=True)
    doc = json.loads(out.stdout)
    log(f"closure of {roots}: {len(doc['dists'])} distributions, {len(doc['files'])} files")
    return doc["files"]


def walk(root: str, rel_dirs: list[str]) -> tuple[list[str], list[tuple[str, int]]]:
    """(directories, [(file or symlink, size)]) under root/rel for each rel, relative to root."""
    dirs: list[str] = []
    files: list[tuple[str, int]] = []
    for rel in rel_dirs:
        top = os.path.join(root, rel)
        if os.path.islink(top) or os.path.isfile(top):
            files.append((rel, os.lstat(top).st_size))
            continue
        if not os.path.isdir(top):
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            rdir = os.path.relpath(dirpath, root)
            if rdir.startswith(SKIP_PREFIXES):
                dirnames[:] = []
                continue
            dirs.append(rdir)
            for name in dirnames[:]:
                if os.path.islink(os.path.join(dirpath, name)):
                    dirnames.remove(name)  # a symlink to a directory: an entry, not a walk
                    files.append((os.path.join(rdir, name), 0))
            for name in filenames:
                path = os.path.join(dirpath, name)
                rpath = os.path.join(rdir, name)
                if rpath.startswith(SKIP_PREFIXES):
                    continue
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                if (st.st_mode & 0o170000) in (0o140000, 0o010000):  # sockets, fifos
                    continue
                files.append((rpath, st.st_size))
    return dirs, files


def ancestors(paths: list[str]) -> list[str]:
    out = set()
    for p in paths:
        parent = os.path.dirname(p)
        while parent and parent not in out:
            out.add(parent)
            parent = os.path.dirname(parent)
    return sorted(out)


def bins(files: list[tuple[str, int]], n: int) -> list[list[str]]:
    """Greedy: largest files first, each into the lightest bin."""
    loads = [0] * n
    out: list[list[str]] = [[] for _ in range(n)]
    for path, size in sorted(files, key=lambda f: -f[1]):
        i = loads.index(min(loads))
        out[i].append(path)
        loads[i] += size + 512
    return [sorted(b) for b in out if b]


def tar_layer(root: str, names: list[str], dest: Path) -> str:
    """GNU tar of exactly these names (no recursion) into dest; returns sha256:<diff id>."""
    lst = dest.with_suffix(".list")
    lst.write_bytes(b"\0".join(n.encode("utf-8", "surrogateescape") for n in names) + b"\0")
    h = hashlib.sha256()
    with subprocess.Popen(
        ["tar", "-C", root, "--numeric-owner", "--no-recursion", "--null", "-T", str(lst), "-cf", "-"],
        stdout=subprocess.PIPE,
    ) as proc, open(dest, "wb") as f:  # fmt: skip
        while chunk := proc.stdout.read(4 << 20):
            h.update(chunk)
            f.write(chunk)
    if proc.returncode not in (0, 1):  # 1: a file changed while read (logs); still a layer
        raise SystemExit(f"tar failed ({proc.returncode}) for {dest}")
    lst.unlink()
    return "sha256:" + h.hexdigest()


def file_layer(src: Path, dest: Path) -> str:
    h = hashlib.sha256()
    with open(src, "rb") as i, open(dest, "wb") as o:
        while chunk := i.read(4 << 20):
            h.update(chunk)
            o.write(chunk)
    return "sha256:" + h.hexdigest()


def build_base(args, base_dir: Path) -> dict:
    """The base layers (cached in base_dir/base.json): rootfs + the venv's closure."""
    meta_path = base_dir / "base.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        log(f"base layers cached: {len(meta['layers'])} in {base_dir}")
        return meta
    t0 = time.monotonic()
    base_dir.mkdir(parents=True, exist_ok=True)
    layers: list[tuple[str, str]] = []  # (file name, diff id)
    files: list[tuple[str, int]] = []
    dirs: list[str] = []
    if args.rootfs_tar:
        layers.append(("rootfs.tar", file_layer(Path(args.rootfs_tar), base_dir / "rootfs.tar")))
    else:
        dirs, files = walk("/", list(HOST_DIRS))
    venv_files: list[tuple[str, int]] = []
    if args.venv:
        venv = os.path.normpath(args.venv)
        # The venv's own skeleton (bin/, pyvenv.cfg; site-packages only as listed below) ...
        skel_dirs, skel = walk("/", [os.path.relpath(venv, "/")])
        site = [d for d in skel_dirs if d.endswith("site-packages")]
        keep = {f for f in skel if not any(f[0].startswith(s + "/") for s in site)}
        # ... and every file of the closure of the wanted distributions.
        wanted = {os.path.relpath(p, "/") for p in closure(args.venv_python, args.dists)}
        keep |= {f for f in skel if f[0] in wanted}
        venv_files = sorted(keep)
        dirs += [d for d in skel_dirs if not any(d.startswith(s + "/") for s in site)]
        dirs += ancestors([f for f, _ in venv_files])
        files += venv_files
    total = sum(s for _, s in files)
    log(f"base: {len(files)} files, {total / 1e9:.2f} GB, {len(dirs)} directories")
    # Layer files, then docker load's own copy and the layer store: ~3x at the peak.
    free = shutil.disk_usage(base_dir).free
    if free < 3.2 * total:
        raise SystemExit(
            f"only {free / 1e9:.1f} GB free under {base_dir}: the image needs about "
            f"{3.2 * total / 1e9:.1f} GB while it is built and loaded"
        )
    skeleton = sorted(set(dirs) | set(ancestors(dirs)))
    groups = [skeleton] + bins(files, args.layers) if files else []
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 2)) as pool:
        names = [f"base-{i:02d}.tar" for i in range(len(groups))]
        ids = list(
            pool.map(
                lambda g: tar_layer("/", g[0], base_dir / g[1]), zip(groups, names, strict=True)
            )
        )
    layers += list(zip(names, ids, strict=True))
    meta = {"layers": layers, "seconds": round(time.monotonic() - t0, 1), "bytes": total}
    meta_path.write_text(json.dumps(meta))
    log(f"base: {len(layers)} layers written in {meta['seconds']} s")
    return meta


def app_layer(args, dest: Path) -> str:
    """The SageAttention wheel(s) installed into the venv's site-packages, the stand-in."""
    stage = Path(tempfile.mkdtemp(prefix="app-", dir=dest.parent))
    for wheel in args.wheel:
        pip = subprocess.run(
            [args.venv_python, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
             "--no-compile", "--no-warn-script-location", "--root", str(stage), wheel],
        )  # fmt: skip
        if pip.returncode != 0:  # no pip in that venv: a wheel is a zip of site-packages
            purelib = subprocess.run(
                [args.venv_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                check=True, capture_output=True, text=True,
            ).stdout.strip()  # fmt: skip
            log(f"pip failed; unpacking {wheel} into {purelib}")
            shutil.unpack_archive(wheel, str(stage) + purelib, format="zip")
    (stage / "app" / "ComfyUI").mkdir(parents=True)
    shutil.copy(args.standin, stage / "app" / "ComfyUI" / "main.py")
    for d, mode in (("tmp", 0o1777), ("var/tmp", 0o1777), ("root", 0o700), ("run", 0o755)):
        (stage / d).mkdir(parents=True, exist_ok=True)
        (stage / d).chmod(mode)
    names = []
    for dirpath, dirnames, filenames in os.walk(stage):
        for n in dirnames + filenames:
            names.append(os.path.relpath(os.path.join(dirpath, n), stage))
    diff_id = tar_layer(str(stage), sorted(names), dest)
    shutil.rmtree(stage)
    return diff_id


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="where layers are written and kept")
    p.add_argument("--tag", required=True)
    p.add_argument("--venv", help="virtualenv holding torch (e.g. /opt/torch/.venv)")
    p.add_argument("--dists", nargs="+", default=["torch"])
    p.add_argument("--wheel", action="append", default=[], help="wheel(s) for the app layer")
    p.add_argument("--standin", required=True, help="the ComfyUI stand-in main.py")
    p.add_argument("--rootfs-tar", help="a root file system tarball instead of this machine's /")
    p.add_argument("--layers", type=int, default=16, help="base file layers (push streams)")
    p.add_argument("--label", action="append", default=[], help="KEY=VALUE image label")
    p.add_argument("--base-present", action="store_true",
                   help="the engine holds the base layers already: leave them out of the archive")  # fmt: skip
    args = p.parse_args()
    args.venv_python = os.path.join(args.venv, "bin", "python") if args.venv else sys.executable
    work = Path(args.work)
    base = build_base(args, work / "base")
    t0 = time.monotonic()
    key = hashlib.sha256(args.tag.encode()).hexdigest()[:12]
    app = work / f"app-{key}.tar"
    app_id = app_layer(args, app)
    diff_ids = [d for _, d in base["layers"]] + [app_id]
    venv_bin = os.path.join(args.venv, "bin") + ":" if args.venv else ""
    labels = dict(kv.split("=", 1) for kv in args.label)
    labels["org.sagefleet.e2e.base-layers"] = str(len(base["layers"]))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": [
                f"PATH={venv_bin}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
                "COMFY_PORT=8188",
                "CLI_ARGS=",
            ],
            "Cmd": [
                "/bin/bash",
                "-c",
                'exec python main.py --listen 0.0.0.0 --port "$COMFY_PORT" $CLI_ARGS',
            ],  # fmt: skip
            "WorkingDir": "/app/ComfyUI",
            "ExposedPorts": {"8188/tcp": {}},
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "scripts/gpu_image.py base"} for _ in base["layers"]]
        + [
            {
                "created_by": "scripts/gpu_image.py app: "
                + " ".join(map(os.path.basename, args.wheel))
            }
        ],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    layer_names = [f"base/{n}" for n, _ in base["layers"]] + [app.name]
    manifest = [{"Config": "config.json", "RepoTags": [args.tag], "Layers": layer_names}]
    # The archive on stdout (docker load reads it); layer files are streamed from disk.
    out = tarfile.open(fileobj=sys.stdout.buffer, mode="w|")
    for name, data in (
        ("manifest.json", json.dumps(manifest).encode()),
        ("config.json", config_bytes),
    ):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))
    for name in layer_names:
        if args.base_present and name.startswith("base/"):
            continue  # docker load reads a layer file only when it lacks that layer
        out.add(str(work / name), arcname=name)
    out.close()
    log(f"app layer + archive in {time.monotonic() - t0:.1f} s; image id "
        f"sha256:{hashlib.sha256(config_bytes).hexdigest()}")  # fmt: skip
    return 0


if __name__ == "__main__":
    assert re.match(r"^3\.", sys.version)
    sys.exit(main())
