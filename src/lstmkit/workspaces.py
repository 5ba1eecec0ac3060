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

import numpy as np

__all__ = ["empty", "release", "KEEP"]

KEEP = 2  # idle blocks kept: a NumPy layer holds its last workspace while the next forward takes one

_lock = threading.Lock()
_idle: list[np.ndarray] = []


def empty(size: int, dtype) -> np.ndarray:
    """An uninitialised 1-D array of ``size`` values of ``dtype``, in recycled memory when an idle
    block fits (at least ``size`` values, at most twice as many)."""
    dtype = np.dtype(dtype)
    block = None
    with _lock:
        for i, candidate in enumerate(_idle):
            if candidate.dtype == dtype and size <= candidate.size <= 2 * size:
                block = _idle.pop(i)
                break
    if block is None:
        block = np.empty(size, dtype)
    view = block[:size]
    weakref.finalize(view, _give_back, block).atexit = False
    return view


def _give_back(block: np.ndarray) -> None:
    with _lock:
        _idle.append(block)
        del _idle[:-KEEP]


def release() -> None:
    """Free the idle blocks (the memory of workspaces still in use is freed when they are dropped)."""
    with _lock:
        _idle.clear()
