"""Quantised inference on the native engine: ``lstmkit.quantize(model, dtype="int8" | "bfloat16")``.

    q = lstmkit.quantize(model, dtype="int8")   # lstmkit.LSTM/GRU, lstmkit.torch.LSTM/GRU, torch.nn.LSTM/GRU
    output, (h_n, c_n) = q(x)                   # the float model's call: hx, lengths, batch_first, unbatched
    s = q.stream(batch=1); y_t = s.step(x_t)    # streaming, as lstmkit.stream

One API for both formats: the result is an inference-only copy of the model (later changes to the model
do not reach it), with the float model's ``__call__`` shapes. Inputs and states are float32 (the model's
parameters, float32 or float64, are quantised from their values); outputs and states are float32 numpy
arrays. Every configuration of the float engine: layers, bidirectional, proj_size, batch_first, initial
state, per-sequence lengths (any order); the variant options that change the evaluation forward
(docs/variants.md) are refused by name (``RNNConfig.require_plain``).

Formats (docs/quantization.md has the measured error and speed):

* ``"int8"``: dynamic quantisation. Weights int8 per output channel (symmetric, scale max|w|/127).
  At every product the activation rows (x_t, h_t, and the projection input m_t) are quantised per row
  to 7-bit unsigned codes with a zero point over [min(row, 0), max(row, 0)]; products are summed exactly
  in int32, then dequantised to float32, where bias, gate nonlinearities and the state stay. 7 bits, not
  8, for the activations: AVX2's vpmaddubsw adds two u8·s8 products in int16, which 8 bits could
  saturate; with 7 bits it cannot, so the AVX2, VNNI and portable paths compute the same integers.
* ``"bfloat16"``: weights rounded to bfloat16 (nearest even), half of float32's memory; products
  accumulated in float32, float32 state and output. On AVX2 the kernel widens the weights to float32
  by a shift (the activations stay float32); with AVX512_BF16 (vdpbf16ps) the activation rows are
  rounded to bfloat16 too.

Instruction sets: ``lstmkit._engine.quant_isa()`` names the path, chosen at import from the float
engine's (``LSTMKIT_ISA`` lowers both): "scalar", "avx2", "avxvnni" (AVX-VNNI), "avx512" (AVX-512
with VNNI and BF16) or "amx" (Intel AMX tiles, tdpbusd and tdpbf16ps, for the products of the rows: the same
int8 integers, the activation rows rounded to bfloat16 as on avx512; bf16 training's products there too, its weight
gradients included). On the AVX2 path the int8 products have two inner loops that give
the same integers: "madd" (vpmaddubsw widened by vpmaddwd; the faster where a CPU runs both multiplies
on two pipes: Intel, AMD from Zen 3) and "pairs" (the widening by adds and shifts; AMD Zen 1 and 2, where
both multiplies share one pipe). ``lstmkit._engine.quant_int8_kernel()`` names the one running;
``LSTMKIT_INT8_KERNEL=madd|pairs``, read at import, picks one (to compare them).
"""
from __future__ import annotations

import numpy as np

from . import engine
from .checks import check_input, check_lengths, check_state, state_shapes
from .layers import RNNBase, _Recurrent
from .params import RNNConfig, param_shapes, to_numpy

__all__ = ["quantize", "quant_format", "quantizable_weights", "QuantizedRNN", "QUANT_DTYPES"]

QUANT_DTYPES = ("int8", "bfloat16")
_F32 = np.dtype(np.float32)
FLOAT32_IO = "a quantised model's inputs and states are float32"
# int8 products are summed in int32: |Σ q·w| ≤ K·127·127 must stay below 2^31.
MAX_INPUT_WIDTH = (2**31 - 1) // (127 * 127)


def quantize(model, dtype: str = "int8") -> "QuantizedRNN":
    """An inference-only quantised copy of ``model`` (see the module docstring).

    model: lstmkit.LSTM / lstmkit.GRU, or a torch module (torch.nn.LSTM/GRU, lstmkit.torch.LSTM/GRU, or a
    subclass), read through its state_dict. dtype: "int8" or "bfloat16" (or that numpy / torch dtype).
    """
    dtype = quant_format(dtype)
    name = type(model).__name__
    if not isinstance(model, _Recurrent) and hasattr(model, "state_dict"):
        from .io.torch import from_torch

        model = from_torch(model)  # by class: refuses what is not a torch recurrent module, naming it
    if not isinstance(model, RNNBase):
        cell = " (cells are not quantised: quantise a sequence model)" if isinstance(model, _Recurrent) else ""
        raise TypeError(f"model: expected lstmkit.LSTM/GRU or a torch LSTM/GRU module, got {name}{cell}")
    return QuantizedRNN(model.config, model.params, dtype)


def quant_format(dtype) -> str:
    """``dtype`` as the name of a quantised format, "int8" or "bfloat16": that string, or the numpy or torch
    dtype of that name; ValueError naming what came otherwise."""
    if isinstance(dtype, str):
        name = dtype
    elif isinstance(dtype, np.dtype) or (isinstance(dtype, type) and issubclass(dtype, np.generic)):
        name = np.dtype(dtype).name
    elif type(dtype).__module__ == "torch" and type(dtype).__name__ == "dtype":
        name = str(dtype).removeprefix("torch.")
    else:
        name = None
    if name not in QUANT_DTYPES:
        raise ValueError(f"dtype: expected one of {QUANT_DTYPES} (or that numpy / torch dtype), got {dtype!r}")
    return name


def quantizable_weights(config: RNNConfig, params, dtype: str) -> list[np.ndarray]:
    """The float32 native weights of ``config``'s model in format ``dtype``, checked as every quantised path
    needs them (``QuantizedRNN``, and ``Stream(quantized=...)`` made directly): plain cells only, int8's
    int32 sums in range, finite values."""
    if not isinstance(config, RNNConfig):
        raise TypeError(f"config: expected an lstmkit RNNConfig, got {type(config).__name__}")
    dtype = quant_format(dtype)
    config.require_plain(f"quantize(dtype={dtype!r})", inference=True,
                         hint="the quantised kernels compute the plain cells; run the float model instead")
    widest = max(config.input_size, config.num_directions * config.output_size, config.hidden_size)
    if dtype == "int8" and widest > MAX_INPUT_WIDTH:
        raise ValueError(f"config: int8 supports inputs up to {MAX_INPUT_WIDTH} wide (int32 sums), got {widest}")
    weights, _ = engine.native_weights(config, {k: np.asarray(to_numpy(v), np.float32) for k, v in params.items()},
                                       _F32)
    bad = [name for name, w in zip(param_shapes(config), weights) if not np.isfinite(w).all()]
    if bad:
        raise ValueError(f"params: expected finite values, got NaN or inf in {bad}")
    return weights


class QuantizedRNN:
    """A quantised stacked LSTM/GRU (made by ``quantize``). ``config``: its RNNConfig; ``dtype``:
    "int8" or "bfloat16"; ``weight_bytes``: the size of its packed weights."""

    def __init__(self, config: RNNConfig, params, dtype: str):
        dtype = quant_format(dtype)
        weights = quantizable_weights(config, params, dtype)
        self.config = config
        self.dtype = dtype
        self._native = engine._require_engine().QuantizedRNN(
            config.mode, config.num_layers, config.bidirectional, config.input_size, config.hidden_size,
            config.proj_size, config.bias, dtype, weights)  # quantises and packs copies
        self.weight_bytes = int(self._native.weight_bytes)
        self._params = {k: np.array(to_numpy(v), np.float32) for k, v in params.items()}  # for stream(): a copy

    def stream(self, batch: int = 1):
        """Streaming inference, one step per call (``lstmkit.stream.Stream``), with this model's format;
        stepping T times gives what a T-step call gives. Unidirectional models only."""
        from .stream import Stream

        return Stream(self.config, self._params, batch, quantized=self.dtype)

    def __call__(self, x, hx=None, lengths=None):
        """As ``lstmkit.LSTM/GRU.__call__`` in eval mode, float32 in and out.

        x: (T, B, I), (B, T, I) with batch_first, or unbatched (T, I); hx: LSTM (h0, c0), GRU h0;
        lengths: (B,) valid steps per sequence. Returns LSTM (output, (h_n, c_n)), GRU (output, h_n).
        """
        cfg = self.config
        T, B, unbatched = check_input(cfg, x, _F32, FLOAT32_IO)
        state0 = check_state(cfg, hx, B, unbatched, _F32, FLOAT32_IO)
        lens = check_lengths(lengths, T, B)
        xs = RNNBase._to_sequence_first(self, np.asarray(to_numpy(x)), unbatched)
        shapes = state_shapes(cfg, B)
        if state0 is None:
            state = [np.zeros(s, _F32) for s in shapes]
        else:
            state = [np.ascontiguousarray(np.asarray(to_numpy(s)).reshape(shape), _F32)
                     for s, shape in zip(state0, shapes)]
        xs = np.ascontiguousarray(xs, _F32)
        for name, a in (("input", xs), *zip(("h0", "c0"), state)):
            if not np.isfinite(a).all():
                raise ValueError(f"{name}: expected finite values, got NaN or inf")
        out = np.empty((T, B, cfg.num_directions * cfg.output_size), _F32)
        final = [np.empty(s, _F32) for s in shapes]
        lstm = cfg.mode == "LSTM"
        self._native.forward(xs, state[0], state[1] if lstm else None,
                             None if lens is None else np.ascontiguousarray(lens, np.int64),
                             out, final[0], final[1] if lstm else None)
        out = RNNBase._from_sequence_first(self, out, unbatched)
        final = tuple(s[:, 0] if unbatched else s for s in final)
        return (out, final) if lstm else (out, final[0])

    def __repr__(self) -> str:
        c = self.config
        return (f"QuantizedRNN({c.mode}, {c.input_size}, {c.hidden_size}, num_layers={c.num_layers}, "
                f"bidirectional={c.bidirectional}, proj_size={c.proj_size}, dtype={self.dtype!r})")
