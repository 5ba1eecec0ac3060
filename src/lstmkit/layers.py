"""NumPy layers with torch.nn's interface: lstmkit.LSTM, GRU, LSTMCell, GRUCell (and a Linear readout).

They need no torch. A layer owns its parameters (``layer.params``, torch's names) and remembers the
last forward call of each thread, so ``layer.backward(d_output)`` returns the gradients of that thread's
input, initial state and every parameter (two threads training one layer, or copies of it, never mix).
The computation, forward and backward, runs on the native engine when it is built (``backend="auto"``),
else on the reference; inter-layer dropout's masks are an input of the native calls, so training with
it runs natively too.
"""
from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import engine, ref
from .ref import variants
from .checks import check_dtype_matches, check_input, check_lengths, check_state, state_shapes
from .params import VARIANT_DEFAULTS, RNNConfig, check_dtype, check_state_dict, init_params, param_shapes

BACKENDS = ("auto", "reference", "native")
_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(RNNConfig))


@dataclass
class Gradients:
    """What ``backward`` returns: gradients shaped like what the forward call took.

    input: like x; hx: like hx (LSTM (dh0, dc0), GRU dh0); params: by torch parameter name.
    """

    input: np.ndarray
    hx: object
    params: dict = field(default_factory=dict)


class ForwardContext(NamedTuple):
    """What a sequence layer's forward call keeps for its backward (sequence-first arrays)."""

    xs: np.ndarray  # (T, B, I)
    state0: tuple | None  # as check_state returned it, reshaped to (L·D, B, ·); None for zeros
    lengths: np.ndarray | None  # (B,)
    masks: list | None  # inter-layer dropout masks, L − 1 of (T, B, D·P)
    cache: object  # the engine's workspace (1-D), None (recompute natively) or the reference's cache dict
    unbatched: bool
    variant_masks: object  # ref.variants.VariantMasks of a training call, else None


class _PerThread:
    """Each forward call's context, kept per calling thread until its backward.

    A layer used from two threads (forward/backward in turn in each) must give each thread the gradient of
    its own forward: one slot on the layer let the other thread's forward replace it in between. Contexts of
    threads that have ended are dropped once a few have gathered.
    """

    _KEEP = 8

    def __init__(self):
        self._by_thread = {}
        self._prune_at = self._KEEP  # more contexts than this: drop the ended threads' (then wait for twice as many)

    def save(self, context) -> None:
        by_thread = self._by_thread
        by_thread[threading.get_ident()] = context
        if len(by_thread) > self._prune_at:
            alive = {t.ident for t in threading.enumerate()}
            for ident in list(by_thread):  # a copy: another thread's save may add a key meanwhile
                if ident not in alive:
                    by_thread.pop(ident, None)
            self._prune_at = max(self._KEEP, 2 * len(by_thread))

    def get(self):
        """This thread's last context, None before its first forward call."""
        return self._by_thread.get(threading.get_ident())


def resolve_backend(backend: str) -> str:
    """'auto' -> 'native' when the engine is built, else 'reference'."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend == "native" and not engine.available():
        raise RuntimeError("backend: 'native' was asked for but lstmkit._engine is not built; use 'reference'")
    if backend == "auto":
        return "native" if engine.available() else "reference"
    return backend


class _Module:
    """Parameters under torch's names, train/eval mode, state_dict in and out."""

    params: dict
    training: bool = True

    @property
    def _last(self):
        """The calling thread's last forward context (None before one); see ``_PerThread``."""
        contexts = self.__dict__.get("_contexts")
        return None if contexts is None else contexts.get()

    def _keep(self, context) -> None:
        self.__dict__.setdefault("_contexts", _PerThread()).save(context)

    def train(self, mode: bool = True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def parameters(self) -> dict[str, np.ndarray]:
        """The live parameter arrays, for optimizers (updated in place)."""
        return self.params

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters under torch's names."""
        return {name: value.copy() for name, value in self.params.items()}

    def num_parameters(self) -> int:
        return sum(p.size for p in self.params.values())


class _Recurrent(_Module):
    """What every LSTM/GRU layer and cell offers beyond parameters: conversion to torch."""

    def to_torch(self, impl: str = "nn"):
        """The same model as a torch module: ``impl="nn"`` for torch.nn, ``"lstmkit"`` for lstmkit.torch."""
        from .io.torch import to_torch

        return to_torch(self, impl)


class RNNBase(_Recurrent):
    """A stacked, optionally bidirectional RNN over whole sequences (torch.nn.LSTM/GRU's interface)."""

    mode = ""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, *, seed=None, dtype="float32", backend="auto", **variant_options):
        """variant_options: the options of docs/variants.md (peephole=, input_forget=, clip=, activations=,
        layer_norm=, zoneout=, recurrent_dropout=, forget_bias=, linear_before_reset=), all off by default."""
        unknown = sorted(set(variant_options) - set(VARIANT_DEFAULTS))
        if unknown:
            raise TypeError(f"{type(self).__name__}: unexpected keyword arguments {unknown}; the variant options are "
                            f"{list(VARIANT_DEFAULTS)}")
        self.config = RNNConfig(self.mode, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                                bidirectional, proj_size, **variant_options)
        self.dtype = check_dtype(dtype)
        self.backend = resolve_backend(backend)
        self.rng = np.random.default_rng(seed)
        self.params = init_params(self.config, seed, self.dtype)
        self.training = True
        self._contexts = _PerThread()  # what each thread's last forward call needs for its backward

    def __setattr__(self, name, value):
        # the config's fields read as attributes (__getattr__): assigning one changes the config, where it may
        # (batch_first, dropout: RNNConfig.assigned), instead of shadowing it with an attribute the forward ignores
        config = self.__dict__.get("config")
        if config is not None and name in _CONFIG_FIELDS:
            self.__dict__["config"] = config.assigned(name, value, type(self).__name__)
            return
        object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # torch-style attribute access: layer.hidden_size, layer.weight_ih_l0, ...
        config = self.__dict__.get("config")
        if config is not None and hasattr(config, name):
            return getattr(config, name)
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def load_state_dict(self, state: dict) -> None:
        """Copy in a state_dict with torch's names (numpy arrays or torch tensors); checked first."""
        self.params = check_state_dict(self.config, state, self.dtype)

    def stream(self, batch=1):
        """Streaming inference, one time step per call (``lstmkit.stream.Stream``; weights copied now)."""
        from .stream import Stream

        return Stream(self.config, self.params, batch)

    def __call__(self, x, hx=None, lengths=None):
        """Run the sequence.

        x: (T, B, I), or (B, T, I) with batch_first, or unbatched (T, I).
        hx: LSTM (h0 (L·D, B, P), c0 (L·D, B, H)), GRU h0 (L·D, B, H); unbatched without the B axis.
        lengths: (B,) valid steps per sequence, any order, values in [0, T].
        Returns LSTM (output (T, B, D·P), (h_n, c_n)), GRU (output, h_n), in x's layout.
        """
        cfg = self.config
        T, B, unbatched = check_input(cfg, x, self.dtype)
        state0 = check_state(cfg, hx, B, unbatched, self.dtype)
        lengths = check_lengths(lengths, T, B)
        xs = self._to_sequence_first(np.asarray(x), unbatched)  # (T, B, I)
        if state0 is not None:
            state0 = tuple(np.asarray(s).reshape(shape) for s, shape in zip(state0, state_shapes(cfg, B)))
        masks = self._dropout_masks(T, B)
        variant_masks = self._variant_masks(T, B)
        native = self._runs_natively()
        if native and (self.training or masks is not None):
            # keep the engine's workspace: backward then needs no second forward
            output, final, cache = engine.train_forward(cfg, self.params, xs, state0, lengths, variant_masks, masks)
        elif native:
            output, final = engine.forward(cfg, self.params, xs, state0, lengths, variant_masks)
            cache = None
        else:
            output, final, cache = ref.forward(cfg, self.params, xs, state0, lengths, masks, variant_masks)
        self._keep(ForwardContext(xs, state0, lengths, masks, cache, unbatched, variant_masks))
        output = self._from_sequence_first(output, unbatched)
        final = tuple(s[:, 0] if unbatched else s for s in final)
        return (output, final) if cfg.mode == "LSTM" else (output, final[0])

    def backward(self, d_output, d_hn=None, d_cn=None) -> Gradients:
        """Gradients of a loss through the last forward call (BPTT).

        d_output: like the output; d_hn, d_cn: like h_n, c_n (None for zeros).
        """
        if self._last is None:
            raise RuntimeError("backward: call the layer on an input first")
        xs, state0, lengths, masks, cache, unbatched, variant_masks = self._last
        B = xs.shape[1]
        d_out = self._to_sequence_first(np.asarray(d_output, dtype=self.dtype), unbatched)
        finals = (d_hn, d_cn) if self.config.mode == "LSTM" else (d_hn,)
        d_final = tuple(
            np.zeros(shape, self.dtype) if d is None else np.asarray(d, self.dtype).reshape(shape)
            for d, shape in zip(finals, state_shapes(self.config, B))
        )
        if cache is None or isinstance(cache, np.ndarray):  # natively (workspace, or None: recomputed)
            dx, d_state0, grads = engine.backward(self.config, self.params, xs, d_out, d_final, state0, lengths,
                                                  variant_masks, workspace=cache, dropout_masks=masks)
        else:
            dx, d_state0, grads = ref.backward(cache, d_out, d_final)
        dx = self._from_sequence_first(dx, unbatched)
        d_state0 = tuple(s[:, 0] if unbatched else s for s in d_state0)
        d_hx = d_state0 if self.config.mode == "LSTM" else d_state0[0]
        return Gradients(dx, d_hx, grads)

    def trace(self, x, lengths=None, hx=None):
        """Every gate, cell and hidden state at every step, from the reference: ``lstmkit.introspect.trace``."""
        from .introspect.trace import trace

        return trace(self, x, lengths=lengths, hx=hx)

    def _runs_natively(self) -> bool:
        """The one place that picks the backend of a forward call (its backward follows it)."""
        return self.backend == "native" and engine.supports(self.config)

    def _variant_masks(self, T, B):
        """Zoneout and recurrent-dropout masks drawn from the layer's rng in training; None (the expectation)
        in eval."""
        if self.config.is_plain or not self.training:
            return None
        return variants.sample_masks(self.config, T, B, self.rng, self.dtype)

    def _dropout_masks(self, T, B):
        """Inter-layer dropout masks (L − 1 of (T, B, D·P)), scaled by 1/(1 − p); None when inactive."""
        cfg = self.config
        p = cfg.dropout
        if not self.training or p == 0 or cfg.num_layers == 1:
            return None
        shape = (cfg.num_layers - 1, T, B, cfg.num_directions * cfg.output_size)
        keep = self.rng.random(shape) >= p
        return list(keep.astype(self.dtype) / (1.0 - p)) if p < 1 else list(np.zeros(shape, self.dtype))

    def _to_sequence_first(self, a, unbatched):
        if unbatched:
            return a[:, None]
        return a.transpose(1, 0, 2) if self.config.batch_first else a

    def _from_sequence_first(self, a, unbatched):
        if unbatched:
            return a[:, 0]
        return np.ascontiguousarray(a.transpose(1, 0, 2)) if self.config.batch_first else a

    def __repr__(self):
        c = self.config
        extra = "".join(
            f", {k}={getattr(c, k)}" for k, default in
            (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0),
             ("bidirectional", False), ("proj_size", 0)) if getattr(c, k) != default
        ) + "".join(f", {k}={v!r}" for k, v in c.variant_options().items())
        return f"{self.mode}({c.input_size}, {c.hidden_size}{extra}, dtype={self.dtype.name}, backend={self.backend})"


class LSTM(RNNBase):
    """Long short-term memory over sequences; the equations are in ``lstmkit/ref/lstm.py``."""

    mode = "LSTM"


class GRU(RNNBase):
    """Gated recurrent unit over sequences; the equations are in ``lstmkit/ref/gru.py``."""

    mode = "GRU"


class _CellBase(_Recurrent):
    """One time step, torch.nn.LSTMCell/GRUCell's interface; parameters weight_ih, weight_hh, bias_ih, bias_hh."""

    mode = ""

    def __init__(self, input_size, hidden_size, bias=True, *, seed=None, dtype="float32", backend="auto"):
        self.config = RNNConfig(self.mode, input_size, hidden_size, bias=bias)
        self.dtype = check_dtype(dtype)
        self.backend = resolve_backend(backend)
        # a cell's parameters are a one-layer RNN's without the "_l0" suffix
        self.params = {name[:-3]: value for name, value in init_params(self.config, seed, self.dtype).items()}
        self.training = True
        self._contexts = _PerThread()

    @property
    def input_size(self):
        return self.config.input_size

    @property
    def hidden_size(self):
        return self.config.hidden_size

    def load_state_dict(self, state: dict) -> None:
        """Copy in a state_dict with torch's cell names (weight_ih, weight_hh, bias_ih, bias_hh); checked first."""
        expected = {name[:-3]: shape for name, shape in param_shapes(self.config).items()}
        renamed = {k + "_l0": v for k, v in state.items() if k in expected}
        renamed.update({k: v for k, v in state.items() if k not in expected})
        checked = check_state_dict(self.config, renamed, self.dtype)
        self.params = {name[:-3]: value for name, value in checked.items()}

    def __call__(self, x, hx=None):
        """x (B, I) or (I,); hx: LSTM (h (B, H), c (B, H)), GRU h (B, H), None for zeros.

        Returns LSTM (h', c'), GRU h', each (B, H) (or (H,) for unbatched x).
        """
        cfg = self.config
        if not hasattr(x, "ndim") or x.ndim not in (1, 2):
            got = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ValueError(f"input: expected (B, {cfg.input_size}) or ({cfg.input_size},), got {got}")
        unbatched = x.ndim == 1
        x2 = np.asarray(x)[None] if unbatched else np.asarray(x)
        if x2.shape[1] != cfg.input_size:
            raise ValueError(f"input: expected {cfg.input_size} features, got shape {tuple(x.shape)}")
        check_dtype_matches("input", x2.dtype, self.dtype)
        B = x2.shape[0]
        # a cell's state is a one-layer state without the layer axis
        state = check_state(cfg, _add_axis(hx, unbatched), B, False, self.dtype) if hx is not None else None
        if state is None:
            state = tuple(np.zeros(s[1:], self.dtype) for s in state_shapes(cfg, B))
        else:
            state = tuple(np.asarray(s).reshape(s.shape[-2:]) for s in state)
        if self.backend == "native":
            native = engine.cell_forward(cfg.mode, x2, state, self.params, train=self.training)
            new_state, cache = native if self.training else (native, None)
        else:
            new_state, cache = ref.rnn.CELLS[cfg.mode].cell_forward(x2, state, self.params)
        self._keep((x2, state, cache, unbatched))
        new_state = tuple(s[0] if unbatched else s for s in new_state)
        return new_state if cfg.mode == "LSTM" else new_state[0]

    def backward(self, d_h, d_c=None) -> Gradients:
        """Gradients through the last step: d_h like h', d_c like c' (LSTM; None for zeros)."""
        if self._last is None:
            raise RuntimeError("backward: call the cell on an input first")
        x2, state, cache, unbatched = self._last
        mode = self.config.mode
        native = self.backend == "native"
        if cache is None:  # a step taken in eval mode: its training forward now
            cache = (engine.cell_forward(mode, x2, state, self.params, train=True)[1] if native
                     else ref.rnn.CELLS[mode].cell_forward(x2, state, self.params)[1])
        d = (d_h, d_c) if mode == "LSTM" else (d_h,)
        d_state = tuple(np.zeros_like(s) if g is None else np.asarray(g, self.dtype).reshape(s.shape)
                        for g, s in zip(d, state))
        if native:
            dx, d_prev, grads = engine.cell_backward(mode, d_state, cache, self.params)
        else:
            dx, d_prev, grads = ref.rnn.CELLS[mode].cell_backward(d_state, cache, self.params)
        if unbatched:
            dx, d_prev = dx[0], tuple(s[0] for s in d_prev)
        return Gradients(dx, d_prev if self.config.mode == "LSTM" else d_prev[0], grads)


def _add_axis(hx, unbatched):
    """A cell's hx (B, H) seen as a one-layer RNN state (1, B, H), so check_state applies."""
    add = (lambda s: np.asarray(s)[None, None]) if unbatched else (lambda s: s[None] if hasattr(s, "shape") else s)
    return tuple(add(s) for s in hx) if isinstance(hx, (tuple, list)) else add(hx)


class LSTMCell(_CellBase):
    """One LSTM step (torch.nn.LSTMCell's interface)."""

    mode = "LSTM"


class GRUCell(_CellBase):
    """One GRU step (torch.nn.GRUCell's interface)."""

    mode = "GRU"


class Linear(_Module):
    """y = x W^T + b over the last axis, for readouts: weight (out, in), bias (out,), torch's init."""

    def __init__(self, in_features, out_features, bias=True, *, seed=None, dtype="float32"):
        self.dtype = check_dtype(dtype)
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(in_features)
        self.params = {"weight": rng.uniform(-bound, bound, (out_features, in_features)).astype(self.dtype)}
        if bias:
            self.params["bias"] = rng.uniform(-bound, bound, (out_features,)).astype(self.dtype)
        self.training = True
        self._contexts = _PerThread()

    def __call__(self, x):
        """x (..., in) -> (..., out)."""
        x = np.asarray(x)
        self._keep(x)
        y = x @ self.params["weight"].T
        return y + self.params["bias"] if "bias" in self.params else y

    def backward(self, d_y) -> Gradients:
        """Gradients through this thread's last call: d_y (..., out) -> input (..., in), weight, bias."""
        x = self._last
        if x is None:
            raise RuntimeError("backward: call the layer on an input first")
        x2 = x.reshape(-1, x.shape[-1])
        d2 = np.asarray(d_y).reshape(-1, d_y.shape[-1])
        grads = {"weight": d2.T @ x2}
        if "bias" in self.params:
            grads["bias"] = d2.sum(axis=0)
        return Gradients(np.asarray(d_y) @ self.params["weight"], None, grads)
