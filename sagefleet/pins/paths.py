"""Paths on the hosts that sagefleet may write to or mount.

``build_dir`` and ``state_dir`` get created (and, where sagefleet created them, a
mode): they must be directories of their own, never ``/`` or a system directory.
``service_volumes`` mounts host paths read-write into a container that serves
HTTP: a sensitive host path (system configuration, home directories, the Docker
socket, sagefleet's own build and state directories with their secrets) is refused
unless ``allow_sensitive_volumes = True``.

Paths reach here already absolute and normal (sagefleet.pins checks that first).
Pure: imports no pyinfra.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["SENSITIVE", "SYSTEM_DIRS", "SYSTEM_TREES", "directory_refusal", "volume_refusal"]

# Refused themselves (a directory of its own below them is fine).
SYSTEM_DIRS = frozenset(
    {
        "/",
        "/home",
        "/media",
        "/mnt",
        "/opt",
        "/root",
        "/srv",
        "/tmp",
        "/usr/local",
        "/var",
        "/var/backups",
        "/var/cache",
        "/var/lib",
        "/var/local",
        "/var/mail",
        "/var/opt",
        "/var/spool",
        "/var/tmp",
    }
)
# Refused with everything below them: the system's own files and other tools' state.
SYSTEM_TREES = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lib/apt",
    "/var/lib/containerd",
    "/var/lib/docker",
    "/var/lib/dpkg",
    "/var/log",
    "/var/run",
)
# Host paths a container must not see unless allowed: mounting one (or a directory
# that contains one) gives the container the host's configuration, keys or Docker.
SENSITIVE = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib64",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lib/containerd",
    "/var/lib/docker",
    "/var/log",
    "/var/run",
)


def within(path: str, tree: str) -> bool:
    """path is tree or below it (both absolute and normal)."""
    return tree == "/" or path == tree or path.startswith(tree + "/")


def directory_refusal(path: str) -> str | None:
    """Why path may not be a build_dir/state_dir, or None."""
    if path in SYSTEM_DIRS:
        return "a system directory; use a directory of its own (e.g. /opt/sagefleet/build)"
    for tree in SYSTEM_TREES:
        if within(path, tree):
            return f"inside the system directory {tree}; use one like /opt/sagefleet/build"
    hidden = next((p for p in path.split("/") if p.startswith(".")), None)
    if hidden:
        return f"hidden directory {hidden!r} refused (.ssh, .docker hold credentials)"
    return None


def volume_refusal(src: str, own: Iterable[str] = ()) -> str | None:
    """Why host path src may not be mounted into the service, or None.

    + own: sagefleet's directories on that host (build_dir, state_dir): they hold the
      registry login and the pip CA bundle
    """
    for tree in (*SENSITIVE, *own):
        if within(src, tree):
            what = "is" if src == tree else "is inside"
            return f"{what} {tree}: sensitive; set allow_sensitive_volumes = True to mount it"
        if within(tree, src):
            return f"contains {tree}: sensitive; set allow_sensitive_volumes = True to mount it"
    return None
