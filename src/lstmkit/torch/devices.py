"""The modules' forward where lstmkit's operators do not run: non-CPU tensors (CUDA, meta, ...) and ONNX export.

lstmkit's kernels are CPU-only (native engine or NumPy), and their operators would have to copy a CUDA
tensor to the CPU and back, so the modules never call them on another device. There they compute with
torch's own kernels where torch has the configuration (``torch._VF.lstm/gru/lstm_cell/gru_cell``: cuDNN on
NVIDIA GPUs), and with ``lstmkit.torch.equations`` (the same equations in torch ops) for what torch lacks:
the variants, lengths (padded input with packed-sequence semantics) and lstmkit's own inter-layer dropout
masks (drawn by the module so every path computes the same function from the same masks).

The same split serves ``torch.onnx.export``: torch's exporters translate ``aten::lstm``/``aten::gru`` into
ONNX LSTM/GRU nodes, and the equations into standard ONNX ops.
"""
from __future__ import annotations

import torch

from ..params import RNNConfig, param_shapes
from ..ref.variants import VariantMasks
from . import equations

__all__ = ["elsewhere", "sequence_forward", "cell_forward"]

Tensor = torch.Tensor


def elsewhere(x: Tensor) -> bool:
    """Whether a forward on x must not call lstmkit's CPU operators: x is not on the CPU, or an ONNX exporter
    is tracing (it knows torch's RNN ops, not lstmkit's)."""
    return x.device.type != "cpu" or torch.onnx.is_in_onnx_export()


def _torch_has(config: RNNConfig, lengths, dropout_masks) -> bool:
    """torch._VF.lstm/gru compute this call: a plain config (projection included), full-length sequences, no
    inter-layer dropout masks (torch's kernels draw their own). The ONNX exporters refuse LSTM projections."""
    if torch.onnx.is_in_onnx_export() and config.proj_size:
        return False
    return config.is_plain and lengths is None and not dropout_masks


def sequence_forward(config: RNNConfig, x: Tensor, state0: tuple, weights: list, lengths, dropout_masks: list,
                     variant_masks: tuple) -> tuple[Tensor, tuple]:
    """A module's sequence forward on x (T, B, I) -> (output (T, B, D·P), (h_n[, c_n])).

    state0 (h0 (L·D, B, P)[, c0 (L·D, B, H)]); weights in ``param_shapes`` order; lengths (B,) or None;
    dropout_masks [] or L − 1 masks (T, B, D·P); variant_masks (recurrent, zoneout_c, zoneout_h) lists,
    all empty in evaluation.
    """
    train = torch.is_grad_enabled()  # cuDNN keeps what its backward needs only in training mode
    if _torch_has(config, lengths, dropout_masks):
        args = (weights, config.bias, config.num_layers, 0.0, train, config.bidirectional, False)
        if config.mode == "LSTM":
            out, h, c = torch._VF.lstm(x, state0, *args)
            return out, (h, c)
        out, h = torch._VF.gru(x, state0[0], *args)
        return out, (h,)
    recurrent, zoneout_c, zoneout_h = variant_masks
    masks = VariantMasks(recurrent or None, zoneout_c or None, zoneout_h or None) if any(variant_masks) else None
    params = dict(zip(param_shapes(config), weights))
    return equations.forward(config, params, x, state0, lengths, dropout_masks or None, masks)


def cell_forward(config: RNNConfig, x: Tensor, state: tuple, weights: list) -> tuple:
    """One plain cell step on x (B, I), state (h (B, H)[, c (B, H)]) -> (h'[, c']) with torch's cell kernels."""
    w_ih, w_hh, *biases = weights
    b_ih, b_hh = biases if biases else (None, None)
    if config.mode == "LSTM":
        return tuple(torch._VF.lstm_cell(x, state, w_ih, w_hh, b_ih, b_hh))
    return (torch._VF.gru_cell(x, state[0], w_ih, w_hh, b_ih, b_hh),)
