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
)


@dataclass(frozen=True)
class VerifyPins:
    """The probe's settings and the verification gate's bounds."""

    verify_torch: bool
    verify_min_cosine: float
    verify_max_rel_l1: float
    probe_quick: bool
    probe_timeout_s: float


def check_verify(c: Checker, data: Mapping[str, object]) -> VerifyPins:
    """The verification keys, in the order of group_data/all.py."""
    return VerifyPins(
        verify_torch=c.boolean("verify_torch", data["verify_torch"]),
        verify_min_cosine=c.number("verify_min_cosine", data["verify_min_cosine"], 0.0, 1.0),
        verify_max_rel_l1=c.number("verify_max_rel_l1", data["verify_max_rel_l1"], 0.0, None),
        probe_quick=c.boolean("probe_quick", data["probe_quick"]),
        probe_timeout_s=c.number("probe_timeout_s", data["probe_timeout_s"], 1.0, None),
    )
