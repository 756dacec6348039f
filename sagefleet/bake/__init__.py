"""The bake project as bake itself reports it: ``--print`` parsing, sagefleet's
overrides (``--set``), and bake's progress as per-step events. Pure: no pyinfra."""

from .overrides import INPUTS_LABEL, cache_ref_for, cache_sets, check_cache_ref, label_set, set_args
from .progress import BakeProgress, Step, format_bar, format_step
from .resolve import (
    REQUIREMENTS_FILE,
    BakeDefinition,
    BakeError,
    Target,
    parse_print,
    parse_target,
    print_argv,
)

__all__ = [
    "INPUTS_LABEL",
    "REQUIREMENTS_FILE",
    "BakeDefinition",
    "BakeError",
    "BakeProgress",
    "Step",
    "Target",
    "cache_ref_for",
    "cache_sets",
    "check_cache_ref",
    "format_bar",
    "format_step",
    "label_set",
    "parse_print",
    "parse_target",
    "print_argv",
    "set_args",
]
