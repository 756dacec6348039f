"""sagefleet: pyinfra operations, facts and pin validation for ComfyUI + SageAttention fleets."""

__version__ = "0.1.0"
