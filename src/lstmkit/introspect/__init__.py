"""Look inside a model: ``trace`` (every gate and state, NumPy only), derived ``views``, ``plots``
(matplotlib, the "viz" extra) and a self-contained HTML ``report``.

Only ``trace`` and ``views`` are imported here, so ``import lstmkit.introspect`` needs NumPy alone.
"""
from . import views
from .trace import DirectionTrace, Trace, to_layer, trace

__all__ = ["trace", "Trace", "DirectionTrace", "to_layer", "views"]
