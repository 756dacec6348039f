"""sagefleet's pyinfra facts: build.py (build hosts), verify.py (stored probe results),
gpu.py (GPUs), service.py (the service on GPU nodes). Facts only read."""
