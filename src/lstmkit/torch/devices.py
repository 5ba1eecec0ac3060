"""The modules' forward where lstmkit's operators do not run: non-CPU tensors (CUDA, meta, ...), ONNX export and
forward-mode AD (the equations in torch ops carry the tangents).

lstmkit's kernels are CPU-only (native engine or NumPy), and their operators would have to copy a CUDA
tensor to the CPU and back, so the modules never call them on another device. There they compute with
torch's own kernels where torch has the configuration (``torch._VF.lstm/gru/lstm_cell/gru_cell``: cuDNN on
NVIDIA GPUs; padded input with lengths through its packed-sequence kernels), and with
``lstmkit.torch.equations`` (the same equations in torch ops) for what torch lacks: the variants, zero
lengths and lstmkit's own inter-layer dropout masks (drawn by the module so every path computes the same
function from the same masks).

The dynamo ONNX exporter also comes here: configurations an ONNX LSTM/GRU node expresses are written as
such nodes (``onnx_export.forward``), the others (proj_size, layer_norm, zoneout) as the equations with a
``torch.scan`` time loop, which becomes an ONNX Scan.
"""
from __future__ import annotations

import torch
import torch.autograd.forward_ad as _forward_ad
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..params import RNNConfig, param_shapes
from ..ref.variants import VariantMasks
from . import equations, onnx_export

__all__ = ["cell_forward", "dynamo_onnx_export", "elsewhere", "forward_ad", "sequence_forward"]

Tensor = torch.Tensor


def _onnx_flags():
    try:
        from torch.onnx._internal.exporter import _flags
    except ImportError:  # older torch: torch.onnx.is_in_onnx_export() alone
        return None
    return _flags


def dynamo_onnx_export() -> bool:
    """Whether torch.onnx.export(dynamo=True) is tracing (the TorchScript exporter traces with torch.jit and
    translates lstmkit's operators itself: ``onnx_export.register_symbolics``).

    The exporter's own flag is read as well as ``torch.onnx.is_in_onnx_export()``: when its first capture
    (non-strict torch.export) fails it retries in strict mode, where Dynamo folds is_in_onnx_export() to
    False, and the module would then hand it lstmkit's operators instead of raising the same error again."""
    flags = _onnx_flags()
    exporting = torch.onnx.is_in_onnx_export() or bool(flags and flags._is_onnx_exporting)
    return exporting and not torch.jit.is_tracing()


def forward_ad() -> bool:
    """Whether forward-mode AD is on (inside ``torch.autograd.forward_ad.dual_level``): lstmkit's operators have
    no forward derivative, torch ops do, so the modules compute in torch ops there (a dual input's tangent would
    otherwise be dropped)."""
    return _forward_ad._current_level >= 0


def elsewhere(x: Tensor) -> bool:
    """Whether a forward on x must not call lstmkit's CPU operators: x is not on the CPU, the dynamo ONNX
    exporter is tracing (it has no translation of lstmkit's operators), or forward-mode AD is on."""
    return x.device.type != "cpu" or dynamo_onnx_export() or forward_ad()


def _torch_has(config: RNNConfig, lengths, dropout_masks) -> bool:
    """torch._VF.lstm/gru compute this call: a plain config (projection included), full-length sequences, no
    inter-layer dropout masks (torch's kernels draw their own). The ONNX exporters refuse LSTM projections."""
    if (torch.onnx.is_in_onnx_export() and config.proj_size) or forward_ad():  # (torch's CPU LSTM has no forward
        return False  # derivative: mkldnn_rnn_layer)
    return config.is_plain and lengths is None and not dropout_masks


def sequence_forward(config: RNNConfig, x: Tensor, state0: tuple, weights: list, lengths, dropout_masks: list,
                     variant_masks: tuple) -> tuple[Tensor, tuple]:
    """A module's sequence forward on x (T, B, I) -> (output (T, B, D·P), (h_n[, c_n])).

    state0 (h0 (L·D, B, P)[, c0 (L·D, B, H)]); weights in ``param_shapes`` order; lengths (B,) or None;
    dropout_masks [] or L − 1 masks (T, B, D·P); variant_masks (recurrent, zoneout_c, zoneout_h) lists,
    all empty in evaluation.
    """
    if torch.onnx.is_in_onnx_export() or dynamo_onnx_export():
        exported = _export_forward(config, x, state0, weights, lengths, dropout_masks, variant_masks)
        if exported is not None:
            return exported
    if _torch_has(config, None, dropout_masks) and lengths is not None:
        packed = _packed_forward(config, x, state0, weights, lengths)
        if packed is not None:
            return packed
    if _torch_has(config, lengths, dropout_masks):
        train = torch.is_grad_enabled()  # cuDNN keeps what its backward needs only in training mode
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


def _packed_forward(config: RNNConfig, x: Tensor, state0: tuple, weights: list, lengths):
    """A plain config over padded x with lengths through torch's packed-sequence kernels (cuDNN's on GPUs), as
    torch.nn does for a PackedSequence; None where they cannot: a zero length (torch refuses to pack it), or
    the meta device (packing reads the lengths' values)."""
    n = lengths.cpu()  # the (B,) lengths only, as pack_padded_sequence needs them; the data stays where it is
    if x.device.type == "meta" or bool((n == 0).any()):
        return None
    packed = pack_padded_sequence(x, n, enforce_sorted=False)
    hx = tuple(s.index_select(1, packed.sorted_indices) for s in state0)
    args = (weights, config.bias, config.num_layers, 0.0, torch.is_grad_enabled(), config.bidirectional)
    if config.mode == "LSTM":
        data, *finals = torch._VF.lstm(packed.data, packed.batch_sizes, hx, *args)
    else:
        data, *finals = torch._VF.gru(packed.data, packed.batch_sizes, hx[0], *args)
    result = PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
    out, _ = pad_packed_sequence(result, total_length=x.shape[0])  # zeros past each sequence's end
    return out, tuple(s.index_select(1, packed.unsorted_indices) for s in finals)


def _export_forward(config, x, state0, weights, lengths, dropout_masks, variant_masks):
    """The forward while an ONNX exporter traces the module, or None to compute it as usual."""
    if dropout_masks or any(variant_masks):
        raise ValueError("torch.onnx.export of an lstmkit.torch module in training mode with dropout or "
                         "zoneout: the masks would be frozen into the graph; export the model in eval mode")
    # ONNX LSTM/GRU nodes (torch.onnx.ops, torch >= 2.8, writes them; older torch gets the Scan)
    if dynamo_onnx_export() and onnx_export.expressible(config) and hasattr(torch.onnx, "ops"):
        return onnx_export.forward(config, x, state0, weights, lengths)
    if dynamo_onnx_export():  # an ONNX Scan over time per direction, the cell written out
        return equations.forward(config, dict(zip(param_shapes(config), weights)), x, state0, lengths,
                                 loop="scan")
    if torch.jit.is_tracing() and not _torch_has(config, lengths, dropout_masks):  # TorchScript, not on CPU
        raise ValueError(f"torch.onnx.export(dynamo=False) of an lstmkit.torch module on {x.device} exports "
                         "plain full-length configurations only; move the model to the CPU first")
    return None


def cell_forward(config, x: Tensor, state: tuple, weights: list) -> tuple:
    """One plain cell step on x (B, I), state (h (B, H)[, c (B, H)]) -> (h'[, c']) with torch's cell kernels.

    config: anything with ``.mode`` ("LSTM" or "GRU"): an RNNConfig, or the cell module itself (a zero-size cell
    has no RNNConfig)."""
    w_ih, w_hh, *biases = weights
    b_ih, b_hh = biases if biases else (None, None)
    if config.mode == "LSTM":
        return tuple(torch._VF.lstm_cell(x, state, w_ih, w_hh, b_ih, b_hh))
    return (torch._VF.gru_cell(x, state[0], w_ih, w_hh, b_ih, b_hh),)
