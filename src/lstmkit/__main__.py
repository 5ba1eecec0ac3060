import os
import sys

from .cli import main


def _run() -> int:
    """``python -m lstmkit``; under ``torchrun`` (WORLD_SIZE > 1) it joins the process group first, keeps
    stdout on rank 0 only (LSTMKIT_LOG_ALL_RANKS=1 keeps every rank's) and lets rank 0 own the run folder."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return main()
    from .tasks import distributed

    distributed.setup()
    if not distributed.is_main() and os.environ.get("LSTMKIT_LOG_ALL_RANKS") != "1":
        sys.stdout = open(os.devnull, "w")
    try:
        return main()
    finally:
        distributed.teardown()


sys.exit(_run())
