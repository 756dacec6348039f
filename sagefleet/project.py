"""Where this project lives on the control machine, and which pyinfra CLI it runs."""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The pyinfra CLI of the interpreter running sagefleet (its virtualenv's).
PYINFRA_CLI = str(Path(sys.executable).with_name("pyinfra"))
PROBE_SCRIPT = PROJECT_ROOT / "sagefleet" / "probe.py"
