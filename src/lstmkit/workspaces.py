"""Memory for the engine's training workspaces, recycled between training steps.

A training forward keeps every step's gate activations and states for its backward: tens to hundreds
of MB per call (46 MB for an LSTM with B=64, H=256, T=100). Blocks that large are fresh pages from the
kernel on every allocation, zeroed on first touch, which costs a training step as much as a layer
norm does. So the memory of a workspace that nobody uses any more (the last array or torch tensor
viewing it is gone) is kept and handed out again: in a training loop the same block serves every
step. At most ``KEEP`` idle blocks are kept; ``release()`` gives them back.
"""
from __future__ import annotations

import threading
import weakref
from collections import deque

import numpy as np

__all__ = ["empty", "release", "KEEP"]

KEEP = 2  # idle blocks kept: a NumPy layer holds its last workspace while the next forward takes one

_lock = threading.Lock()
_idle: list[np.ndarray] = []
# Blocks whose workspaces were dropped. Their finalizers only append here, without the lock: the garbage
# collector may run one inside empty()'s critical section, in the same thread, which a lock would deadlock.
_returned: deque = deque()


class _Lease:
    """The owner of one workspace's memory as NumPy sees it: the array ``empty`` returns is made from this
    object's ``__array_interface__``, so that array, and every view of it (slices, reshapes, torch tensors),
    keeps the lease alive; the block goes back to the pool when the last of them is gone. (A slice of the
    block itself would not do: NumPy gives its views the block as their base, skipping the slice, so the slice
    could die, and its memory be handed out again, while a view of it is still in use.)"""

    __slots__ = ("__array_interface__", "block", "__weakref__")

    def __init__(self, block: np.ndarray, size: int):
        self.block = block
        self.__array_interface__ = {**block.__array_interface__, "shape": (size,)}


def empty(size: int, dtype) -> np.ndarray:
    """An uninitialised 1-D array of ``size`` values of ``dtype``, in recycled memory when an idle
    block fits (at least ``size`` values, at most twice as many)."""
    dtype = np.dtype(dtype)
    block = None
    with _lock:
        while _returned:
            _idle.append(_returned.popleft())
        del _idle[:-KEEP]
        for i, candidate in enumerate(_idle):
            if candidate.dtype == dtype and size <= candidate.size <= 2 * size:
                block = _idle.pop(i)
                break
    if block is None:
        block = np.empty(size, dtype)
    lease = _Lease(block, size)
    weakref.finalize(lease, _returned.append, block).atexit = False
    return np.asarray(lease)


def release() -> None:
    """Free the idle blocks (the memory of workspaces still in use is freed when they are dropped)."""
    with _lock:
        _idle.clear()
        _returned.clear()
