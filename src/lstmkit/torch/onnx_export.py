"""torch.onnx.export of lstmkit.torch modules: each layer becomes a standard ONNX LSTM/GRU node.

Both exporters get the same graph from one builder (``_layers``), written over a small set of graph
operations (``_Emit``):

* the dynamo exporter (``dynamo=True``, torch's default): the module's forward calls ``forward`` here,
  which reorders the weights with torch ops and writes the node with ``torch.onnx.ops.symbolic_multi_out``;
* the TorchScript exporter (``dynamo=False``): the module calls its operator (``lstmkit::rnn``, or
  ``lstmkit::rnn_step`` for a cell) as usual and the symbolic functions registered here translate it.

The node carries what ONNX's LSTM/GRU express: gates reordered (torch i,f,g,o -> ONNX i,o,f,c; r,z,n ->
z,r,h), biases, lengths as sequence_lens (ONNX's semantics are torch's packed-sequence ones), initial
states, peephole P (i,o,f), clip, input_forget, activations with α/β, linear_before_reset. What the ONNX
ops lack (proj_size, layer_norm, zoneout) cannot be a node: the dynamo exporter traces
``lstmkit.torch.equations`` with its time loop as one ``torch.scan`` per direction, which it writes as an
ONNX Scan whose body is the cell (any sequence length); the TorchScript exporter has no such loop and
refuses them by name (``lstmkit.io.onnx.to_onnx`` also exports them as a Scan).
"""
from __future__ import annotations

import torch

from ..io.gates import ORDERS
from ..io.onnx import OPSET, needs_scan, node_attributes
from ..params import RNNConfig, param_shapes, suffix

__all__ = ["OPSET", "expressible", "forward", "register_symbolics"]

# torch's gate rows -> ONNX's, as positions: LSTM (i, f, g, o) -> (i, o, f, c), GRU (r, z, n) -> (z, r, h);
# peephole (p_i, p_f, p_o) -> (P_i, P_o, P_f)
GATE_ORDER = {mode: tuple(ORDERS["torch"][mode].index(g) for g in ORDERS["onnx"][mode]) for mode in ("LSTM", "GRU")}
PEEPHOLE_ORDER = (0, 2, 1)


def expressible(config: RNNConfig) -> bool:
    """Whether ONNX's LSTM/GRU node computes every layer of ``config`` (eval mode)."""
    return not needs_scan(config)


class _Emit:
    """Graph operations of one exporter (split, cat, unsqueeze0, slice0, node, sequence) and what the builder
    composes of them."""

    def stack(self, parts):
        """Per-direction tensors -> one with a leading direction axis (D, ...)."""
        return self.cat([self.unsqueeze0(p) for p in parts], 0)

    def gates(self, w, n, order, size):
        """w's n blocks of size rows, in ``order``: torch's gate order -> ONNX's."""
        blocks = self.split(w, n, size)
        return self.cat([blocks[k] for k in order], 0)

    def join(self, parts):
        return self.cat(parts, 0) if len(parts) > 1 else parts[0]

    def initial_where_empty(self, seq_lens, initial, final):
        """final (D, B, H) with each sequence of length 0 given its initial state: ONNX's node (as run by
        onnxruntime) returns zeros there, lstmkit (and torch's packed sequences) the initial state."""
        raise NotImplementedError


def _layers(emit: _Emit, config: RNNConfig, weights: dict, x, h0, c0, seq_lens):
    """Every layer as one node. x (T, B, I); h0, c0 (L·D, B, H); seq_lens (B,) int32 or None; weights by
    torch name -> (output (T, B, D·H), h_n (L·D, B, H), c_n or None)."""
    c, D, G, H = config, config.num_directions, config.num_gates, config.hidden_size
    attrs = node_attributes(c)
    h_n, c_n = [], []
    for layer in range(c.num_layers):
        per = [{n: weights.get(n + suffix(layer, d)) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                                               "peephole")} for d in range(D)]
        order = GATE_ORDER[c.mode]
        W = emit.stack([emit.gates(w["weight_ih"], G, order, H) for w in per])  # (D, G·H, I)
        R = emit.stack([emit.gates(w["weight_hh"], G, order, H) for w in per])  # (D, G·H, H)
        B = emit.stack([emit.cat([emit.gates(w[b], G, order, H) for b in ("bias_ih", "bias_hh")], 0)
                        for w in per]) if c.bias else None  # (D, 2·G·H)
        P = emit.stack([emit.gates(w["peephole"], 3, PEEPHOLE_ORDER, H) for w in per]) if c.peephole else None
        states = [emit.slice0(s, layer * D, (layer + 1) * D) for s in ((h0, c0) if c.mode == "LSTM" else (h0,))]
        inputs = [x, W, R, B, seq_lens, *states] + ([P] if c.peephole else [])
        y, *finals = emit.node(c.mode, inputs, attrs, x, D, H)
        if seq_lens is not None:
            finals = [emit.initial_where_empty(seq_lens, s, f) for s, f in zip(states, finals)]
        x = emit.sequence(y)  # (T, D, B, H) -> (T, B, D·H)
        h_n.append(finals[0])
        c_n.extend(finals[1:])
    return x, emit.join(h_n), (emit.join(c_n) if c_n else None)


# ----------------------------------------------------------------------------------------------------- dynamo

class _TorchEmit(_Emit):
    """Graph operations as torch ops, the node as ``torch.onnx.ops.symbolic_multi_out`` (dynamo exporter)."""

    def split(self, w, n, size):
        return list(w.split(size, 0))

    def cat(self, parts, axis):
        return torch.cat(parts, axis)

    def unsqueeze0(self, t):
        return t.unsqueeze(0)

    def slice0(self, t, start, stop):
        return t[start:stop]

    def node(self, mode, inputs, attrs, x, D, H):
        T, B = x.shape[0], x.shape[1]
        shapes = [[T, D, B, H], [D, B, H]] + ([[D, B, H]] if mode == "LSTM" else [])
        return torch.onnx.ops.symbolic_multi_out(mode, inputs, attrs, dtypes=[x.dtype] * len(shapes), shapes=shapes,
                                                 version=OPSET)

    def sequence(self, y):
        return y.permute(0, 2, 1, 3).reshape(y.shape[0], y.shape[2], -1)

    def initial_where_empty(self, seq_lens, initial, final):
        return torch.where((seq_lens == 0)[None, :, None], initial, final)


def forward(config: RNNConfig, x, state0: tuple, weights: list, lengths) -> tuple:
    """The module's forward while the dynamo exporter traces it (an ``expressible`` config, eval mode):
    x (T, B, I), state0 (h0[, c0]), weights in ``param_shapes`` order, lengths (B,) or None ->
    (output (T, B, D·H), (h_n[, c_n])), each computed by an ONNX LSTM/GRU node in the exported graph."""
    named = dict(zip(param_shapes(config), weights))
    seq_lens = None if lengths is None else lengths.to(device=x.device, dtype=torch.int32)
    out, h_n, c_n = _layers(_TorchEmit(), config, named, x, state0[0], state0[-1], seq_lens)
    return out, ((h_n, c_n) if config.mode == "LSTM" else (h_n,))


# ------------------------------------------------------------------------------------------------ TorchScript

class _GraphEmit(_Emit):
    """Graph operations as ONNX nodes of a TorchScript exporter's graph context."""

    def __init__(self, g):
        self.g = g

    def const(self, values):
        return self.g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))

    def split(self, w, n, size):
        return self.g.op("Split", w, self.const([size] * n), axis_i=0, outputs=n)

    def cat(self, parts, axis):
        return self.g.op("Concat", *parts, axis_i=axis)

    def unsqueeze0(self, t):
        return self.g.op("Unsqueeze", t, self.const([0]))

    def slice0(self, t, start, stop):
        return self.g.op("Slice", t, self.const([start]), self.const([stop]), self.const([0]))

    def node(self, mode, inputs, attrs, x, D, H):
        absent = self.g.op("prim::Constant").setType(torch._C.OptionalType.ofTensor())
        inputs = [absent if v is None else v for v in inputs]
        suffixes = {int: "_i", float: "_f", str: "_s"}
        named = {k + (suffixes[type(v)] if not isinstance(v, list) else suffixes[type(v[0])]): v
                 for k, v in attrs.items()}
        return self.g.op(mode, *inputs, outputs=3 if mode == "LSTM" else 2, **named)

    def sequence(self, y):
        y = self.g.op("Transpose", y, perm_i=[0, 2, 1, 3])
        return self.g.op("Reshape", y, self.const([0, 0, -1]))

    def initial_where_empty(self, seq_lens, initial, final):
        zero = self.g.op("Constant", value_t=torch.tensor(0, dtype=torch.int32))
        empty = self.g.op("Unsqueeze", self.g.op("Equal", seq_lens, zero), self.const([0, 2]))  # (1, B, 1)
        return self.g.op("Where", empty, initial, final)


def _symbolic_helper():
    """The TorchScript exporter's helpers (moved under torch.onnx._internal in torch 2.9)."""
    try:
        from torch.onnx._internal.torchscript_exporter import symbolic_helper
    except ImportError:
        from torch.onnx import symbolic_helper
    return symbolic_helper


def _translate(g, config: RNNConfig, x, h0, c0, params, lengths, masks_empty: bool):
    sh = _symbolic_helper()
    where = "torch.onnx.export(dynamo=False) of an lstmkit.torch module"
    if not expressible(config):
        given = {"proj_size": config.proj_size, "layer_norm": config.layer_norm, "zoneout": config.zoneout}
        raise ValueError(f"{where}: proj_size, layer_norm and zoneout have no ONNX LSTM/GRU node, got {given}; "
                         "export with dynamo=True (a Scan), or with lstmkit.io.onnx.to_onnx")
    if not masks_empty:
        raise ValueError(f"{where} in training mode with dropout or zoneout: the masks would be frozen into the "
                         "graph; export the model in eval mode")
    weights = dict(zip(param_shapes(config), sh._unpack_list(params)))
    seq_lens = None if sh._is_none(lengths) else g.op("Cast", lengths, to_i=6)  # INT32
    emit = _GraphEmit(g)
    out, h_n, c_n = _layers(emit, config, weights, x, h0, c0, seq_lens)
    return (out, h_n, c_n) if config.mode == "LSTM" else (out, h_n)


def _empty_list(sh, value) -> bool:
    return sh._is_none(value) or not sh._unpack_list(value)


def register_symbolics() -> None:
    """Register the TorchScript exporter's translations of ``lstmkit::rnn`` and ``lstmkit::rnn_step``."""
    from .ops import parse_config

    def rnn(g, x, h0, c0, params, lengths, dropout_masks, m_rd, m_zc, m_zh, config):
        sh = _symbolic_helper()
        cfg = parse_config(sh._get_const(config, "s", "config"))
        # eval mode: no recurrent-dropout or zoneout masks (zoneout's expectation is not a node attribute)
        masks_empty = all(_empty_list(sh, m) for m in (dropout_masks, m_rd, m_zc, m_zh))
        outputs = _translate(g, cfg, x, h0, c0, params, lengths, masks_empty)
        return outputs if cfg.mode == "LSTM" else (*outputs, g.op("Constant", value_t=torch.zeros(0)))

    def rnn_step(g, x, h0, c0, params, config):
        sh = _symbolic_helper()
        cfg = parse_config(sh._get_const(config, "s", "config"))
        x = g.op("Unsqueeze", x, g.op("Constant", value_t=torch.tensor([0], dtype=torch.int64)))  # (1, B, I)
        _, *states = _translate(g, cfg, x, h0, c0, params, None, True)
        return tuple(states) if cfg.mode == "LSTM" else (states[0], g.op("Constant", value_t=torch.zeros(0)))

    for name, fn in (("lstmkit::rnn", rnn), ("lstmkit::rnn_step", rnn_step)):
        torch.onnx.register_custom_op_symbolic(name, fn, 14)
