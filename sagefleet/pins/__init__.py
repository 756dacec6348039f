"""Pins: group_data validated with packaging before any host is contacted.

Pure: nothing here imports pyinfra. ``validate`` is the entry (validate.py);
image.py says what defines the image, build.py how a build host builds it,
verify.py how it is verified, service.py how the service runs on GPU nodes, wheels.py derives
wheel file names and URLs, check.py holds the checks and PinError.
"""

from .build import BuildPins
from .check import MISSING, PinError
from .image import GitContext, ImagePins, LocalDir
from .service import ServicePins
from .validate import KNOWN_KEYS, Pins, host_pins, validate, validate_inventory
from .verify import VerifyPins
from .wheels import Wheel

__all__ = [
    "KNOWN_KEYS",
    "MISSING",
    "BuildPins",
    "GitContext",
    "ImagePins",
    "LocalDir",
    "PinError",
    "Pins",
    "ServicePins",
    "VerifyPins",
    "Wheel",
    "host_pins",
    "validate",
    "validate_inventory",
]
