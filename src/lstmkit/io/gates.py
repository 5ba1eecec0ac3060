"""The one gate-reordering helper every format uses, and each format's gate order.

Gates are named in torch's terms: LSTM i (input), f (forget), g (candidate cell), o (output); GRU r (reset),
z (update), n (candidate). Keras calls g "c" and n "h"; ONNX calls g "c" and n "h". Only the order differs:

    format   LSTM         GRU
    torch    i, f, g, o   r, z, n
    keras    i, f, g, o   z, r, n     (kernels are transposed: (in, gates·H))
    onnx     i, o, f, g   z, r, n
"""
from __future__ import annotations

import numpy as np

ORDERS = {
    "torch": {"LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n")},
    "keras": {"LSTM": ("i", "f", "g", "o"), "GRU": ("z", "r", "n")},
    "onnx": {"LSTM": ("i", "o", "f", "g"), "GRU": ("z", "r", "n")},
}


def reorder(w, mode: str, src: str, dst: str, axis: int = 0) -> np.ndarray:
    """Reorder the gate blocks of ``w`` from format ``src`` to format ``dst``.

    w: gates stacked along ``axis`` (e.g. torch weight_ih (G·H, I), axis 0; Keras kernel (I, G·H), axis 1;
    a bias (G·H,)). Returns a new array of the same shape with the blocks in ``dst``'s order, e.g. torch →
    ONNX for the LSTM: ``i, f, g, o = split(w, 4)`` then ``concatenate([i, o, f, g])``.
    """
    src_order, dst_order = ORDERS[src][mode], ORDERS[dst][mode]
    w = np.asarray(w)
    if w.shape[axis] % len(src_order):
        raise ValueError(f"{mode} weights: axis {axis} of shape {w.shape} is not {len(src_order)} gate blocks")
    chunks = dict(zip(src_order, np.split(w, len(src_order), axis=axis)))  # gate name -> block
    return np.concatenate([chunks[gate] for gate in dst_order], axis=axis)
