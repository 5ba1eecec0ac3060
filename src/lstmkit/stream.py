"""Streaming (online) inference: one time step per call, the recurrent state kept natively.

    s = layer.stream(batch=1)        # lstmkit.LSTM / GRU, or lstmkit.torch.LSTM / GRU
    for x_t in frames:               # x_t (B, I)
        y_t = s.step(x_t)            # (B, P): the last layer's h after this step
    s.reset()                        # back to zeros
    s.state = (h, c)                 # LSTM (h (L, B, P), c (L, B, H)); GRU (h (L, B, H),)

Stepping T times gives what the whole-sequence forward gives on the T steps (the same cell, within
float32/float64 rounding: a step sums the input's and the state's products apart, and small steps read the
weights in another order), in evaluation mode: with the variant options (docs/variants.md) no recurrent
dropout, zoneout by its expectation. A variant config steps through the native variant kernels, one T = 1 call per step
(``engine.VariantStepper``); the quantised formats compute the plain cells only and refuse the options.
Unidirectional models only: a bidirectional layer needs the whole sequence for its reverse direction.

The weights are copied (packed) when the stream is made, so later changes to the layer's parameters
do not reach it: make a new stream after training or loading. One ``step`` is one native call; the
checks in front of it are a few attribute comparisons, so at small sizes a step costs little more
than its arithmetic. Between calls the engine's threads already compute the next step's recurrent
product (it needs only the state), so a step's own work is the input's product and the gates; the
bits do not depend on the number of threads. A stream is not for sharing between threads: a concurrent call raises
RuntimeError (make one stream per thread; streams of the same model run in parallel).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import engine
from .params import RNNConfig

__all__ = ["Stream"]


MAX_BATCH = 1 << 24  # rows per step: far above any streaming use, far below what overflows a native int


def _cpu_array(x):
    """A CPU torch tensor's memory as a NumPy array, without a copy: a torch stream's step then takes the same
    fast path as a NumPy one (the generic conversion and checks cost more than the step at B = 1). Anything
    else — another device, a dtype NumPy lacks, a negated or conjugate view — comes back unchanged for the
    full checks (never to the native call, which would read a tensor's raw memory: a negated view's values
    without their sign)."""
    try:
        return x.detach().numpy() if x.is_cpu else x
    except (AttributeError, RuntimeError, TypeError):
        return x


class Stream:
    """Step-by-step inference of a unidirectional stacked LSTM/GRU (see the module docstring).

    config: the RNNConfig (bidirectional=False); params: its parameters under torch's names, all
    float32 or all float64; batch: B, the rows of every x_t. ``torch_io=True`` (the torch frontend):
    step also takes torch tensors and returns a torch tensor sharing the result's memory.
    ``quantized="int8" | "bfloat16"``: the weights quantised as ``lstmkit.quantize`` does (float32 state,
    x_t and output; made by ``QuantizedRNN.stream``).
    """

    __slots__ = ("config", "batch", "dtype", "_native", "_step", "_x_shape", "_out_shape", "_state_shapes", "_torch")

    def __init__(self, config: RNNConfig, params: Mapping, batch: int = 1, *, torch_io: bool = False,
                 quantized: str | None = None):
        if not isinstance(config, RNNConfig):
            raise TypeError(f"config: expected an lstmkit RNNConfig, got {type(config).__name__}")
        if config.bidirectional:
            raise ValueError(
                "stream: a bidirectional model cannot be streamed (its reverse direction needs the whole "
                "sequence); run it over whole sequences, or stream a unidirectional model"
            )
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)):
            raise TypeError(f"batch: expected an int, got {type(batch).__name__}")
        if not 1 <= batch <= MAX_BATCH:
            raise ValueError(f"batch: expected 1 to {MAX_BATCH:,} rows, got {batch}")
        eng = engine._require_engine()
        head = (config.mode, config.num_layers, config.input_size, config.hidden_size, config.proj_size, config.bias,
                int(batch))
        if quantized is not None:  # lstmkit.quantize's formats: float32 in and out (QuantizedRNN.stream)
            from .quantize import quant_format, quantizable_weights

            quantized = quant_format(quantized)
            weights, dtype = quantizable_weights(config, params, quantized), np.float32
            self._native = eng.QuantizedStream(*head, weights, quantized)
        elif not config.is_plain:  # the variant kernels, one T = 1 call per step (eval semantics)
            self._native = engine.VariantStepper(config, params, int(batch))
            dtype = self._native.dtype
        else:
            weights, dtype = engine.native_weights(config, params)
            cls = eng.Stream32 if dtype == np.float32 else eng.Stream64
            self._native = cls(*head, weights)  # packs copies of the weights
        self._step = self._native.step
        self.config = config
        self.batch = int(batch)
        self.dtype = np.dtype(dtype)
        L, H, P = config.num_layers, config.hidden_size, config.output_size
        self._x_shape = (self.batch, config.input_size)
        self._out_shape = (self.batch, P)
        lstm = config.mode == "LSTM"
        self._state_shapes = ((L, self.batch, P), (L, self.batch, H)) if lstm else ((L, self.batch, H),)
        self._torch = bool(torch_io)

    def step(self, x):
        """One time step of every layer: x (B, I) -> the last layer's new h (B, P), a fresh array
        (a torch tensor with ``torch_io``)."""
        out = np.empty(self._out_shape, self.dtype)
        if type(x) is not np.ndarray:
            x = _cpu_array(x)
            if type(x) is not np.ndarray:  # only NumPy arrays reach the native call as they came
                x = self._slow_input(x)
        try:  # the native call checks x itself (another dtype or layout: TypeError; shape: ValueError), which
            self._step(x, out)  # costs less than checking here first (~0.3 µs of a ~4 µs step at B=1)
        except (TypeError, ValueError):
            self._step(self._slow_input(x), out)  # converted and checked, or refused with the message naming x
        if self._torch:
            import torch

            return torch.from_numpy(out)
        return out

    def _slow_input(self, x) -> np.ndarray:
        """x checked and made C-contiguous of the stream's dtype (torch tensors, views, other layouts)."""
        arr = engine._array("x", x, self.dtype, "the stream's dtype")
        if arr.shape != self._x_shape:
            raise ValueError(
                f"x: expected shape {self._x_shape} (batch {self.batch} of the stream, input_size "
                f"{self.config.input_size}), got {arr.shape}"
            )
        return engine._native(arr, self.dtype)

    def reset(self) -> None:
        """Zero the state of every layer."""
        self._native.reset()

    @property
    def state(self) -> tuple:
        """A copy of the state: LSTM (h (L, B, P), c (L, B, H)), GRU (h (L, B, H),)."""
        parts = [np.empty(s, self.dtype) for s in self._state_shapes]
        self._native.get_state(parts[0], parts[1] if len(parts) == 2 else None)
        if self._torch:
            import torch

            return tuple(torch.from_numpy(p) for p in parts)
        return tuple(parts)

    @state.setter
    def state(self, value) -> None:
        """Set the state from a tuple shaped like ``state`` (a GRU's h alone is accepted too)."""
        if len(self._state_shapes) == 1 and not isinstance(value, (tuple, list)):
            value = (value,)
        parts = engine._check_state("state", value, self._state_shapes, self.dtype, "the stream's dtype")
        self._native.set_state(parts[0], parts[1] if len(parts) == 2 else None)

    def __repr__(self) -> str:
        c = self.config
        return (f"Stream({c.mode}, input_size={c.input_size}, hidden_size={c.hidden_size}, num_layers={c.num_layers}, "
                f"proj_size={c.proj_size}, batch={self.batch}, dtype={self.dtype.name})")
