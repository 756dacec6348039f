"""Rollout to GPU nodes, in-process on pyinfra's Python API (docs/rollout.md).

    python -m sagefleet.rollout [--dry] [--batch-size N] [--image REPO@sha256:...]
    python -m sagefleet.rollout rollback [--limit PATTERN] [--dry]

1. publish: the first build host builds (when inputs changed), verifies and pushes
   with ``bake --push``; the digest bake recorded is the target.
2. the canary group, then the other GPU nodes in batches of ``rollout_batch_size``;
   each batch is one pyinfra ``State`` (connect, operations, run) over its nodes.
   A failed node (pull, verification gate, start, health check) halts the rollout:
   later batches are not touched, the failed batch's replaced nodes go back to the
   digest each ran before (``rollout_auto_rollback``), the exit status is 1.
3. a summary: moved / unchanged / failed (why) / rolled back / untouched.

Modules: ``plan`` (pure: batches, results, summary), ``session`` (one pyinfra State
over some hosts), ``driver`` (publish, batches, halt, rollback, preview), ``cli``. The
pure API is imported from ``plan`` itself (``from sagefleet.rollout.plan import ...``).
"""
