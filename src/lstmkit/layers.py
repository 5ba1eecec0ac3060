"""NumPy layers with torch.nn's interface: lstmkit.LSTM, GRU, LSTMCell, GRUCell (and a Linear readout).

They need no torch. A layer owns its parameters (``layer.params``, torch's names) and remembers the
last forward call of each thread, so ``layer.backward(d_output)`` returns the gradients of that thread's
input, initial state and every parameter (two threads training one layer, or copies of it, never mix).
The computation, forward and backward, runs on the native engine when it is built (``backend="auto"``),
else on the reference; inter-layer dropout's masks are an input of the native calls, so training with
it runs natively too.

What a backward reads: the forward keeps its own copy of x and hx (a caller may refill its input buffer
before the backward), but not of the weights, since a copy of every weight per call costs as much as a
one-row step. ``backward`` reads the parameters as they are when it runs, so update them after the backward,
as an optimizer step does. lstmkit's own in-place writers (``load_state_dict``, assigning a parameter such as
``layer.weight_ih_l0 = w``, an ``lstmkit.optim`` step on ``layer.parameters()``) count a version of the
parameters, and a backward whose forward saw another version raises RuntimeError, as torch's autograd refuses
a tensor "modified by an inplace operation"; an edit through other code (``layer.params[k] *= 2``) is not seen.

Parameters are the arrays of ``layer.params`` (also ``layer.parameters()``: the dict itself, so iterating it
gives names, not arrays as torch's does), readable and assignable as attributes under torch's names
(``layer.weight_ih_l0``, ``cell.weight_ih``, ``linear.weight``). ``load_state_dict`` and assignment check the
values, then copy them into the arrays in place: an optimizer built earlier keeps updating the layer, and
the caller's arrays are never kept.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import weakref
from copy import deepcopy as _deepcopy
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import engine, ref
from .ref import variants
from .checks import check_dtype_matches, check_input, check_lengths, check_state, state_shapes
from .errors import ShapeError, StateFormError
from .params import (VARIANT_DEFAULTS, RNNConfig, check_dtype, check_flag, check_state_keys, check_state_value,
                     init_params, param_shapes, refuse_reshaping)

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
    """What a sequence layer's forward call keeps for its backward (sequence-first arrays, the layer's own)."""

    xs: np.ndarray  # (T, B, I), a copy of the caller's x
    state0: tuple | None  # copies of check_state's arrays, reshaped to (L·D, B, ·); None for zeros
    lengths: np.ndarray | None  # (B,)
    masks: list | None  # inter-layer dropout masks, L − 1 of (T, B, D·P)
    cache: object  # the engine's workspace (1-D), None (recompute natively) or the reference's cache dict
    unbatched: bool
    variant_masks: object  # ref.variants.VariantMasks of a training call, else None
    batch_first: bool  # the layout the forward took and returned (batch_first may be assigned in between)


class Parameters(dict):
    """A module's live parameter arrays by torch name (``layer.params``, ``layer.parameters()``), with a version.

    ``version`` counts the changes made by lstmkit's in-place writers (``load_state_dict``, parameter assignment,
    an ``lstmkit.optim`` step given this dict). A forward call records it, and its backward refuses to run on
    parameters changed since (see the module docstring).
    """

    version: int = 0

    def mark_changed(self) -> None:
        """Called by every in-place writer after it wrote: a pending backward would mix old and new values."""
        self.version += 1


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` returns, as torch's: the keys it did not find, and those it did not use."""

    missing_keys: list
    unexpected_keys: list


class _PerThread:
    """Each forward call's context, kept per calling thread until its backward.

    A layer used from two threads (forward/backward in turn in each) must give each thread the gradient of
    its own forward: one slot on the layer let the other thread's forward replace it in between. Contexts of
    threads that have ended are dropped once a few have gathered. An entry is keyed by the thread's ident and
    also holds a weak reference to its Thread object, since the OS gives a new thread the ident of an ended one.
    """

    _KEEP = 8

    def __init__(self):
        self._by_thread = {}
        self._prune_at = self._KEEP  # more contexts than this: drop the ended threads' (then wait for twice as many)

    def save(self, context, params: Parameters) -> None:
        """Keep ``context`` for this thread, with the parameters it ran on and their version."""
        by_thread = self._by_thread
        by_thread[threading.get_ident()] = (weakref.ref(threading.current_thread()), params, params.version, context)
        if len(by_thread) > self._prune_at:
            alive = {t.ident for t in threading.enumerate()}
            for ident in list(by_thread):  # a copy: another thread's save may add a key meanwhile
                if ident not in alive:
                    by_thread.pop(ident, None)
            self._prune_at = max(self._KEEP, 2 * len(by_thread))

    def get(self):
        """This thread's last (params, version, context), None before its first forward call."""
        entry = self._by_thread.get(threading.get_ident())
        if entry is None or entry[0]() is not threading.current_thread():  # none, or an ended thread's
            return None
        return entry[1:]

    def any_thread(self) -> bool:
        """Whether some thread (maybe an ended one) has called forward."""
        return bool(self._by_thread)

    def __deepcopy__(self, memo):
        # a deep-copied layer can run the backward of the original's forward (weak references copy as themselves)
        copied = _PerThread()
        copied._by_thread = _deepcopy(self._by_thread, memo)
        copied._prune_at = self._prune_at
        return copied

    def __reduce__(self):
        # pickled empty: weak references do not pickle, and another process has other threads
        return (_PerThread, ())


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
    """Parameters under torch's names (live arrays, readable and assignable as attributes), train/eval mode,
    state_dict in and out, and the per-thread forward contexts of the backward."""

    params: Parameters
    training: bool = True
    _noun = "layer"  # what the module is called in its errors

    def __setattr__(self, name, value):
        params = self.__dict__.get("params")
        if name == "params":
            # kept as a Parameters dict, so the writers' version count works for any dict given here
            object.__setattr__(self, name, value if isinstance(value, Parameters) else Parameters(value))
        elif params is not None and name in params:
            # torch-style ``layer.weight_ih_l0 = w``: an attribute would shadow the parameter the forward reads
            self._copy_in({name: check_state_value(name, value, self._shapes()[name], self.dtype)})
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # torch-style attribute access to the parameters: layer.weight_ih_l0, cell.weight_ih, linear.weight
        params = self.__dict__.get("params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def _last(self):
        """The calling thread's last forward context (None before one); see ``_PerThread``."""
        contexts = self.__dict__.get("_contexts")
        entry = None if contexts is None else contexts.get()
        return None if entry is None else entry[2]

    def _keep(self, context) -> None:
        self.__dict__.setdefault("_contexts", _PerThread()).save(context, self.params)

    def _context_for_backward(self):
        """The calling thread's last forward context; RuntimeError before one, or when lstmkit wrote the parameters
        since (the backward would mix the forward's values with new ones)."""
        contexts = self.__dict__.get("_contexts")
        entry = None if contexts is None else contexts.get()
        if entry is None:
            where = (" in this thread (each thread's backward follows its own forward)"
                     if contexts is not None and contexts.any_thread() else "")
            raise RuntimeError(f"backward: call the {self._noun} on an input first{where}")
        params, version, context = entry
        if params is not self.params or version != params.version:
            raise RuntimeError("backward: parameters changed since the forward call (an optimizer step, "
                               f"load_state_dict or a parameter assignment): call the {self._noun} again")
        return context

    def train(self, mode: bool = True):
        # torch refuses a non-bool mode: layer.train("False") would otherwise switch training on
        if not isinstance(mode, (bool, np.bool_)):
            raise ValueError(f"mode: training mode is expected to be boolean, got {mode!r} ({type(mode).__name__})")
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def parameters(self) -> Parameters:
        """The live parameter arrays: ``layer.params`` itself, a dict by torch name (iterating it gives the names,
        not arrays as torch's ``parameters()`` does; use ``.values()``). Optimizers update them in place."""
        return self.params

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters under torch's names."""
        return {name: value.copy() for name, value in self.params.items()}

    def load_state_dict(self, state: dict, strict: bool = True) -> IncompatibleKeys:
        """Copy in a state_dict with torch's names (numpy arrays, torch tensors of any float dtype, nested lists).

        Every value is checked first (shape, real numbers, finite once cast to the layer's dtype; errors name the
        key), then copied into the existing arrays in place: ``layer.params`` and its arrays stay the same objects,
        so an optimizer built before keeps working, and the caller's arrays are never kept.
        strict: True refuses missing and unexpected keys (ValueError naming them); False leaves the missing
        parameters as they are and ignores the unexpected keys, as torch's ``strict=False``.
        Returns (missing_keys, unexpected_keys), as torch's load_state_dict.
        """
        strict = check_flag("strict", strict)
        expected = self._shapes()
        if strict:
            check_state_keys(expected, state, self._owner())
        checked = {name: check_state_value(f"state_dict[{name!r}]", state[name], shape, self.dtype)
                   for name, shape in expected.items() if name in state}
        self._copy_in(checked)
        return IncompatibleKeys([k for k in expected if k not in state], [k for k in state if k not in expected])

    def num_parameters(self) -> int:
        return sum(p.size for p in self.params.values())

    def _copy_in(self, checked: dict) -> None:
        """Write checked values (fresh arrays of the layer's dtype and the expected shapes) into the live arrays."""
        params = self.params
        for name, value in checked.items():
            live = params.get(name)
            if (isinstance(live, np.ndarray) and live.shape == value.shape and live.dtype == value.dtype
                    and live.flags.writeable):
                live[...] = value
            else:  # an array put into layer.params directly (another shape or dtype, read-only): replaced
                params[name] = value
        params.mark_changed()

    def _check_params(self) -> None:
        """Check ``layer.params`` as the native engine does (its keys, each array's shape and dtype) before the
        reference computes with it: an array assigned into the dict directly skipped load_state_dict's checks,
        and the reference would broadcast a (1,) bias or return float64 from a float64 weight."""
        expected, params = self._shapes(), self.params
        check_state_keys(expected, params, self._owner(), "params")
        for name, shape in expected.items():
            value = params[name]
            got = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
            if got != shape:
                raise ShapeError(f"params[{name!r}]: expected shape {shape}, got {got}")
            check_dtype_matches(f"params[{name!r}]", value.dtype, self.dtype)

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's name and shape."""
        raise NotImplementedError

    def _owner(self) -> str:
        """The module as errors name it."""
        raise NotImplementedError


class _Recurrent(_Module):
    """What every LSTM/GRU layer and cell offers beyond parameters: conversion to torch."""

    def to_torch(self, impl: str = "nn"):
        """The same model as a torch module: ``impl="nn"`` for torch.nn, ``"lstmkit"`` for lstmkit.torch."""
        from .io.torch import to_torch

        return to_torch(self, impl)

    def _owner(self) -> str:
        c = self.config
        return f"{type(self).__name__}(input_size={c.input_size}, hidden_size={c.hidden_size}, ...)"


def _check_gradient(name: str, value, shape: tuple, dtype, like: str) -> np.ndarray:
    """A gradient given to backward as an array of ``dtype`` (None: its own), of exactly ``shape``: that of ``like``,
    what the forward returned. A reshape would accept a batch-major (B, L·D, H) d_hn for h_n (L·D, B, H) and
    scramble it."""
    arr = np.asarray(value, dtype)
    if arr.shape != shape:
        raise ShapeError(f"{name}: expected shape {shape} (that of {like} the forward returned), got {arr.shape}")
    return arr


def _own_copy(a) -> np.ndarray:
    """A C-ordered copy the layer keeps for the backward (the caller may reuse its buffer meanwhile)."""
    return np.array(np.asarray(a), order="C")


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
        super().__setattr__(name, value)

    def __getattr__(self, name):
        # torch-style attribute access: layer.hidden_size, layer.weight_ih_l0, ...
        config = self.__dict__.get("config")
        if config is not None and hasattr(config, name):
            return getattr(config, name)
        return super().__getattr__(name)

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        return param_shapes(self.config)

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
        xs = _own_copy(self._to_sequence_first(np.asarray(x), unbatched))  # (T, B, I)
        if state0 is not None:
            state0 = tuple(_own_copy(s).reshape(shape) for s, shape in zip(state0, state_shapes(cfg, B)))
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
            self._check_params()
            output, final, cache = ref.forward(cfg, self.params, xs, state0, lengths, masks, variant_masks)
        self._keep(ForwardContext(xs, state0, lengths, masks, cache, unbatched, variant_masks, cfg.batch_first))
        output = self._from_sequence_first(output, unbatched)
        final = tuple(s[:, 0] if unbatched else s for s in final)
        return (output, final) if cfg.mode == "LSTM" else (output, final[0])

    def backward(self, d_output, d_hn=None, d_cn=None) -> Gradients:
        """Gradients of a loss through this thread's last forward call (BPTT).

        d_output: the output's shape ((T, B, D·P), (B, T, D·P) with batch_first, (T, D·P) unbatched); d_hn, d_cn:
        h_n's and c_n's ((L·D, B, ·), or (L·D, ·) unbatched), None for zeros. Any other shape is refused.
        The parameters are read as they are now, not as the forward saw them: update them after the backward.
        RuntimeError if lstmkit wrote them since the forward (load_state_dict, an assignment, an lstmkit.optim
        step on ``layer.parameters()``); an edit through other code is not detected.
        """
        xs, state0, lengths, masks, cache, unbatched, variant_masks, batch_first = self._context_for_backward()
        cfg = self.config
        T, B = xs.shape[:2]
        F = cfg.num_directions * cfg.output_size
        out_shape = (T, F) if unbatched else (B, T, F) if batch_first else (T, B, F)
        d_out = _check_gradient("d_output", d_output, out_shape, self.dtype, "the output")
        d_out = self._to_sequence_first(d_out, unbatched, batch_first)
        finals = (("d_hn", d_hn, "h_n"), ("d_cn", d_cn, "c_n"))[:len(state_shapes(cfg, B))]
        d_final = tuple(
            np.zeros(shape, self.dtype) if d is None else _check_gradient(name, d, returned, self.dtype, like)
            .reshape(shape)  # unbatched: the B = 1 axis back
            for (name, d, like), shape, returned in zip(finals, state_shapes(cfg, B), state_shapes(cfg, B, unbatched))
        )
        if cache is None or isinstance(cache, np.ndarray):  # natively (workspace, or None: recomputed)
            dx, d_state0, grads = engine.backward(cfg, self.params, xs, d_out, d_final, state0, lengths,
                                                  variant_masks, workspace=cache, dropout_masks=masks)
        else:
            dx, d_state0, grads = ref.backward(cache, d_out, d_final)
        dx = self._from_sequence_first(dx, unbatched, batch_first)
        d_state0 = tuple(s[:, 0] if unbatched else s for s in d_state0)
        d_hx = d_state0 if cfg.mode == "LSTM" else d_state0[0]
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

    def _to_sequence_first(self, a, unbatched, batch_first=None):
        """(B, T, ·) with batch_first (default: the config's), (T, ·) unbatched -> (T, B, ·), as a view."""
        if unbatched:
            return a[:, None]
        batch_first = self.config.batch_first if batch_first is None else batch_first
        return a.transpose(1, 0, 2) if batch_first else a

    def _from_sequence_first(self, a, unbatched, batch_first=None):
        """(T, B, ·) -> the caller's layout, as ``_to_sequence_first`` reads it."""
        if unbatched:
            return a[:, 0]
        batch_first = self.config.batch_first if batch_first is None else batch_first
        return np.ascontiguousarray(a.transpose(1, 0, 2)) if batch_first else a

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
    _noun = "cell"
    _FIELDS = ("input_size", "hidden_size", "bias")  # torch's cell attributes, read from the config

    def __init__(self, input_size, hidden_size, bias=True, *, seed=None, dtype="float32", backend="auto"):
        self.config = RNNConfig(self.mode, input_size, hidden_size, bias=bias)
        self.dtype = check_dtype(dtype)
        self.backend = resolve_backend(backend)
        # a cell's parameters are a one-layer RNN's without the "_l0" suffix
        self.params = {name[:-3]: value for name, value in init_params(self.config, seed, self.dtype).items()}
        self.training = True
        self._contexts = _PerThread()

    def __setattr__(self, name, value):
        # the sizes and bias fix the parameters' shapes: a new value is refused by name (AttributeError, as the
        # sequence layers' and docs/torch_dropin.md say), not kept as an attribute the cell ignores
        config = self.__dict__.get("config")
        if config is not None and name in self._FIELDS:
            refuse_reshaping(name, getattr(config, name), value, type(self).__name__)
            return
        super().__setattr__(name, value)

    def __getattr__(self, name):
        # torch-style attribute access: cell.hidden_size, cell.bias, cell.weight_ih, ...
        config = self.__dict__.get("config")
        if config is not None and name in self._FIELDS:
            return getattr(config, name)
        return super().__getattr__(name)

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        # only the cell's own names: a layer's weight_ih_l0 is an unexpected key in its state_dict, as in torch
        return {name[:-3]: shape for name, shape in param_shapes(self.config).items()}

    def __call__(self, x, hx=None):
        """x (B, I) or (I,); hx: LSTM (h (B, H), c (B, H)), GRU h (B, H), (H,) each for an unbatched x; None for zeros.

        Returns LSTM (h', c'), GRU h', each (B, H) (or (H,) for unbatched x).
        """
        cfg = self.config
        if not hasattr(x, "ndim") or x.ndim not in (1, 2):
            got = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ValueError(f"input: expected (B, {cfg.input_size}) or ({cfg.input_size},), got {got}")
        unbatched = x.ndim == 1
        if x.shape[-1] != cfg.input_size:
            raise ValueError(f"input: expected {cfg.input_size} features, got shape {tuple(x.shape)}")
        check_dtype_matches("input", x.dtype, self.dtype)
        x2 = _own_copy(x)  # the cell's own copy, kept for the backward
        x2 = x2[None] if unbatched else x2  # (B, I)
        state = self._check_state(hx, x2.shape[0], unbatched)
        if self.backend == "native":
            native = engine.cell_forward(cfg.mode, x2, state, self.params, train=self.training)
            new_state, cache = native if self.training else (native, None)
        else:
            self._check_params()
            new_state, cache = ref.rnn.CELLS[cfg.mode].cell_forward(x2, state, self.params)
        self._keep((x2, state, cache, unbatched))
        new_state = tuple(s[0] if unbatched else s for s in new_state)
        return new_state if cfg.mode == "LSTM" else new_state[0]

    def _check_state(self, hx, batch: int, unbatched: bool) -> tuple:
        """hx checked against the cell's own shapes ((B, H) each, (H,) for an unbatched x), as (B, H) copies the
        cell keeps; zeros for None. Errors name hx (h) and hx (c) (a GRUCell's: hx)."""
        H, lstm, owner = self.config.hidden_size, self.config.mode == "LSTM", type(self).__name__
        if hx is None:
            return tuple(np.zeros((batch, H), self.dtype) for _ in range(2 if lstm else 1))
        if lstm and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            got = f"a {type(hx).__name__} of {len(hx)}" if isinstance(hx, (tuple, list)) else type(hx).__name__
            raise StateFormError(f"hx: expected a tuple (h, c) for an {owner}, got {got}")
        if not lstm and isinstance(hx, (tuple, list)):
            raise StateFormError(f"hx: expected one array h for a {owner}, got a {type(hx).__name__}")
        parts = zip(("hx (h)", "hx (c)"), hx) if lstm else (("hx", hx),)
        shape = (H,) if unbatched else (batch, H)
        layout = "(hidden_size,) for an unbatched input" if unbatched else "(batch, hidden_size)"
        state = []
        for name, value in parts:
            if not hasattr(value, "shape") or not hasattr(value, "dtype"):
                raise StateFormError(f"{name}: expected an array of shape {shape}, got {type(value).__name__}")
            if tuple(value.shape) != shape:
                raise ShapeError(f"{name}: expected shape {shape} {layout}, got {tuple(value.shape)}")
            check_dtype_matches(name, value.dtype, self.dtype)
            state.append(_own_copy(value).reshape(batch, H))
        return tuple(state)

    def backward(self, d_h, d_c=None) -> Gradients:
        """Gradients through this thread's last step: d_h of h''s shape, d_c of c''s (LSTM); None for zeros.

        The parameters are read as they are now (see RNNBase.backward: RuntimeError if lstmkit wrote them since).
        """
        x2, state, cache, unbatched = self._context_for_backward()
        mode = self.config.mode
        native = self.backend == "native"
        if not native:
            self._check_params()
        if cache is None:  # a step taken in eval mode: its training forward now
            cache = (engine.cell_forward(mode, x2, state, self.params, train=True)[1] if native
                     else ref.rnn.CELLS[mode].cell_forward(x2, state, self.params)[1])
        given = (("d_h", d_h, "h'"), ("d_c", d_c, "c'"))[:len(state)]
        d_state = tuple(
            np.zeros_like(s) if g is None
            else _check_gradient(name, g, s.shape[1:] if unbatched else s.shape, self.dtype, like).reshape(s.shape)
            for (name, g, like), s in zip(given, state))
        if native:
            dx, d_prev, grads = engine.cell_backward(mode, d_state, cache, self.params)
        else:
            dx, d_prev, grads = ref.rnn.CELLS[mode].cell_backward(d_state, cache, self.params)
        if unbatched:
            dx, d_prev = dx[0], tuple(s[0] for s in d_prev)
        return Gradients(dx, d_prev if self.config.mode == "LSTM" else d_prev[0], grads)


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
        self.in_features, self.out_features = in_features, out_features
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(in_features)
        params = {"weight": rng.uniform(-bound, bound, (out_features, in_features)).astype(self.dtype)}
        if bias:
            params["bias"] = rng.uniform(-bound, bound, (out_features,)).astype(self.dtype)
        self.params = params
        self._param_shapes = {name: value.shape for name, value in params.items()}
        self.training = True
        self._contexts = _PerThread()

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self._param_shapes)

    def _owner(self) -> str:
        return f"Linear(in_features={self.in_features}, out_features={self.out_features}, ...)"

    def __call__(self, x):
        """x (..., in) -> (..., out)."""
        x = _own_copy(x)  # kept for the backward: the caller may reuse its buffer meanwhile
        self._keep(x)
        y = x @ self.params["weight"].T
        return y + self.params["bias"] if "bias" in self.params else y

    def backward(self, d_y) -> Gradients:
        """Gradients through this thread's last call: d_y (..., out) -> input (..., in), weight, bias.

        The parameters are read as they are now (RuntimeError if lstmkit wrote them since the call)."""
        x = self._context_for_backward()
        d_y = _check_gradient("d_y", d_y, x.shape[:-1] + (self.params["weight"].shape[0],), None, "the output")
        x2 = x.reshape(-1, x.shape[-1])
        d2 = d_y.reshape(-1, d_y.shape[-1])
        grads = {"weight": d2.T @ x2}
        if "bias" in self.params:
            grads["bias"] = d2.sum(axis=0)
        return Gradients(d_y @ self.params["weight"], None, grads)
