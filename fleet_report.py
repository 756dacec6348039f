# Entry point for the fleet report's gathering step (read-only: facts, no operations):
#   python -m sagefleet.report.gather   (runs `pyinfra inventory.py fleet_report.py`, then renders)
from sagefleet.deploys.report import collect_host_record

collect_host_record()
