"""Sequences and stacks: run a cell over time, over directions and over layers, and back (BPTT).

Everything here is sequence-first: x (T, B, I). A state is a tuple of arrays, (h, c) for the LSTM and
(h,) for the GRU, each stacked over layers × directions: h (L·D, B, P), c (L·D, B, H).

Variable lengths follow torch's packed sequences exactly: sequence b runs for lengths[b] steps; the
forward direction freezes its state after the last valid step, the reverse direction starts from the
initial state at step lengths[b] − 1; outputs past a sequence's end are zero. A per-step mask m_t
(1 while running, 0 after) expresses all of it:  s_t = m_t ⊙ cell(x_t, s_{t−1}) + (1 − m_t) ⊙ s_{t−1}.
"""
from __future__ import annotations

import numpy as np

from ..params import RNNConfig, suffix
from . import gru, lstm, variants

CELLS = {"LSTM": lstm, "GRU": gru}
WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "peephole", "ln_ih_weight",
                "ln_ih_bias", "ln_hh_weight", "ln_hh_bias", "ln_cell_weight", "ln_cell_bias")
NO_MASKS = lambda t: ()  # noqa: E731  the textbook cells take no per-step masks


def cell_of(config: RNNConfig):
    """The textbook cell (ref/lstm.py, ref/gru.py) for a plain config, else the variant cell."""
    return CELLS[config.mode] if config.is_plain else variants.Cell(config)


def layer_weights(params: dict, layer: int, direction: int) -> dict:
    """The weights of one layer and direction, under names without the ``_l0[_reverse]`` suffix."""
    s = suffix(layer, direction)
    return {name: params[name + s] for name in WEIGHT_NAMES if name + s in params}


def zero_state(config: RNNConfig, batch: int, dtype) -> tuple:
    """Initial state of zeros: (h (L·D, B, P), c (L·D, B, H)) for LSTM, (h,) for GRU."""
    k = config.num_layers * config.num_directions
    h = np.zeros((k, batch, config.output_size), dtype)
    if config.mode == "LSTM":
        return h, np.zeros((k, batch, config.hidden_size), dtype)
    return (h,)


def step_mask(lengths, steps: int, batch: int, dtype) -> np.ndarray:
    """(T, B, 1): 1 where step t < lengths[b], else 0; all ones without lengths."""
    if lengths is None:
        return np.ones((steps, batch, 1), dtype)
    return (np.arange(steps)[:, None] < np.asarray(lengths)[None, :]).astype(dtype)[:, :, None]


def run_direction(cell, x, state, w, mask, reverse, masks_at=NO_MASKS):
    """One direction of one layer. x (T, B, I) -> (y (T, B, P), final state, per-step caches).

    masks_at(t): the variant cell's masks at step t (``VariantMasks.at``), nothing for the textbook cells.
    """
    T, B = x.shape[:2]
    y = np.zeros((T, B, state[0].shape[-1]), x.dtype)
    caches = [None] * T
    for t in reversed(range(T)) if reverse else range(T):
        new_state, caches[t] = cell.cell_forward(x[t], state, w, *masks_at(t))
        m = mask[t]  # (B, 1)
        state = tuple(m * new + (1 - m) * old for new, old in zip(new_state, state))
        y[t] = m * new_state[0]
    return y, state, caches


def backprop_direction(cell, dy, d_state, caches, w, mask, reverse, input_size):
    """BPTT through one direction: dy (T, B, P), d_state = grads of the final state -> (dx, d_state0, grads)."""
    T, B = dy.shape[:2]
    dx = np.zeros((T, B, input_size), dy.dtype)
    grads = {name: np.zeros_like(value) for name, value in w.items()}
    for t in range(T) if reverse else reversed(range(T)):
        m = mask[t]
        d_new = [m * ds for ds in d_state]
        d_new[0] = d_new[0] + m * dy[t]
        dx[t], d_prev, step_grads = cell.cell_backward(tuple(d_new), caches[t], w)
        d_state = tuple((1 - m) * ds + dp for ds, dp in zip(d_state, d_prev))
        for name, g in step_grads.items():
            grads[name] += g
    return dx, d_state, grads


def forward(config: RNNConfig, params: dict, x, state0=None, lengths=None, dropout_masks=None,
            variant_masks=None):
    """Stacked, optionally bidirectional RNN over a whole sequence.

    x (T, B, I); state0 a tuple as in ``zero_state`` (None for zeros); lengths (B,) ints in [0, T] or
    None; dropout_masks: None, or L − 1 arrays (T, B, D·P) applied to each layer's output but the last
    (already scaled by 1/(1 − p)); variant_masks: ``variants.VariantMasks`` (zoneout, recurrent dropout)
    of a training step, None for evaluation (``variants.eval_masks``); unused by a plain config.
    Returns (output (T, B, D·P), final state tuple, cache for ``backward``).
    """
    cell = cell_of(config)
    T, B = x.shape[:2]
    if not config.is_plain and variant_masks is None:
        variant_masks = variants.eval_masks(config, T, B, x.dtype)
    D = config.num_directions
    if state0 is None:
        state0 = zero_state(config, B, x.dtype)
    mask = step_mask(lengths, T, B, x.dtype)
    finals = [[None] * len(state0[0]) for _ in state0]
    layers = []
    layer_input = x
    for layer in range(config.num_layers):
        outputs, directions = [], []
        for d in range(D):
            k = layer * D + d
            w = layer_weights(params, layer, d)
            masks_at = NO_MASKS if config.is_plain else (lambda t, k=k: variant_masks.at(k, t))
            y, final, caches = run_direction(cell, layer_input, tuple(s[k] for s in state0), w, mask, d == 1, masks_at)
            for j, s in enumerate(final):
                finals[j][k] = s
            outputs.append(y)
            directions.append((w, caches))
        layers.append((layer_input.shape[-1], directions))
        layer_input = np.concatenate(outputs, axis=2)  # (T, B, D·P)
        if dropout_masks is not None and layer < config.num_layers - 1:
            layer_input = layer_input * dropout_masks[layer]
    final_state = tuple(np.stack(f) for f in finals)
    cache = {"config": config, "mask": mask, "dropout_masks": dropout_masks, "variant_masks": variant_masks,
             "cell": cell, "layers": layers}
    return layer_input, final_state, cache


def backward(cache: dict, d_output, d_final_state=None):
    """BPTT through ``forward``. d_output (T, B, D·P); d_final_state a tuple like the final state, or None.

    Returns (dx (T, B, I), d_state0 tuple, grads keyed by torch parameter names).
    """
    config: RNNConfig = cache["config"]
    cell = cache["cell"]
    D = config.num_directions
    B = d_output.shape[1]
    if d_final_state is None:
        d_final_state = tuple(np.zeros_like(s) for s in zero_state(config, B, d_output.dtype))
    d_state0 = tuple(np.zeros_like(s) for s in d_final_state)
    grads = {}
    d_layer_output = d_output
    for layer in reversed(range(config.num_layers)):
        if cache["dropout_masks"] is not None and layer < config.num_layers - 1:
            d_layer_output = d_layer_output * cache["dropout_masks"][layer]
        input_size, directions = cache["layers"][layer]
        d_outputs = np.split(d_layer_output, D, axis=2)
        d_input = 0
        for d, (w, caches) in enumerate(directions):
            k = layer * D + d
            dx, d_s0, g = backprop_direction(
                cell, d_outputs[d], tuple(s[k] for s in d_final_state), caches, w, cache["mask"], d == 1, input_size
            )
            d_input = d_input + dx
            for j, s in enumerate(d_s0):
                d_state0[j][k] = s
            grads.update({name + suffix(layer, d): value for name, value in g.items()})
        d_layer_output = d_input
    return d_layer_output, d_state0, grads
