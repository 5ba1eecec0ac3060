"""Multi-process training on torch.distributed (DDP), launched by ``torchrun``.

Nothing here is needed for a single process: every helper falls back to "rank 0 of 1". Under
``torchrun --nproc-per-node N -m lstmkit <task> ...`` (or ``--nnodes``/rendezvous across machines) the
environment carries RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; :func:`setup` reads them
and initialises the process group (gloo for CPU tensors, NCCL for CUDA tensors when CUDA is present).

How :func:`lstmkit.tasks.training.fit` uses this (see docs/distributed.md):

* every rank draws the same global batch order from the checkpointed loader generator and takes the
  strided share ``batch[rank::world]`` of each global batch (what DistributedSampler does; the shared
  generator plays the role of ``set_epoch``, and because the order is global, a run resumes with any N);
* the model is wrapped in DistributedDataParallel, which averages gradients; the local loss is scaled by
  ``world · n_local / n_global`` so the averaged gradient is the gradient of the global-batch mean even
  when the batch does not split evenly, i.e. the same update as one process with the same global batch;
* a loss made of weighted means (``training.WeightedMean``) has each term's weight total all-reduced, so a
  rank's mean is scaled by its share of the global weight; layers with batch statistics sum them over the
  ranks (:func:`sum_over_ranks`);
* losses and validation sums are all-reduced; checkpoints are written by rank 0 only (atomically), with every
  rank's torch RNG state, and all ranks wait at a barrier after; whether to resume is decided by rank 0 and a
  resume is read by rank 0 and broadcast, so only rank 0 needs the files;
* rank r > 0 derives its own torch generator from the seeded one, so the ranks draw different dropout masks.
"""
from __future__ import annotations

import contextlib
import os

_SETUP_BY_US = False
_PLACEHOLDER = False  # True while this rank runs a placeholder example (see placeholder_share)


def env_world_size() -> int:
    """WORLD_SIZE from the environment (1 when not launched by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def active() -> bool:
    """True inside an initialised process group with more than one process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def setup() -> bool:
    """Initialise the process group when torchrun's environment says WORLD_SIZE > 1 (idempotent).

    Backend: ``LSTMKIT_DIST_BACKEND`` if set, else gloo for CPU tensors plus NCCL for CUDA tensors when
    CUDA is available. Returns :func:`active`.
    """
    global _SETUP_BY_US
    import torch
    import torch.distributed as dist

    if env_world_size() <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        backend = os.environ.get("LSTMKIT_DIST_BACKEND")
        if backend is None:
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        dist.init_process_group(backend=backend)
        _SETUP_BY_US = True
    return active()


def teardown() -> None:
    """Destroy the process group if :func:`setup` created it."""
    global _SETUP_BY_US
    import torch.distributed as dist

    if _SETUP_BY_US and dist.is_initialized():
        dist.destroy_process_group()
    _SETUP_BY_US = False


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that prints and writes files."""
    return rank() == 0


def barrier() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier()


def shard(idx, r: int | None = None, w: int | None = None):
    """This rank's strided share of a global batch of example indices (``idx[rank::world]``)."""
    r = rank() if r is None else r
    w = world_size() if w is None else w
    return idx[r::w]


def all_reduce_sum(values):
    """Sum a list of floats over all ranks in float64; returns a float64 tensor (unchanged when alone)."""
    import torch

    t = torch.as_tensor(values, dtype=torch.float64)
    if active():
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_object(obj) -> list:
    """[rank 0's obj, rank 1's, ...] on every rank (pickled); ``[obj]`` when alone."""
    if not active():
        return [obj]
    import torch.distributed as dist

    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _sum_function():
    """An autograd Function: the sum of a tensor over the ranks, whose backward sums the gradients over the
    ranks (each rank's input reaches every rank's loss), as SyncBatchNorm's reduction does. Written here rather
    than torch.distributed.nn.functional.all_reduce, which is deprecated (a warning per call)."""
    import torch
    import torch.distributed as dist

    class _SumOverRanks(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            t = t.clone(memory_format=torch.contiguous_format)
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            return t

        @staticmethod
        def backward(ctx, grad):
            grad = grad.clone(memory_format=torch.contiguous_format)
            dist.all_reduce(grad, op=dist.ReduceOp.SUM)
            return grad

    return _SumOverRanks


_SUM_OVER_RANKS = None


def sum_over_ranks(t):
    """``t`` summed over all ranks, differentiably (the same ``t`` when alone): for statistics that must be the
    global batch's, such as batch norm's mean and variance. Every rank must call it, in the same order."""
    global _SUM_OVER_RANKS
    if not active():
        return t
    if _SUM_OVER_RANKS is None:
        _SUM_OVER_RANKS = _sum_function()
    return _SUM_OVER_RANKS.apply(t)


@contextlib.contextmanager
def placeholder_share(on: bool = True):
    """Mark the forward inside as a placeholder: a rank whose share of a (tiny) global batch is empty runs one
    example it does not own, only to join the collectives; layers that pool statistics over the global batch
    (classify's MaskedBatchNorm1d) count nothing from it (:func:`is_placeholder`)."""
    global _PLACEHOLDER
    before, _PLACEHOLDER = _PLACEHOLDER, bool(on)
    try:
        yield
    finally:
        _PLACEHOLDER = before


def is_placeholder() -> bool:
    """True inside :func:`placeholder_share`: this rank's examples must not count in global statistics."""
    return _PLACEHOLDER


def broadcast_tensor(t):
    """Rank 0's copy of ``t`` on every rank (in place), so decisions taken from it agree bit for bit."""
    if active():
        import torch.distributed as dist

        dist.broadcast(t, src=0)
    return t


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (pickled). An exception object is re-raised on every rank."""
    if active():
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        obj = box[0]
    if isinstance(obj, BaseException):
        raise obj
    return obj


def call_on_main(fn, *args, **kw):
    """Run ``fn`` on rank 0 only and give its result (or its exception) to every rank."""
    if not active():
        return fn(*args, **kw)
    out = None
    if is_main():
        try:
            out = fn(*args, **kw)
        except Exception as e:  # handed to every rank, raised there
            out = e
    return broadcast_object(out)


def wrap(model):
    """``model`` in DistributedDataParallel when distributed (on its device for CUDA), else ``model``."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    device = next(model.parameters()).device
    if device.type == "cuda":
        return DDP(model, device_ids=[device.index])
    return DDP(model)
