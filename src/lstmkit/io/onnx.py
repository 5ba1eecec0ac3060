"""ONNX: export lstmkit layers as graphs ONNX Runtime runs, and import LSTM/GRU nodes from any exporter.

Export (``to_onnx`` / ``save``), built with ``onnx.helper``:

    inputs   input      (T, B, I), or (B, T, I) for batch_first (transposed in the graph: ORT rejects layout=1)
             lengths    (B,) int64, valid steps per sequence          only with lengths=True
             h0, c0     (L·D, B, P), (L·D, B, H)                      only with initial_state=True
    outputs  output     (T, B, D·P) (or (B, T, D·P)), h_n (L·D, B, P), c_n (L·D, B, H) (LSTM)

Each layer is one ONNX LSTM/GRU node (gates reordered i,f,g,o → i,o,f,g and r,z,n → z,r,n), carrying the
variant options ONNX has as attributes: peephole (input P, order i,o,f), input_forget, clip, activations with
their α/β, and the GRU's linear_before_reset. What the ONNX ops lack — proj_size, layer_norm and zoneout — is
exported as a Scan over time per direction whose body is the cell of docs/variants.md written out in
Gemm/LayerNormalization/activation ops, with torch-named weights (zoneout by its evaluation expectation).
Recurrent dropout is a training option: the exported graph is the evaluation forward, where it is off.

Streaming export (``streaming=True``): one time step, state in and out, for stateful serving:

    inputs   input (B, I), h0 (L, B, P), c0 (L, B, H)      (cells: h0 (B, H), c0 (B, H))
    outputs  output (B, P), h_n, c_n                       (feed h_n, c_n back as the next h0, c0)

Import (``from_onnx`` / ``load``) reads LSTM/GRU nodes as torch.onnx.export or tf2onnx write them: constant
W/R/B/P (initializers or Constant nodes; weights that are graph inputs, as in ONNX's own node tests, when
the caller passes their values: ``inputs={"W": ..., "R": ...}``), direction, layout, linear_before_reset,
clip, input_forget, activations with α/β (the same for both directions; an omitted α/β of ThresholdedRelu,
ScaledTanh or Affine is refused: onnxruntime reads it as 0.0, the ONNX operators as 1.0). The nodes must be one
stack, graph input -> node 1 -> ... -> node L -> graph output through layout ops alone (checked op by op: any
other graph is refused by name), their initial_h/initial_c/sequence_lens empty, zeros, or graph inputs (the
layer's hx / lengths at call time). Graphs without such nodes import through lstmkit's own metadata (proj_size
exports). A stack of ``direction="reverse"`` nodes imports as a ``ReverseRNN``: the layer run over each sequence
read backwards (lstmkit's layers have no reverse-only mode; mixing forward and reverse nodes is refused). What
is imported is in evaluation mode, as the graph computes.
"""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from .._optional import require
from ..params import RNNConfig, param_shapes, suffix
from ..ref.activations import DEFAULTS, TABLE, USES, normalise
from ..ref.variants import LN_EPS
from .files import atomic_write, check_regular, short
from .gates import reorder
from .onnx_graph import BATCH, STEP, graph_input_names, node_name, read_flow
from .model import build, check_declared, unpack

OPSET = 17
META_CONFIG, META_KIND = "lstmkit.config", "lstmkit.kind"


class _Graph:
    """Nodes, initializers and fresh names for one (sub)graph."""

    def __init__(self, onnx, prefix=""):
        self.onnx, self.h = onnx, onnx.helper
        self.nodes, self.initializers, self.prefix, self.count = [], [], prefix, 0

    def name(self, hint):
        self.count += 1
        return f"{self.prefix}{hint}_{self.count}"

    def const(self, value, hint="const", name=None):
        name = name or self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type, inputs, n_out=1, outputs=None, **attrs):
        outputs = outputs or [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.h.make_node(op_type, list(inputs), list(outputs), **attrs))
        return outputs[0] if n_out == 1 else outputs


# ----------------------------------------------------------------------------------------------------- export

def to_onnx(model, *, streaming: bool = False, lengths: bool = False, initial_state: bool = False,
            opset: int = OPSET):
    """An onnx.ModelProto computing ``model`` (an lstmkit layer or cell, or anything ``as_layer`` takes).

    streaming: the one-step model described in the module docstring (cells are always streaming).
    lengths / initial_state: add the ``lengths`` and ``h0``/``c0`` inputs to the sequence model.
    A float64 layer gives a DOUBLE graph, which ONNX allows but onnxruntime's LSTM/GRU kernels (and a few of its
    activations in a Scan body) do not run: export a float32 copy for onnxruntime.
    """
    onnx = require("onnx", "onnx")
    from .convert import as_layer

    layer = as_layer(model)
    config, params, cell = unpack(layer)
    # the ops written: Unsqueeze/Squeeze with axes as an input (opset 13), LayerNormalization (17)
    least = 17 if config.layer_norm else 13
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < least:
        need = "layer_norm's LayerNormalization" if config.layer_norm else "Unsqueeze/Squeeze with axes as an input"
        raise ValueError(f"opset: expected an int >= {least} ({need}), got {opset!r}")
    if streaming or cell:  # one step: no sequence lengths; the state is always an input
        for flag, value in (("lengths", lengths), ("initial_state", initial_state)):
            if value:
                raise ValueError(f"{flag}: a {'cell' if cell else 'streaming model'} takes one step with its state "
                                 f"as an input; {flag}=True is for the sequence model (streaming=False)")
    streaming = streaming or cell
    if streaming and config.bidirectional:
        raise ValueError("streaming: a bidirectional RNN needs the whole sequence; export it whole (streaming=False; "
                         "lstmkit convert: without --streaming)")
    elem = onnx.TensorProto.DOUBLE if layer.dtype == np.float64 else onnx.TensorProto.FLOAT
    g = _Graph(onnx)
    c = config
    L, D, H, P, I = c.num_layers, c.num_directions, c.hidden_size, c.output_size, c.input_size
    lstm = c.mode == "LSTM"
    info = onnx.helper.make_tensor_value_info
    if streaming:
        state_dims = (lambda n: ["batch", n]) if cell else (lambda n: [L, "batch", n])
        inputs = [info("input", elem, ["batch", I]), info("h0", elem, state_dims(P))]
        inputs += [info("c0", elem, state_dims(H))] if lstm else []
        outputs = [info("output", elem, ["batch", P]), info("h_n", elem, state_dims(P))]
        outputs += [info("c_n", elem, state_dims(H))] if lstm else []
        x = g.op("Unsqueeze", ["input", g.const(np.array([0]))])  # (1, B, I)
        h0 = g.op("Unsqueeze", ["h0", g.const(np.array([0]))]) if cell else "h0"
        c0 = (g.op("Unsqueeze", ["c0", g.const(np.array([0]))]) if cell else "c0") if lstm else None
        seq_lens = None
    else:
        seq = ["batch", "time"] if c.batch_first else ["time", "batch"]
        inputs = [info("input", elem, seq + [I])]
        outputs = [info("output", elem, seq + [D * P]), info("h_n", elem, [L * D, "batch", P])]
        outputs += [info("c_n", elem, [L * D, "batch", H])] if lstm else []
        x = g.op("Transpose", ["input"], perm=[1, 0, 2]) if c.batch_first else "input"
        seq_lens, h0, c0 = None, None, None
        if lengths:
            inputs.append(info("lengths", onnx.TensorProto.INT64, ["batch"]))
            seq_lens = "lengths"
        if initial_state:
            inputs.append(info("h0", elem, [L * D, "batch", P]))
            inputs += [info("c0", elem, [L * D, "batch", H])] if lstm else []
            h0, c0 = "h0", ("c0" if lstm else None)
    finals_h, finals_c = [], []
    for layer_index in range(L):
        states = [_slice(g, s, layer_index * D, (layer_index + 1) * D) if s else None for s in (h0, c0)]
        run = _layer_scan if needs_scan(c) else _layer_op
        x, h_n, c_n = run(g, c, params, layer_index, x, seq_lens, *states, elem)
        finals_h.append(h_n)
        finals_c.append(c_n)
    h_out = g.op("Concat", finals_h, axis=0) if L > 1 else g.op("Identity", finals_h)
    c_out = (g.op("Concat", finals_c, axis=0) if L > 1 else g.op("Identity", finals_c)) if lstm else None
    if streaming:
        g.op("Squeeze", [x, g.const(np.array([0]))], outputs=["output"])
        for state, name in ((h_out, "h_n"), (c_out, "c_n")):
            if state is not None:
                g.op("Squeeze", [state, g.const(np.array([0]))], outputs=[name]) if cell else \
                    g.op("Identity", [state], outputs=[name])
    else:
        g.op("Transpose", [x], outputs=["output"], perm=[1, 0, 2]) if c.batch_first else \
            g.op("Identity", [x], outputs=["output"])
        g.op("Identity", [h_out], outputs=["h_n"])
        if lstm:
            g.op("Identity", [c_out], outputs=["c_n"])
    kind = c.mode + ("Cell" if cell else "")
    graph = onnx.helper.make_graph(g.nodes, f"lstmkit_{kind}{'_streaming' if streaming else ''}", inputs, outputs,
                                   g.initializers)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                   producer_name="lstmkit")
    proto.ir_version = min(proto.ir_version, 9)  # readable by older runtimes too
    onnx.helper.set_model_props(proto, {META_CONFIG: json.dumps(c.to_dict()), META_KIND: kind,
                                        "lstmkit.streaming": str(streaming).lower()})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _slice(g, state, start, stop):
    """state[start:stop] along the layer·direction axis."""
    return g.op("Slice", [state, g.const(np.array([start])), g.const(np.array([stop])), g.const(np.array([0]))])


def _layer_op(g, c, params, layer, x, seq_lens, h0, c0, elem):
    """One layer as an ONNX LSTM/GRU node. x (T, B, in) -> (y (T, B, D·H), h_n (D, B, H), c_n (D, B, H))."""
    D, lstm = c.num_directions, c.mode == "LSTM"
    dtype = np.float64 if elem == g.onnx.TensorProto.DOUBLE else np.float32
    W, R, B = [], [], []
    for d in range(D):
        s = suffix(layer, d)
        W.append(reorder(params["weight_ih" + s], c.mode, "torch", "onnx"))
        R.append(reorder(params["weight_hh" + s], c.mode, "torch", "onnx"))
        if c.bias:
            B.append(np.concatenate([reorder(params["bias_ih" + s], c.mode, "torch", "onnx"),
                                     reorder(params["bias_hh" + s], c.mode, "torch", "onnx")]))
    inputs = [x, g.const(np.stack(W).astype(dtype), f"W_l{layer}"), g.const(np.stack(R).astype(dtype), f"R_l{layer}"),
              g.const(np.stack(B).astype(dtype), f"B_l{layer}") if c.bias else ""]
    lens32 = g.op("Cast", [seq_lens], to=g.onnx.TensorProto.INT32) if seq_lens else ""
    inputs += [lens32, h0 or ""]
    inputs += [c0 or ""] if lstm else []
    if c.peephole:
        P = []
        for d in range(D):
            p_i, p_f, p_o = np.split(params["peephole" + suffix(layer, d)], 3)
            P.append(np.concatenate([p_i, p_o, p_f]))  # ONNX's order
        inputs.append(g.const(np.stack(P).astype(dtype), f"P_l{layer}"))
    y, h_n, *rest = g.op(c.mode, inputs, n_out=3 if lstm else 2, **node_attributes(c))
    if seq_lens and h0:  # a sequence of length 0 keeps its initial state; the node (onnxruntime) gives it zeros
        empty = g.op("Unsqueeze", [g.op("Equal", [lens32, g.const(np.array(0, np.int32))]),
                                   g.const(np.array([0, 2]))])  # (1, B, 1)
        h_n = g.op("Where", [empty, h0, h_n])
        rest = [g.op("Where", [empty, c0, rest[0]])] if lstm else rest
    y = g.op("Transpose", [y], perm=[0, 2, 1, 3])  # (T, D, B, H) -> (T, B, D, H)
    y = g.op("Reshape", [y, g.const(np.array([0, 0, -1]))])  # (T, B, D·H)
    return y, h_n, (rest[0] if lstm else None)


def needs_scan(c) -> bool:
    """True when the ONNX LSTM/GRU op cannot express the layer: projection, layer norm, zoneout."""
    return bool(c.proj_size or c.layer_norm or any(c.zoneout))


def node_attributes(c) -> dict:
    """The LSTM/GRU node's attributes for one layer of config ``c``: hidden size, direction and the variant
    options ONNX has (the GRU's linear_before_reset always: torch's GRU is 1, ONNX's default 0). Shared by
    every exporter (this module's and lstmkit.torch.onnx_export's)."""
    attrs = {"hidden_size": c.hidden_size, "direction": "bidirectional" if c.bidirectional else "forward"}
    if c.mode == "GRU":
        attrs["linear_before_reset"] = int(c.linear_before_reset)
    if c.clip is not None:
        attrs["clip"] = float(c.clip)
    if c.input_forget:
        attrs["input_forget"] = 1
    if c.activations:
        specs = list(c.activations) * c.num_directions  # one list per direction, in (f, g[, h]) order
        attrs["activations"] = [name for name, _, _ in specs]
        # ONNX consumes α (β) only for the functions that take one, in order
        alpha = [a for name, a, _ in specs if USES.get(name, 0) >= 1]
        beta = [b for name, _, b in specs if USES.get(name, 0) >= 2]
        attrs.update({k: v for k, v in (("activation_alpha", alpha), ("activation_beta", beta)) if v})
    return attrs


def _layer_scan(g, c, params, layer, x, seq_lens, h0, c0, elem):
    """One layer the ONNX ops cannot express: per direction a Scan over time whose body is the cell of
    docs/variants.md (torch-named weights). x (T, B, in) -> (y (T, B, D·P), h_n (D, B, P), c_n (D, B, H))."""
    P, H, lstm = c.output_size, c.hidden_size, c.mode == "LSTM"
    mask = _step_mask(g, x, seq_lens)  # (T, B, 1) bool
    ys, hs, cs = [], [], []
    for d in range(c.num_directions):
        s = suffix(layer, d)
        names = {k: g.const(params[k + s], name=k + s) for k in LAYER_WEIGHTS if k + s in params}
        h_init = g.op("Squeeze", [_slice(g, h0, d, d + 1), g.const(np.array([0]))]) if h0 else _zeros(g, x, P, elem)
        states = [h_init]
        if lstm:
            states.append(g.op("Squeeze", [_slice(g, c0, d, d + 1), g.const(np.array([0]))]) if c0 else
                          _zeros(g, x, H, elem))
        body = _cell_body(g.onnx, c, names, elem, prefix=f"l{layer}d{d}_")
        reverse = [1, 1] if d == 1 else [0, 0]
        *finals, y = g.op("Scan", states + [x, mask], n_out=len(states) + 1, body=body, num_scan_inputs=2,
                          scan_input_directions=reverse, scan_output_directions=[reverse[0]])
        ys.append(y)
        hs.append(g.op("Unsqueeze", [finals[0], g.const(np.array([0]))]))
        cs.append(g.op("Unsqueeze", [finals[1], g.const(np.array([0]))]) if lstm else None)
    def join(parts, axis):
        return g.op("Concat", parts, axis=axis) if len(parts) > 1 else parts[0]

    return join(ys, 2), join(hs, 0), (join(cs, 0) if lstm else None)


def _step_mask(g, x, seq_lens):
    """(T, B, 1) bool: step t < lengths[b] (all true without lengths)."""
    shape = g.op("Shape", [x])
    if seq_lens is None:
        dims = g.op("Concat", [g.op("Slice", [shape, g.const(np.array([0])), g.const(np.array([2]))]),
                               g.const(np.array([1]))], axis=0)
        return g.op("ConstantOfShape", [dims], value=g.onnx.numpy_helper.from_array(np.array([True])))
    steps = g.op("Gather", [shape, g.const(np.array(0))], axis=0)
    t = g.op("Range", [g.const(np.array(0)), steps, g.const(np.array(1))])  # (T,)
    less = g.op("Less", [g.op("Unsqueeze", [t, g.const(np.array([1]))]),
                         g.op("Unsqueeze", [seq_lens, g.const(np.array([0]))])])  # (T, B)
    return g.op("Unsqueeze", [less, g.const(np.array([2]))])


def _zeros(g, x, size, elem):
    """(B, size) zeros of the model's dtype, B read from x (T, B, I)."""
    batch = g.op("Slice", [g.op("Shape", [x]), g.const(np.array([1])), g.const(np.array([2]))])
    dims = g.op("Concat", [batch, g.const(np.array([size]))], axis=0)
    zero = np.zeros(1, np.float64 if elem == g.onnx.TensorProto.DOUBLE else np.float32)
    return g.op("ConstantOfShape", [dims], value=g.onnx.numpy_helper.from_array(zero))


LAYER_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "peephole", "ln_ih_weight",
                 "ln_ih_bias", "ln_hh_weight", "ln_hh_bias", "ln_cell_weight", "ln_cell_bias")


class _CellOps(_Graph):
    """A Scan body's graph with the pieces of docs/variants.md as ops."""

    def __init__(self, onnx, c, w, elem, prefix):
        super().__init__(onnx, prefix)
        self.c, self.w, self.elem = c, w, elem
        self.dtype = np.float64 if elem == onnx.TensorProto.DOUBLE else np.float32

    def scalar(self, value):
        return self.const(np.array(value, self.dtype))

    def projection(self, v, weight, bias, ln):
        """LN(v Wᵀ; γ, β) + b, with LN and b only where the config has them."""
        out = self.op("Gemm", [v, self.w[weight]], transB=1)
        if self.c.layer_norm:
            out = self.op("LayerNormalization", [out, self.w[f"ln_{ln}_weight"], self.w[f"ln_{ln}_bias"]],
                          axis=-1, epsilon=LN_EPS)
        return self.op("Add", [out, self.w[bias]]) if bias in self.w else out

    def split(self, v, parts, size):
        sizes = self.const(np.array([size] * parts), "split")
        return self.op("Split", [v, sizes], n_out=parts, axis=-1)

    def activate(self, spec, z, clip=True):
        """σ(clip(z)) for spec = (name, α, β), as ONNX's LSTM/GRU define the functions."""
        if clip and self.c.clip is not None:
            z = self.op("Clip", [z, self.scalar(-self.c.clip), self.scalar(self.c.clip)])
        name, alpha, beta = spec
        if name == "ScaledTanh":
            return self.op("Mul", [self.scalar(alpha), self.op("Tanh", [self.op("Mul", [self.scalar(beta), z])])])
        if name == "Affine":
            return self.op("Add", [self.op("Mul", [self.scalar(alpha), z]), self.scalar(beta)])
        attrs = {"alpha": alpha, "beta": beta} if USES.get(name, 0) == 2 else {"alpha": alpha} if name in USES else {}
        return self.op(name, [z], **attrs)

    def zoneout(self, rate, old, new):
        """Evaluation zoneout: z ⊙ old + (1 − z) ⊙ new."""
        if not rate:
            return new
        return self.op("Add", [self.op("Mul", [self.scalar(rate), old]), self.op("Mul", [self.scalar(1 - rate), new])])

    def lstm(self, x, h, c):
        """(h', c') of the variant LSTM step."""
        cfg, H = self.c, self.c.hidden_size
        gate, cell, hidden = cfg.activations or tuple(normalise(n) for n in DEFAULTS["LSTM"])
        z = self.op("Add", [self.projection(x, "weight_ih", "bias_ih", "ih"),
                            self.projection(h, "weight_hh", "bias_hh", "hh")])
        z_i, z_f, z_g, z_o = self.split(z, 4, H)
        if cfg.peephole:
            p_i, p_f, p_o = self.split(self.w["peephole"], 3, H)
            z_i, z_f = self.op("Add", [z_i, self.op("Mul", [p_i, c])]), self.op("Add", [z_f, self.op("Mul", [p_f, c])])
        i, g = self.activate(gate, z_i), self.activate(cell, z_g)
        f = self.op("Sub", [self.scalar(1.0), i]) if cfg.input_forget else self.activate(gate, z_f)
        c_tilde = self.op("Add", [self.op("Mul", [f, c]), self.op("Mul", [i, g])])
        if cfg.peephole:
            z_o = self.op("Add", [z_o, self.op("Mul", [p_o, c_tilde])])
        o = self.activate(gate, z_o)
        normed = c_tilde
        if cfg.layer_norm:
            normed = self.op("LayerNormalization", [c_tilde, self.w["ln_cell_weight"], self.w["ln_cell_bias"]],
                             axis=-1, epsilon=LN_EPS)
        m = self.op("Mul", [o, self.activate(hidden, normed, clip=False)])
        h_tilde = self.op("Gemm", [m, self.w["weight_hr"]], transB=1) if "weight_hr" in self.w else m
        z_c, z_h = cfg.zoneout
        return self.zoneout(z_h, h, h_tilde), self.zoneout(z_c, c, c_tilde)

    def gru(self, x, h):
        """h' of the variant GRU step."""
        cfg, H = self.c, self.c.hidden_size
        gate, cell = cfg.activations or tuple(normalise(n) for n in DEFAULTS["GRU"])
        a_r, a_z, a_n = self.split(self.projection(x, "weight_ih", "bias_ih", "ih"), 3, H)
        if cfg.linear_before_reset:
            s_r, s_z, s_n = self.split(self.projection(h, "weight_hh", "bias_hh", "hh"), 3, H)
        else:  # the n rows see r ⊙ h: split the weights (rows r, z, n), not the product
            w_rows = self.op("Split", [self.w["weight_hh"], self.const(np.array([H] * 3), "split")], n_out=3, axis=0)
            b_rows = self.split(self.w["bias_hh"], 3, H) if "bias_hh" in self.w else None
            s_r, s_z = (self.op("Gemm", [h, w_rows[k]] + ([b_rows[k]] if b_rows else []), transB=1) for k in (0, 1))
        r = self.activate(gate, self.op("Add", [a_r, s_r]))
        z = self.activate(gate, self.op("Add", [a_z, s_z]))
        if cfg.linear_before_reset:
            n = self.activate(cell, self.op("Add", [a_n, self.op("Mul", [r, s_n])]))
        else:
            s_n = self.op("Gemm", [self.op("Mul", [r, h]), w_rows[2]] + ([b_rows[2]] if b_rows else []), transB=1)
            n = self.activate(cell, self.op("Add", [a_n, s_n]))
        h_tilde = self.op("Add", [self.op("Mul", [self.op("Sub", [self.scalar(1.0), z]), n]), self.op("Mul", [z, h])])
        return (self.zoneout(cfg.zoneout[1], h, h_tilde),)


def _cell_body(onnx, c, w, elem, prefix):
    """Scan body: (h (B, P)[, c (B, H)], x_t (B, I), m_t (B, 1) bool) -> (h'[, c'], y_t), the cell of
    docs/variants.md in evaluation mode; steps past a sequence's end keep the state and output zero."""
    b = _CellOps(onnx, c, w, elem, prefix)
    info = onnx.helper.make_tensor_value_info
    lstm = c.mode == "LSTM"
    states = [prefix + "h"] + ([prefix + "c"] if lstm else [])
    x, m = prefix + "x", prefix + "m"
    new = b.lstm(x, *states) if lstm else b.gru(x, *states)
    outs = [prefix + n for n in ("h_out", "c_out")[: len(states)]] + [prefix + "y"]
    for old, value, out in zip(states, new, outs):
        b.op("Where", [m, value, old], outputs=[out])
    b.op("Mul", [new[0], b.op("Cast", [m], to=elem)], outputs=[outs[-1]])
    return onnx.helper.make_graph(
        b.nodes, prefix + "cell",
        [info(n, elem, None) for n in states] + [info(x, elem, None), info(m, onnx.TensorProto.BOOL, None)],
        [info(n, elem, None) for n in outs], b.initializers)


def save(model, path, *, overwrite: bool = False, **options) -> Path:
    """Write ``to_onnx(model, **options)`` to ``path`` atomically (refuses an existing file unless overwrite)."""
    data = to_onnx(model, **options).SerializeToString()
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), overwrite)


def session(model):
    """An onnxruntime.InferenceSession (CPU) for a ModelProto, bytes or path."""
    ort = require("onnxruntime", "onnx")
    data = model.SerializeToString() if hasattr(model, "SerializeToString") else model
    return ort.InferenceSession(data if isinstance(data, bytes) else str(data), providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------------------------------- import

def load(path, *, batch_first: bool | None = None, inputs: dict | None = None):
    """Read an ONNX file into an lstmkit layer in evaluation mode (see ``from_onnx``)."""
    onnx = require("onnx", "onnx")
    check_regular(path, "ONNX file")  # a FIFO or /dev/zero would block or never end
    try:
        proto = onnx.load(str(path))  # external data, if any, is read here, from path's folder only
    except Exception as e:  # DecodeError and friends for truncated or foreign files
        raise ValueError(f"{path}: not a readable ONNX model ({type(e).__name__}: {short(e)})") from e
    try:
        return from_onnx(proto, batch_first=batch_first, inputs=inputs)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def from_onnx(model, *, batch_first: bool | None = None, inputs: dict | None = None):
    """An lstmkit layer (or cell, or ``ReverseRNN``) from an ONNX model: a ModelProto, bytes, or a path; in
    evaluation mode (``.eval()``: an ONNX graph is an inference forward, so dropout, zoneout and recurrent dropout
    kept in lstmkit's metadata are off until ``.train()``).

    What is read is one stack: the graph input -> LSTM/GRU node 1 -> ... -> node L -> the graph output, the data
    passing only through the layout ops exporters write (Identity, Cast to float, Transpose, Squeeze/Unsqueeze of
    the direction or time axis, Reshape merging the directions into features), their sizes chaining; any other op
    on that path, a node that does not read the one before it, and an output computed from anything but the last
    node's Y (or the nodes' Y_h/Y_c, the final states) are refused by name. Weights are constants, or graph inputs
    whose values ``inputs`` gives by name ({"W": (D, G·H, I) array, "R": ..., "B": ..., "P": ...}). A node's
    initial_h/initial_c and sequence_lens may be empty, zeros (initial states), or graph inputs: those are the
    layer's call arguments, ``layer(x, hx, lengths)`` (hx as lstmkit's (L·D, B, H), each node's rows
    k·D:(k+1)·D); a nonzero constant, or one computed in the graph (another node's Y_h), is refused.
    batch_first: override (default: the graph input's form, (B, T, I) read through a Transpose perm [1, 0, 2] as
    torch.onnx.export writes a batch_first model, or a layout=1 node; lstmkit's metadata for a one-step graph).
    """
    onnx = require("onnx", "onnx")
    if isinstance(model, (str, Path)):
        return load(model, batch_first=batch_first, inputs=inputs)
    if isinstance(model, bytes):
        try:
            proto = onnx.load_from_string(model)
        except Exception as e:  # noqa: BLE001 - DecodeError and friends
            raise ValueError(f"model: not a readable ONNX model ({type(e).__name__}: {short(e)})") from e
    else:
        proto = model
    graph = proto.graph
    _check_declared_sizes(onnx, graph, len(model) if isinstance(model, bytes) else proto.ByteSize())
    meta = {p.key: p.value for p in proto.metadata_props}
    consts = {**_constants(onnx, graph), **_given_inputs(graph, inputs)}
    nodes = [n for n in graph.node if n.op_type in ("LSTM", "GRU")]
    saved = _saved_config(meta)
    cell = meta.get(META_KIND, "").endswith("Cell")
    if not nodes:
        if saved is None:
            ops = sorted({n.op_type for n in graph.node})
            raise ValueError(f"no LSTM or GRU node in the graph (ops: {short(ops, 200)}) and no lstmkit metadata")
        check_declared(saved, consts)  # before listing the names of every declared layer
        missing = [k for k in param_shapes(saved) if k not in consts]
        if missing:
            raise ValueError(f"lstmkit metadata names weights {missing} that the graph does not hold")
        params = {k: consts[k] for k in param_shapes(saved)}
        return build(saved, params, cell, **({} if batch_first is None else {"batch_first": batch_first})).eval()
    layers = [_read_node(n, consts, set(graph_input_names(graph))) for n in nodes]
    form, lengths = read_flow(graph, consts, nodes, layers)
    config, params = _stack(layers)
    if saved is not None and _same_graph(saved, config):
        config = replace(saved, batch_first=False)  # exact α/β/clip and the training-only options
    if batch_first is None:
        batch_first = form == BATCH or (form == STEP and bool(saved and saved.batch_first))
    cell = cell and len(layers) == 1 and not layers[0]["reverse"] and lengths is None  # a cell takes no lengths
    layer = build(config, params, cell, batch_first=batch_first).eval()
    return ReverseRNN(layer) if layers[0]["reverse"] else layer


def _given_inputs(graph, inputs) -> dict[str, np.ndarray]:
    """The caller's values of graph inputs (weights the graph does not hold), checked against the graph's
    declared input shapes and element types; ValueError/TypeError naming the input."""
    if inputs is None:
        return {}
    if not isinstance(inputs, dict):
        raise TypeError(f"inputs: expected a dict of graph input name -> array, got {type(inputs).__name__}")
    declared = {i.name: i for i in graph.input}
    unknown = sorted(set(inputs) - set(graph_input_names(graph)))
    if unknown:
        raise ValueError(f"inputs: {unknown} are not inputs of the graph (its inputs: {graph_input_names(graph)})")
    given = {}
    for name, value in inputs.items():
        array = np.asarray(value)
        if array.dtype not in (np.float32, np.float64):
            raise TypeError(f"inputs[{name!r}]: expected a float32 or float64 array, got dtype {array.dtype}")
        dims = declared[name].type.tensor_type.shape.dim
        expected = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        fits = len(expected) == array.ndim and all(e in (None, a) for e, a in zip(expected, array.shape))
        if dims and not fits:
            shown = tuple("?" if e is None else e for e in expected)
            raise ValueError(f"inputs[{name!r}]: expected shape {shown} as the graph declares, got {array.shape}")
        given[name] = array
    return given


def _check_declared_sizes(onnx, graph, size: int) -> None:
    """Refuse external data and tensors that declare more elements than the model's ``size`` bytes hold.

    Checked on the protobuf fields before any tensor is decoded: a model given as bytes or a ModelProto has
    no folder, so external data would be read relative to the current directory; and the elements
    declared by ``dims`` bound what numpy allocates (packed 2-bit types hold 4 per byte).
    """
    tensors = list(graph.initializer) + [a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute
                                         if a.name == "value"]
    total = 0
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            raise ValueError(f"tensor {short(tensor.name, 80)!r}: external data; lstmkit reads it only when the "
                             "model is loaded from a path (lstmkit.io.read / from_onnx(path)), from that file's folder")
        if any(d < 0 for d in tensor.dims):
            raise ValueError(f"tensor {short(tensor.name, 80)!r}: negative dimension in {list(tensor.dims)[:8]}")
        total += math.prod(tensor.dims)
    if total > 4 * size + 4096:
        raise ValueError(f"the model's tensors declare {total:,} elements, more than its {size:,} bytes can hold")


def _saved_config(meta: dict) -> RNNConfig | None:
    """lstmkit's config from the model's metadata, or None; ValueError when it is there but malformed."""
    if META_CONFIG not in meta:
        return None
    try:
        fields = json.loads(meta[META_CONFIG])
        return RNNConfig(**fields)
    except RecursionError:
        raise ValueError(f"metadata {META_CONFIG!r}: JSON nested too deeply") from None
    except (TypeError, ValueError) as e:
        raise ValueError(f"metadata {META_CONFIG!r}: not a valid RNNConfig ({short(e, 200)})") from None


def _float32(value):
    """What an ONNX float attribute keeps of ``value`` (numbers inside tuples too)."""
    if isinstance(value, float):
        return float(np.float32(value))
    return tuple(_float32(v) for v in value) if isinstance(value, tuple) else value


def _same_graph(saved: RNNConfig, read: RNNConfig) -> bool:
    """Whether lstmkit's metadata describes the nodes read: equal up to float32 attributes, batch_first and
    the training-only options (dropout, recurrent_dropout, forget_bias) that an inference graph cannot show."""
    seen = replace(saved, clip=_float32(saved.clip), activations=_float32(saved.activations), batch_first=False,
                   dropout=0.0, recurrent_dropout=0.0, forget_bias=0.0)
    return seen == read


def _constants(onnx, graph) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs by name; ValueError naming a tensor onnx cannot decode."""
    tensors = [(t.name, t) for t in graph.initializer]
    tensors += [(n.output[0], a.t) for n in graph.node if n.op_type == "Constant" and n.output
                for a in n.attribute if a.name == "value"]
    consts = {}
    for name, tensor in tensors:
        try:
            consts[name] = onnx.numpy_helper.to_array(tensor)
        except Exception as e:  # noqa: BLE001 - a damaged tensor (unknown data_type, short raw_data, ...)
            raise ValueError(f"tensor {name!r}: unreadable ({type(e).__name__}: {e})") from e
    return consts


def _read_node(node, consts, graph_inputs=frozenset()) -> dict:
    """One ONNX LSTM/GRU node -> {mode, directions, reverse, hidden, input_size, layout, params per direction}."""
    from onnx import helper

    mode = node.op_type
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    where = node_name(node)
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(f"{where}: direction: expected 'forward', 'reverse' or 'bidirectional', got {direction!r}")
    D = 2 if direction == "bidirectional" else 1
    options = {"activations": _read_activations(attrs, mode, D, where)}
    if "clip" in attrs:
        options["clip"] = float(attrs["clip"])
    if mode == "LSTM":
        options["input_forget"] = bool(attrs.get("input_forget", 0))
    else:
        options["linear_before_reset"] = bool(attrs.get("linear_before_reset", 0))  # ONNX's default is 0
    inputs = list(node.input) + [""] * 8

    def const(i, name):
        if not inputs[i]:
            return None
        if inputs[i] not in consts and inputs[i] in graph_inputs:
            raise ValueError(f"{where}: {name} is the graph input {inputs[i]!r}; pass its value: "
                             f"from_onnx(..., inputs={{{inputs[i]!r}: array}})")
        if inputs[i] not in consts:
            raise ValueError(f"{where}: {name} ({inputs[i]!r}) is computed in the graph; only constant weights "
                             "(initializers, Constant nodes or graph inputs given in inputs=) can be read")
        return consts[inputs[i]]

    W, R, B, P = const(1, "W"), const(2, "R"), const(3, "B"), const(7, "P")
    if W is None or R is None:
        raise ValueError(f"{where}: W and R inputs are required")
    G = 4 if mode == "LSTM" else 3
    H = int(attrs.get("hidden_size", R.shape[-1]))
    if W.shape[:2] != (D, G * H) or R.shape != (D, G * H, H) or (B is not None and B.shape != (D, 2 * G * H)):
        raise ValueError(f"{where}: shapes W {W.shape}, R {R.shape}, B {None if B is None else B.shape} do not "
                         f"fit hidden_size={H}, {D} direction(s)")
    if P is not None and P.shape != (D, 3 * H):
        raise ValueError(f"{where}: peephole weights P of shape {P.shape}, expected {(D, 3 * H)}")
    if mode == "LSTM":
        options["peephole"] = P is not None and bool(np.any(P))
    dtype = np.float64 if W.dtype == np.float64 else np.float32
    per_direction = []
    for d in range(D):
        p = {"weight_ih": reorder(W[d], mode, "onnx", "torch"), "weight_hh": reorder(R[d], mode, "onnx", "torch")}
        if B is not None:
            p["bias_ih"] = reorder(B[d, :G * H], mode, "onnx", "torch")
            p["bias_hh"] = reorder(B[d, G * H:], mode, "onnx", "torch")
        if options.get("peephole"):
            p_i, p_o, p_f = np.split(P[d], 3)  # ONNX's order
            p["peephole"] = np.concatenate([p_i, p_f, p_o])
        per_direction.append({k: v.astype(dtype) for k, v in p.items()})
    return {"mode": mode, "directions": D, "reverse": direction == "reverse", "hidden": H,
            "input_size": int(W.shape[2]), "layout": int(attrs.get("layout", 0)), "params": per_direction,
            "where": where, "options": options}


def _read_activations(attrs, mode, D, where):
    """The node's activations as ((name, α, β), ...) of one direction, or None for the defaults.

    ONNX lists them per direction and hands out activation_alpha/beta in order to the functions that take
    them; lstmkit has one set for both directions, so they must agree."""
    names = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    if not names:
        return None
    n = len(DEFAULTS[mode])
    if len(names) != n * D:
        raise ValueError(f"{where}: expected {n * D} activations ({n} per direction), got {names}")
    alphas, betas = list(attrs.get("activation_alpha", [])), list(attrs.get("activation_beta", []))
    specs = [_activation_spec(name, alphas, betas, where) for name in names]
    if D == 2 and specs[:n] != specs[n:]:
        raise ValueError(f"{where}: the two directions use different activations {names}; lstmkit has one set")
    return None if tuple(specs[:n]) == tuple(normalise(name) for name in DEFAULTS[mode]) else tuple(specs[:n])


# onnxruntime keeps ONNX's default α/β only for these (rnn_helpers' NameToArgDefaultsMap) and reads an omitted
# α/β of any other function as 0.0, where the ONNX operators' defaults (lstmkit's) are 1.0: refused when omitted.
_ALPHA_BETA_DEFAULTS_AGREE = ("LeakyRelu", "HardSigmoid", "Elu")


def _activation_spec(name, alphas: list, betas: list, where: str) -> tuple:
    """(name, α, β) of one activation, taking its α from ``alphas`` and its β from ``betas`` (consumed in place).

    ONNX hands the two lists out separately, each in the order of the functions that take that parameter, so
    a function with a β left but no α gets its default α and that β (onnxruntime reads them the same way)."""
    canonical = normalise(name, f"{where}: activations")[0]
    uses = USES.get(canonical, 0)
    alpha = alphas.pop(0) if uses >= 1 and alphas else None
    beta = betas.pop(0) if uses >= 2 and betas else None
    missing = [p for p, value, n in (("activation_alpha", alpha, 1), ("activation_beta", beta, 2))
               if uses >= n and value is None]
    if missing and canonical not in _ALPHA_BETA_DEFAULTS_AGREE:
        raise ValueError(f"{where}: activations: {canonical} has no {' or '.join(missing)} value left; give it "
                         "explicitly (onnxruntime reads an omitted one as 0.0 where the ONNX operator's default is "
                         f"{_defaults_text(canonical)}: the file would compute two different things)")
    default_alpha, default_beta = TABLE[canonical][:2]
    given = (default_alpha if alpha is None else alpha, default_beta if beta is None else beta)[:uses]
    return normalise((canonical, *given), f"{where}: activations")


def _defaults_text(name: str) -> str:
    """'alpha=1.0, beta=0.0': the ONNX operator's defaults of the α/β that ``name`` takes."""
    return ", ".join(f"{p}={v}" for p, v in zip(("alpha", "beta"), TABLE[name][:USES[name]]))


def _stack(layers: list[dict]) -> tuple[RNNConfig, dict]:
    """Stack per-node layers into one config and torch-named params; ValueError when they do not chain."""
    first = layers[0]
    has_bias = any("bias_ih" in p for layer in layers for p in layer["params"])
    params = {}
    for k, layer in enumerate(layers):
        expected_in = first["input_size"] if k == 0 else first["directions"] * first["hidden"]
        same = (layer["mode"], layer["directions"], layer["hidden"], layer["options"]) == (
            first["mode"], first["directions"], first["hidden"], first["options"])
        if not same or layer["input_size"] != expected_in:
            raise ValueError(f"{layer['where']} does not stack on {first['where']}: lstmkit reads the LSTM/GRU "
                             "nodes of one graph as one stack with equal hidden sizes and directions")
        if layer["reverse"] != first["reverse"]:
            raise ValueError(f"{layer['where']} does not stack on {first['where']}: one runs direction='reverse' "
                             "and the other forward; lstmkit reads a stack of reverse nodes only as a whole "
                             "(a ReverseRNN)")
        for d, p in enumerate(layer["params"]):
            if has_bias and "bias_ih" not in p:  # a node without B is one with zero biases
                zeros = np.zeros(p["weight_ih"].shape[0], p["weight_ih"].dtype)
                p = {**p, "bias_ih": zeros, "bias_hh": zeros}
            params.update({name + suffix(k, d): value for name, value in p.items()})
    config = RNNConfig(first["mode"], first["input_size"], first["hidden"], len(layers), has_bias,
                       bidirectional=first["directions"] == 2, **first["options"])
    return config, params


class ReverseRNN:
    """A reverse-direction-only RNN (ONNX's ``direction="reverse"``): ``layer`` run over each sequence read
    backwards, its outputs put back in the original order.

    With lengths, sequence b is reversed within its first lengths[b] steps, which is ONNX's (and torch's
    reverse direction's) semantics: it starts at its last valid step, and the output past its end is zero.
    A stack of reverse nodes is one reversal around the whole stack (the inner flips cancel). It offers the
    forward call and backward of the layer, with the same arguments and shapes (``lstmkit.LSTM/GRU``); there
    is no streaming (a reverse RNN needs the whole sequence), and converting it to another format is refused
    by ``as_layer`` (no format lstmkit writes has a reverse-only RNN), never done without the reversal.
    """

    reverse_only = True  # what lstmkit.summary shows as the direction

    def __init__(self, layer):
        self.layer = layer
        self.config, self.mode = layer.config, layer.config.mode
        self._lengths = None

    @property
    def params(self) -> dict:
        return self.layer.params

    @property
    def training(self) -> bool:
        return self.layer.training

    def state_dict(self) -> dict:
        return self.layer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.layer.load_state_dict(state)

    def train(self, mode: bool = True):
        self.layer.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def _flip(self, a, lengths):
        """a in the layer's layout (T, B, F) / (B, T, F) / unbatched (T, F), each sequence reversed in place
        within its first lengths[b] steps (all T without lengths)."""
        a = np.asarray(a)
        if a.ndim == 2:
            return a[::-1].copy()
        seq = a.transpose(1, 0, 2) if self.config.batch_first else a  # (T, B, F)
        T, B = seq.shape[:2]
        n = np.full(B, T) if lengths is None else np.asarray(lengths).reshape(B)
        t = np.arange(T)[:, None]
        index = np.where(t < n[None, :], n[None, :] - 1 - t, t)  # (T, B): the step each position reads
        flipped = np.take_along_axis(seq, index[:, :, None], axis=0)
        return np.ascontiguousarray(flipped.transpose(1, 0, 2)) if self.config.batch_first else flipped

    def __call__(self, x, hx=None, lengths=None):
        """As ``lstmkit.LSTM/GRU.__call__``: x (T, B, I) (or (B, T, I) with batch_first, or (T, I)); hx; lengths
        (B,) -> LSTM (output (T, B, P), (h_n, c_n)), GRU (output, h_n), h_n after each sequence's first step."""
        self._lengths = lengths
        output, state = self.layer(self._flip(x, lengths), hx, lengths)
        return self._flip(output, lengths), state

    def backward(self, d_output, d_hn=None, d_cn=None):
        """As the layer's backward, through the reversal: ``Gradients`` with input like x."""
        grads = self.layer.backward(self._flip(d_output, self._lengths), d_hn, d_cn)
        grads.input = self._flip(grads.input, self._lengths)
        return grads

    def stream(self, batch=1):
        raise ValueError("stream: a reverse-direction RNN reads each sequence from its end, so it needs the whole "
                         "sequence; call it on the sequence instead")

    def __repr__(self):
        return f"ReverseRNN({self.layer!r})"
