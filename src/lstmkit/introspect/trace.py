"""``trace(model, x)``: every gate, cell and hidden state of every layer, direction and step, as named arrays.

The values come from the NumPy reference, the one source of truth: ``ref.forward`` runs the sequence
and keeps each step's cache; the gates are read from those caches (``_CACHE_SLOTS``: the textbook cells'
and the variant cells' of docs/variants.md) and the new state of each step is obtained by handing the
cached inputs of that step back to the reference cell (``cell_forward``), so no cell equation is
written twice. Computation is in float64 and dropout is off (a trace describes the model, not a
training step): the variant options in evaluation mode, zoneout by its expectation, no recurrent dropout.

Every array is sequence-first and indexed by the position t in the sequence, for the reverse direction
too (it runs t = T−1 … 0, so its "previous" state at t is the one at t+1). Steps past a sequence's end
(``lengths``) are NaN: the reference computes the cell there but throws the result away.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .. import ref
from ..checks import check_input, check_lengths, check_state, state_shapes
from ..params import GATES, RNNConfig, to_numpy

__all__ = ["DirectionTrace", "Trace", "trace", "to_layer"]


@dataclass
class DirectionTrace:
    """One direction of one layer. T steps, B sequences, H hidden units, P = proj_size or H.

    gates: name -> (T, B, H); LSTM "i", "f", "g", "o", GRU "r", "z", "n" (torch's order).
    c: (T, B, H) the cell after step t (LSTM), None for a GRU.
    h: (T, B, P) the hidden state after step t (LSTM with projection: W_hr (o ⊙ tanh(c))).
    h0, c0: (B, P), (B, H) the state the direction started from (c0 None for a GRU).
    reverse: True for the backward direction.
    """

    gates: dict
    h: np.ndarray
    c: np.ndarray | None
    h0: np.ndarray
    c0: np.ndarray | None
    reverse: bool

    def quantities(self) -> dict:
        """Everything plottable, by name: the gates, then "c" (LSTM) and "h"; each (T, B, units)."""
        out = dict(self.gates)
        if self.c is not None:
            out["c"] = self.c
        out["h"] = self.h
        return out


@dataclass
class Trace:
    """The trace of one forward pass.

    config: the model's RNNConfig. x: (T, B, I) the input, sequence-first, float64.
    lengths: (B,) valid steps per sequence (T for all when none were given).
    valid: (T, B) bool, True where step t < lengths[b].
    layers[l][d]: DirectionTrace of layer l, direction d (0 forward, 1 reverse).
    output: (T, B, D·P) the top layer's output (zeros past a sequence's end, as the model returns it).
    params: the float64 parameters used, under torch's names.
    """

    config: RNNConfig
    x: np.ndarray
    lengths: np.ndarray
    valid: np.ndarray
    layers: list
    output: np.ndarray
    params: dict = field(repr=False)
    cache: dict = field(repr=False)  # ref.forward's cache, for ref's backward (views.gradient_norms)

    @property
    def gate_names(self) -> tuple:
        return GATES[self.config.mode]

    @property
    def steps(self) -> int:
        return self.x.shape[0]

    @property
    def batch(self) -> int:
        return self.x.shape[1]

    def layer_input(self, layer: int) -> np.ndarray:
        """(T, B, I_l): what layer ``layer`` read — x, or the previous layer's h of both directions concatenated."""
        if layer == 0:
            return self.x
        return np.concatenate([d.h for d in self.layers[layer - 1]], axis=2)


def to_layer(model, dtype="float64"):
    """A NumPy reference layer (lstmkit.LSTM/GRU) with ``model``'s configuration and weights, in ``dtype``.

    model: an lstmkit layer or cell, anything ``lstmkit.io.as_layer`` converts (torch.nn / lstmkit.torch
    modules and cells, Keras layers), or a path to any file ``lstmkit.io.read`` reads (safetensors, ...).
    A cell becomes the one-layer RNN it steps.
    """
    from .. import io
    from ..layers import GRU, LSTM, RNNBase, _CellBase

    if isinstance(model, (str, os.PathLike)):
        model = io.read(model)
    elif not isinstance(model, (RNNBase, _CellBase)):
        model = io.as_layer(model)
    config, state = model.config, model.state_dict()
    if isinstance(model, _CellBase):
        state = {k + "_l0": v for k, v in state.items()}  # a cell's names are a one-layer RNN's without the suffix
    cls = LSTM if config.mode == "LSTM" else GRU
    kwargs = {k: v for k, v in config.to_dict().items() if k != "mode"}
    layer = cls(**kwargs, dtype=dtype, backend="reference")
    layer.load_state_dict(state)
    return layer.eval()


def trace(model, x, lengths=None, hx=None) -> Trace:
    """Run ``model`` on ``x`` through the reference and return every gate, cell and hidden state.

    x: (T, B, I), (B, T, I) for a batch_first model, or unbatched (T, I) (traced as B = 1); numpy or torch;
    or a torch PackedSequence (its padded form and lengths, sequences in their original order).
    lengths: (B,) valid steps per sequence, or None. hx: the initial state as the model takes it, or None.
    Returns a Trace whose arrays are sequence-first float64 (see Trace and DirectionTrace).
    """
    layer = to_layer(model)
    cfg = layer.config
    if type(x).__name__ == "PackedSequence" and hasattr(x, "batch_sizes"):
        if lengths is not None:
            raise ValueError("lengths: a PackedSequence carries its own lengths; give one or the other")
        from torch.nn.utils.rnn import pad_packed_sequence

        x, lengths = pad_packed_sequence(x, batch_first=cfg.batch_first)
    x = np.asarray(to_numpy(x), dtype=np.float64)
    T, B, unbatched = check_input(cfg, x, np.float64)
    lengths = check_lengths(lengths, T, B)
    xs = x[:, None] if unbatched else (x.transpose(1, 0, 2) if cfg.batch_first else x)
    if hx is not None:
        hx = (tuple(np.asarray(h, np.float64) for h in hx) if isinstance(hx, (tuple, list))
              else np.asarray(hx, np.float64))
    state0 = check_state(cfg, hx, B, unbatched, np.float64)
    if state0 is not None:
        state0 = tuple(np.asarray(s).reshape(shape) for s, shape in zip(state0, state_shapes(cfg, B)))
    else:
        state0 = ref.zero_state(cfg, B, np.float64)

    output, _, cache = ref.forward(cfg, layer.params, xs, state0, lengths)
    valid = cache["mask"][:, :, 0] > 0  # (T, B)
    cell = cache["cell"]
    D = cfg.num_directions
    layers = []
    for l, (_, directions) in enumerate(cache["layers"]):
        per_direction = []
        for d, (w, caches) in enumerate(directions):
            k = l * D + d
            init = tuple(s[k] for s in state0)
            per_direction.append(_direction_trace(cfg, cell, w, caches, valid, init, reverse=d == 1))
        layers.append(per_direction)
    if lengths is None:
        lengths = np.full(B, T, np.int64)
    return Trace(cfg, xs, lengths, valid, layers, output, dict(layer.params), cache)


# where a step's cache holds the gates (torch's order) and the variant masks (m_rd, m_c, m_h), by (mode, plain):
# ref/lstm.py (x, h, c, i, f, g, o, tanh_c, m), ref/gru.py (x, h, r, z, n, gh_n), and the variant cells of
# ref/variants.py: LSTM (x, h, c, hr, m_rd, m_c, m_h, ln_ih, ln_hh, i, f, g, o, ...), GRU (x, h, hr, m_rd, m_h,
# ln_ih, ln_hh, r, z, n, ...); input_forget's f is cached as 1 − i
_CACHE_SLOTS = {
    ("LSTM", True): ((3, 4, 5, 6), ()),
    ("GRU", True): ((2, 3, 4), ()),
    ("LSTM", False): ((9, 10, 11, 12), (4, 5, 6)),
    ("GRU", False): ((7, 8, 9), (3, None, 4)),
}


def _direction_trace(cfg, cell, w, caches, valid, init, reverse) -> DirectionTrace:
    """Gates from the cached steps; the state after each step by replaying its cached inputs through the cell."""
    names = GATES[cfg.mode]
    lstm = cfg.mode == "LSTM"
    T, B = valid.shape
    gate_slots, mask_slots = _CACHE_SLOTS[cfg.mode, cfg.is_plain]
    gates = {n: np.stack([c[s] for c in caches]) for n, s in zip(names, gate_slots)}  # each (T, B, H)
    h, c = np.empty((T, B, cfg.output_size)), (np.empty((T, B, cfg.hidden_size)) if lstm else None)
    for t, step in enumerate(caches):
        # the step's own inputs: x, the previous state and the variant masks, as the reference fed them to the cell
        state_in = (step[1], step[2]) if lstm else (step[1],)
        masks = tuple(None if k is None else step[k] for k in mask_slots)
        new_state, _ = cell.cell_forward(step[0], state_in, w, *masks)
        h[t] = new_state[0]
        if lstm:
            c[t] = new_state[1]
    invalid = ~valid
    for a in (*gates.values(), h, c):
        if a is not None:
            a[invalid] = np.nan
    return DirectionTrace(gates, h, c, init[0].copy(), init[1].copy() if lstm else None, reverse)
