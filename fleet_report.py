# Entry point for the fleet report's gathering step (read-only: facts, no operations):
#   python -m sagefleet.gather   (runs `pyinfra inventory.py fleet_report.py`, then renders)
import os

from sagefleet.deploys import collect_host_record

collect_host_record(os.environ.get("SAGEFLEET_REPORT_DIR", "reports"))
