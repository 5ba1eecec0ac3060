"""The native engine's LSTM/GRU variants (docs/variants.md), checked from Python.

``lstmkit.engine.forward`` / ``backward`` come here for a config that is not plain
(``not config.is_plain``); the plain cells keep their own kernels. Everything ``engine`` checks for a
sequence call is checked the same way (it is the same code, ``engine._check_sequence``), plus the
variant masks: ``lstmkit.ref.variants.VariantMasks`` of a training step, each field None or one array
per layer·direction k = layer·D + direction, of x's dtype:

    recurrent (B, P)   recurrent-dropout keep mask, already scaled by 1/(1 − p)
    zoneout_c (T, B, H) LSTM only; 1 keeps the old c
    zoneout_h (T, B, P) 1 keeps the old h

``variant_masks=None`` is evaluation, as in the reference: no recurrent dropout, zoneout by its
expectation (the constant z).
"""
from __future__ import annotations

import re
import threading
from collections.abc import Mapping

import numpy as np

from . import checks, engine, workspaces
from .params import RNNConfig

PLAIN_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
_SUFFIX = re.compile(r"_l\d+(_reverse)?$")


def options(config: RNNConfig) -> dict:
    """The options the native variant kernels take, from the config."""
    return {
        "peephole": config.peephole, "input_forget": config.input_forget, "clip": config.clip,
        "layer_norm": config.layer_norm, "linear_before_reset": config.linear_before_reset,
        "activations": config.activations, "zoneout": tuple(config.zoneout),
    }


def _split_weights(names: list[str], weights: list[np.ndarray]) -> tuple[list, list]:
    """Flat weights in param_shapes order -> (plain weights, variant parameters), each in that order."""
    plain, extra = [], []
    for name, w in zip(names, weights):
        (plain if _SUFFIX.sub("", name) in PLAIN_WEIGHTS else extra).append(w)
    return plain, extra


def _check_masks(config: RNNConfig, variant_masks, steps: int, batch: int, dtype) -> tuple[list, list, list]:
    """The masks as three lists of C-contiguous arrays (each empty, or one per layer·direction)."""
    if variant_masks is None:
        return [], [], []
    lists = {}
    for field in checks.VARIANT_MASKS:
        if not hasattr(variant_masks, field):
            raise TypeError(f"variant_masks: expected lstmkit.ref.variants.VariantMasks or None, "
                            f"got {type(variant_masks).__name__}")
        value = getattr(variant_masks, field)
        if value is not None and not isinstance(value, (list, tuple)):
            raise ValueError(f"variant_masks.{field}: expected None or a list of masks (one per layer·direction), "
                             f"got {type(value).__name__}")
        lists[field] = [engine._array(f"variant_masks.{field}[{k}]", m) for k, m in enumerate(value or ())]
    checks.check_variant_masks(config, steps, batch, dtype, lists, "variant_masks.")
    return tuple([engine._native(m, dtype) for m in lists[field]] for field in checks.VARIANT_MASKS)


def _check(config, params, x, state0, lengths, variant_masks):
    dtype, (T, B, I), shapes, names, args = engine._check_sequence(config, params, x, state0, lengths)
    plain, extra = _split_weights(names, args[7])
    opts = options(config)
    if variant_masks is not None:  # given masks replace the expectation; a field left None is no zoneout (as ref)
        opts["zoneout"] = (0.0, 0.0)
    args = (*args[:7], plain, *args[8:], opts, extra, *_check_masks(config, variant_masks, T, B, dtype))
    return dtype, (T, B, I), shapes, names, args


def workspace_size(config: RNNConfig, steps, batch, recurrent_masks: bool) -> int:
    """Values in the training workspace of ``train_forward`` (``steps`` and ``batch`` may be symbolic);
    recurrent_masks: whether the call has recurrent-dropout masks (a GRU then keeps h as well)."""
    row = engine._require_engine().variant_workspace_row(
        config.mode, config.num_layers, config.bidirectional, config.hidden_size, config.proj_size,
        options(config), bool(recurrent_masks))
    return steps * batch * row


def _has_recurrent_masks(variant_masks) -> bool:
    """Whether the call has recurrent-dropout masks (None or an empty list: it has not)."""
    return variant_masks is not None and len(getattr(variant_masks, "recurrent", None) or ()) > 0


def forward(config: RNNConfig, params: Mapping, x, state0=None, lengths=None, variant_masks=None):
    """Forward of a variant RNN, as ``lstmkit.ref.rnn.forward(config, params, x, state0, lengths, None,
    variant_masks)``; arguments and result as ``lstmkit.engine.forward``, variant_masks as above."""
    dtype, (T, B, _), shapes, _, args = _check(config, params, x, state0, lengths, variant_masks)
    out = np.empty((T, B, config.num_directions * config.output_size), dtype)
    final = [np.empty(s, dtype) for s in shapes]
    engine._require_engine().variant_forward(*args, out, final[0], final[1] if len(final) == 2 else None)
    return out, tuple(final)


def train_forward(config: RNNConfig, params: Mapping, x, state0=None, lengths=None, variant_masks=None):
    """``forward`` plus the workspace ``backward`` reads: (output, final state tuple, workspace), as
    ``lstmkit.engine.train_forward``; the workspace is 1-D of ``workspace_size`` values of x's dtype."""
    dtype, (T, B, _), shapes, _, args = _check(config, params, x, state0, lengths, variant_masks)
    out = np.empty((T, B, config.num_directions * config.output_size), dtype)
    final = [np.empty(s, dtype) for s in shapes]
    workspace = workspaces.empty(workspace_size(config, T, B, _has_recurrent_masks(variant_masks)), dtype)
    engine._require_engine().variant_train_forward(*args, out, final[0], final[1] if len(final) == 2 else None,
                                                   workspace)
    return out, tuple(final), workspace


def backward(config: RNNConfig, params: Mapping, x, d_output, d_final_state=None, state0=None, lengths=None,
             variant_masks=None, workspace=None):
    """Gradients of ``forward``; arguments and result as ``lstmkit.engine.backward`` (workspace: from
    ``train_forward`` with the same arguments, or None to run it here first), the grads dict including
    the variant parameters (peephole, ln_*)."""
    dtype, (T, B, I), shapes, names, args = _check(config, params, x, state0, lengths, variant_masks)
    d_out, d_final = engine._check_gradients(config, d_output, d_final_state, (T, B), shapes, dtype)
    size = workspace_size(config, T, B, _has_recurrent_masks(variant_masks))
    if workspace is None:
        _, _, workspace = train_forward(config, params, x, state0, lengths, variant_masks)
    workspace = engine._check_workspace(workspace, size, dtype)
    dx = np.empty((T, B, I), dtype)
    d_state0 = [np.empty(s, dtype) for s in shapes]
    plain, extra = args[7], args[12]
    grads = [np.empty(w.shape, dtype) for w in plain]
    extra_grads = [np.empty(w.shape, dtype) for w in extra]
    lstm = len(shapes) == 2
    engine._require_engine().variant_backward(
        *args, workspace, d_out, d_final[0], d_final[1] if lstm else None,
        dx, d_state0[0], d_state0[1] if lstm else None, grads, extra_grads,
    )
    plain_names, extra_names = _split_weights(names, names)
    by_name = {**dict(zip(plain_names, grads)), **dict(zip(extra_names, extra_grads))}
    return dx, tuple(d_state0), {name: by_name[name] for name in names}


class Stepper:
    """Streaming of a variant config on the native variant kernels: one T = 1 forward per step, the state
    kept here between calls. The interface of the engine's native streams (``lstmkit.stream.Stream`` drives
    it): ``step(x (B, I), out (B, P))``, ``reset()``, ``get_state(h, c)``, ``set_state(h, c)`` with h (L, B, P),
    c (L, B, H) or None. Evaluation semantics, as the layer in eval mode: no recurrent dropout, zoneout by
    its expectation. The weights are copied now; one call at a time (another thread gets RuntimeError)."""

    def __init__(self, config: RNNConfig, params: Mapping, batch: int):
        if config.bidirectional:
            raise ValueError("stream: a bidirectional model cannot be streamed")
        copies = {name: np.array(engine.to_numpy(value), copy=True) for name, value in params.items()}
        _, dtype = engine.native_weights(config, copies)
        x = np.zeros((1, batch, config.input_size), dtype)
        _, _, shapes, _, args = _check(config, copies, x, None, None, None)
        # args: the head (mode, L, bidirectional, H, proj_size, bias), x, weights, h0, c0, lengths, then options,
        # variant parameters and the (empty) masks; step swaps in x and the state
        self._head, self._weights, self._tail = args[:6], args[7], args[11:]
        self._lstm = config.mode == "LSTM"
        self._state = [np.zeros(s, dtype) for s in shapes]
        self._next = [np.empty(s, dtype) for s in shapes]
        self._out_shape = (1, batch, config.output_size)
        self._busy = threading.Lock()
        self.dtype = np.dtype(dtype)

    def _acquire(self) -> None:
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("stream: already in use by another thread")

    def step(self, x: np.ndarray, out: np.ndarray) -> None:
        """x (B, I) C-contiguous -> out (B, P), the last layer's new h; TypeError for a non-contiguous x."""
        self._acquire()
        try:
            h, c = self._state[0], self._state[1] if self._lstm else None
            nh, nc = self._next[0], self._next[1] if self._lstm else None
            engine._require_engine().variant_forward(*self._head, x[None], self._weights, h, c, None, *self._tail,
                                                     out.reshape(self._out_shape), nh, nc)
            self._state, self._next = self._next, self._state
        finally:
            self._busy.release()

    def reset(self) -> None:
        self._acquire()
        try:
            for s in self._state:
                s.fill(0)
        finally:
            self._busy.release()

    def get_state(self, h: np.ndarray, c) -> None:
        self._acquire()
        try:
            h[...] = self._state[0]
            if self._lstm:
                c[...] = self._state[1]
        finally:
            self._busy.release()

    def set_state(self, h: np.ndarray, c) -> None:
        self._acquire()
        try:
            self._state[0][...] = h
            if self._lstm:
                self._state[1][...] = c
        finally:
            self._busy.release()
