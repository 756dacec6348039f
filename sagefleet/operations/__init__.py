"""sagefleet's pyinfra operations: build.py (build hosts), verify.py (probe, gate),
service.py (GPU nodes). Each validates, reads facts, then yields quoted commands or noops."""
