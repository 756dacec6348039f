"""Verification on build hosts and GPU nodes: the kernel probe, then the gate."""

from __future__ import annotations

from pyinfra import host, logger, state
from pyinfra.api import OperationError, operation

from .. import commands
from ..facts.gpu import EngineGpuAccess
from ..facts.verify import ProbeResult
from ..gate import Expectation, describe, gate_failures
from ..gpu_access import choose
from ..pins.service import GPU_ACCESS_MODES
from .snapshot import Snapshot, changed, found, put
from .util import require_abs


def stored_probe(doc: dict | None, image_ref: str, results_dir: str) -> dict:
    """The stored probe result of the image the tag points to: from a NodeState document
    (a snapshot's, while it holds), else from the ``ProbeResult`` fact."""
    if doc is None:
        return host.get_fact(ProbeResult, image_ref=image_ref, results_dir=results_dir)
    return {"image_id": (doc["image"] or {}).get("id"), "result": doc["probe"]}


def _stored(snapshot: Snapshot | None, image_ref: str, results_dir: str) -> dict:
    """The stored probe result, from the snapshot while it holds, else the fact."""
    return stored_probe(found(snapshot), image_ref, results_dir)


def settings_differ(result: dict, quick: bool, workload_seq_lens: tuple[int, ...]) -> str | None:
    """How a stored probe result was measured with other settings than these (the
    profile, the workload's sequence lengths), or None. A field the result lacks
    (an older probe's) is no evidence of a difference."""
    profile, want = result.get("profile"), "quick" if quick else "default"
    if profile is not None and profile != want:
        return f"profile {profile}, want {want}"
    rec = result.get("recommendation")
    if isinstance(rec, dict) and "workload_seq_lens" in rec:
        have, lens = rec["workload_seq_lens"] or [], sorted({int(x) for x in workload_seq_lens})
        if have != lens:
            return f"workload seq lens {have or 'none'}, want {lens or 'none'}"
    return None


@operation()
def probe(
    build_dir: str,
    image_ref: str,
    probe_path: str,
    quick: bool = True,
    timeout_s: float = 300,
    snapshot: Snapshot | None = None,
    workload_seq_lens: tuple[int, ...] = (),
    gpu_access: str = "auto",
    gpu_node: bool = False,
    script: str | None = None,
    create_dir: bool = False,
):
    """
    Run the SageAttention kernel probe in the current image, once per image ID.

    + build_dir: results go to ``{build_dir}/probe/<image id>.json``
    + image_ref: the image to probe (the tag the bake produced)
    + probe_path: the probe script on the host (``script`` puts it there)
    + quick: 4 shapes per kernel instead of 16
    + timeout_s: per kernel; the kernels run in a worker process, replaced if one crashes or hangs
    + snapshot: the run's ``BuildState`` (image ID, stored result); None: read ``ProbeResult``
    + workload_seq_lens: the fleet's workload sequence lengths (measured too; the
      recommendation needs sageattn faster than SDPA at all of them)
    + gpu_access: the ``gpu_access`` pin (auto, nvidia-runtime, cdi, none)
    + gpu_node: a GPU node is refused (the host fails) where the engine can give
      the container no GPU; a build host then probes without one ("no GPU")
    + script: the local probe script (sagefleet/probe.py), put at ``probe_path`` first
      (mode 644) unless the snapshot shows it there (``snapshot.put`` decides);
      create_dir: create probe_path's directory for it

    Idempotence: a result stored for the image ID the tag points to, measured with
    these settings (profile, workload seq lens), means nothing to do; a rebuilt
    image (new ID) or changed settings probe again. The GPU reaches the container
    as ``sagefleet.gpu_access.choose`` decides from ``EngineGpuAccess`` (``--gpus all``
    with the NVIDIA runtime, ``--device nvidia.com/gpu=...`` with CDI), exactly as
    for the service. Under ``--dry`` nothing runs: the kernels run only here.
    """
    require_abs("build_dir", build_dir)
    if gpu_access not in GPU_ACCESS_MODES:
        raise OperationError(f"gpu_access must be one of {', '.join(GPU_ACCESS_MODES)}")
    results_dir = f"{build_dir}/probe"
    # Decide and say it before the first command: pyinfra's change detection (--dry,
    # the rollout's plan) stops at an operation's first command. The stored result does
    # not depend on the script, so it is read before the script is put.
    stored = _stored(snapshot, image_ref, results_dir)
    done = None
    if stored["image_id"] and stored["result"] is not None:
        other = settings_differ(stored["result"], quick, workload_seq_lens)
        if not other:
            done = f"probe result for image {stored['image_id'][:19]} already stored"
        else:
            logger.info(
                f"{host.print_prefix}stored probe result measured with {other}: probing again"
            )
    access = None if done else choose(host.get_fact(EngineGpuAccess), gpu_access, gpu_node)
    if access and access.problem:
        logger.warning(f"{host.print_prefix}{access.problem}")
    if script is not None:
        yield from put._inner(
            src=script, dest=probe_path, mode="644", snapshot=snapshot, create_remote_dir=create_dir
        )
    if done:
        host.noop(done)
        return
    if access.problem:
        yield commands.fail(access.problem)
        return
    changed(snapshot)
    logger.info(f"{host.print_prefix}probe GPU access: {access.mode} ({access.reason})")
    yield commands.probe(
        image_ref,
        probe_path,
        results_dir,
        gpu_flags=access.flags,
        quick=quick,
        timeout_s=timeout_s,
        workload_seq_lens=workload_seq_lens,
    )


@operation()
def gate(build_dir: str, image_ref: str, expect: Expectation, snapshot: Snapshot | None = None):
    """
    Fail the host unless the probed image matches the pins (the verification gate).

    + build_dir: where ``sagefleet.operations.verify.probe`` stored its results
    + image_ref: the image whose stored result is checked
    + expect: a ``sagefleet.gate.Expectation`` (versions, wheel build tags,
      sageattn3 requirement, torch version, kernel accuracy bounds)
    + snapshot: the run's ``BuildState`` (image ID, stored result); None: read ``ProbeResult``

    Reads only the stored probe result: nothing runs in the image here. Passing is
    a noop that names what was verified; failing fails the host with every reason.
    """
    stored = _stored(snapshot, image_ref, f"{build_dir}/probe")
    if stored["result"] is None:
        if state.is_executing:
            yield commands.fail(f"no probe result for image {stored['image_id']} of {image_ref}")
        else:
            host.noop("verification runs after the probe of the image")
        return
    failures = gate_failures(stored["result"], expect)
    image_id = (stored["image_id"] or "")[:19]
    if failures:
        message = f"verification failed for image {image_id}: " + "; ".join(failures)
        logger.warning(f"{host.print_prefix}{message}")
        yield commands.fail(message)
        return
    host.noop(f"verified image {image_id}: {describe(stored['result'])}")
