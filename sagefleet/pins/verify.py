"""How an image is verified: the kernel probe's settings and the gate's bounds.

Build hosts and GPU nodes verify alike. Pure: imports no pyinfra.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .check import Checker

VERIFY_KEYS = (
    "verify_torch",
    "verify_min_cosine",
    "verify_max_rel_l1",
    "probe_quick",
    "probe_timeout_s",
    "probe_workload_seq_lens",
)
# The sequence lengths a workload may name (the probe measures each of them).
_SEQ_RANGE = (16, 1 << 20)


@dataclass(frozen=True)
class VerifyPins:
    """The probe's settings and the verification gate's bounds."""

    verify_torch: bool
    verify_min_cosine: float
    verify_max_rel_l1: float
    probe_quick: bool
    probe_timeout_s: float
    probe_workload_seq_lens: tuple[int, ...] = ()


def check_verify(c: Checker, data: Mapping[str, object]) -> VerifyPins:
    """The verification keys, in the order of group_data/all.py."""
    return VerifyPins(
        verify_torch=c.boolean("verify_torch", data["verify_torch"]),
        verify_min_cosine=c.number("verify_min_cosine", data["verify_min_cosine"], 0.0, 1.0),
        verify_max_rel_l1=c.number("verify_max_rel_l1", data["verify_max_rel_l1"], 0.0, None),
        probe_quick=c.boolean("probe_quick", data["probe_quick"]),
        probe_timeout_s=c.number("probe_timeout_s", data["probe_timeout_s"], 1.0, None),
        probe_workload_seq_lens=_seq_lens(
            c, "probe_workload_seq_lens", data["probe_workload_seq_lens"]
        ),
    )


def _seq_lens(c: Checker, key: str, value: object) -> tuple[int, ...]:
    """A list of whole sequence lengths, each within _SEQ_RANGE."""
    if not isinstance(value, list | tuple):
        c.fail(key, value, f"must be a list of sequence lengths, not {type(value).__name__}")
    low, high = _SEQ_RANGE
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
            c.fail(f"{key}[{i}]", item, f"must be a whole number between {low} and {high}")
    return tuple(sorted(set(value)))
