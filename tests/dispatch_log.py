"""A dispatch mode that records the name of every operator dispatched under it (import after
``pytest.importorskip("torch")``)."""
from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode


class SeenOps(TorchDispatchMode):
    """``with SeenOps() as seen: ...`` then ``seen.names``: each operator dispatched, in order."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))
