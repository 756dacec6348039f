# Entry point of the rollout: `python rollout.py ...` is `python -m sagefleet.rollout ...`
# (build once, push, canary, batches, halt, automatic rollback; docs/rollout.md).
# No logic here: sagefleet.rollout drives pyinfra in-process, one State per batch.
if __name__ == "__main__":
    import sys

    from sagefleet.rollout.cli import main

    sys.exit(main())
