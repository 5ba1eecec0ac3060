"""ONNX: export lstmkit layers as graphs ONNX Runtime runs, and import LSTM/GRU nodes from any exporter.

Export (``to_onnx`` / ``save``), built with ``onnx.helper``:

    inputs   input      (T, B, I), or (B, T, I) for batch_first (transposed in the graph: ORT rejects layout=1)
             lengths    (B,) int64, valid steps per sequence          only with lengths=True
             h0, c0     (L·D, B, P), (L·D, B, H)                      only with initial_state=True
    outputs  output     (T, B, D·P) (or (B, T, D·P)), h_n (L·D, B, P), c_n (L·D, B, H) (LSTM)

Each layer is one ONNX LSTM/GRU node (gates reordered i,f,g,o → i,o,f,g and r,z,n → z,r,n; GRU with
linear_before_reset=1), except with proj_size, which the ONNX LSTM op lacks: each direction is then a Scan
over time whose body is the cell written out in Gemm/Sigmoid/Tanh/Mul ops, with torch-named weights.

Streaming export (``streaming=True``): one time step, state in and out, for stateful serving:

    inputs   input (B, I), h0 (L, B, P), c0 (L, B, H)      (cells: h0 (B, H), c0 (B, H))
    outputs  output (B, P), h_n, c_n                       (feed h_n, c_n back as the next h0, c0)

Import (``from_onnx`` / ``load``) reads LSTM/GRU nodes as torch.onnx.export or tf2onnx write them: constant
W/R/B (initializers or Constant nodes), direction, layout, linear_before_reset=1; nodes in graph order are
the layers of one stack. Graphs without such nodes import through lstmkit's own metadata (proj_size exports).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._optional import require
from ..params import RNNConfig, param_shapes, suffix
from .files import atomic_write
from .gates import reorder
from .model import build, unpack

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
    """
    onnx = require("onnx", "onnx")
    from .convert import as_layer

    layer = as_layer(model)
    config, params, cell = unpack(layer)
    config.refuse_variants("to_onnx: this exporter")
    streaming = streaming or cell
    if streaming and config.bidirectional:
        raise ValueError("streaming: a bidirectional RNN needs the whole sequence; export it with streaming=False")
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
        run = _layer_scan if c.proj_size else _layer_op
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
    D, H, lstm = c.num_directions, c.hidden_size, c.mode == "LSTM"
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
    inputs += [g.op("Cast", [seq_lens], to=g.onnx.TensorProto.INT32) if seq_lens else "", h0 or ""]
    inputs += [c0 or ""] if lstm else []
    attrs = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
    if not lstm:
        attrs["linear_before_reset"] = 1  # torch's GRU: r applied after the hidden matmul
    y, h_n, *rest = g.op(c.mode, inputs, n_out=3 if lstm else 2, **attrs)
    y = g.op("Transpose", [y], perm=[0, 2, 1, 3])  # (T, D, B, H) -> (T, B, D, H)
    y = g.op("Reshape", [y, g.const(np.array([0, 0, -1]))])  # (T, B, D·H)
    return y, h_n, (rest[0] if lstm else None)


def _layer_scan(g, c, params, layer, x, seq_lens, h0, c0, elem):
    """One projected LSTM layer: per direction a Scan over time whose body is the cell (torch-named weights)."""
    P, H = c.output_size, c.hidden_size
    mask = _step_mask(g, x, seq_lens)  # (T, B, 1) bool
    ys, hs, cs = [], [], []
    for d in range(c.num_directions):
        s = suffix(layer, d)
        names = {k: g.const(params[k + s], name=k + s) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                                                 "weight_hr") if k + s in params}
        h_init = g.op("Squeeze", [_slice(g, h0, d, d + 1), g.const(np.array([0]))]) if h0 else _zeros(g, x, P, elem)
        c_init = g.op("Squeeze", [_slice(g, c0, d, d + 1), g.const(np.array([0]))]) if c0 else _zeros(g, x, H, elem)
        body = _lstm_cell_body(g.onnx, names, H, elem, prefix=f"l{layer}d{d}_")
        reverse = [1, 1] if d == 1 else [0, 0]
        h_n, c_n, y = g.op("Scan", [h_init, c_init, x, mask], n_out=3, body=body, num_scan_inputs=2,
                           scan_input_directions=reverse, scan_output_directions=[reverse[0]])
        ys.append(y)
        hs.append(g.op("Unsqueeze", [h_n, g.const(np.array([0]))]))
        cs.append(g.op("Unsqueeze", [c_n, g.const(np.array([0]))]))
    join = (lambda parts, axis: g.op("Concat", parts, axis=axis) if len(parts) > 1 else parts[0])
    return join(ys, 2), join(hs, 0), join(cs, 0)


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


def _lstm_cell_body(onnx, w, H, elem, prefix):
    """Scan body: (h (B, P), c (B, H), x_t (B, I), m_t (B, 1) bool) -> (h', c', y_t), the equations of
    lstmkit/ref/lstm.py with the projection; steps past a sequence's end keep the state and output zero."""
    b = _Graph(onnx, prefix)
    info = onnx.helper.make_tensor_value_info
    h, c, x, m = (prefix + n for n in ("h", "c", "x", "m"))
    gi = b.op("Gemm", [x, w["weight_ih"]] + ([w["bias_ih"]] if "bias_ih" in w else []), transB=1)
    gh = b.op("Gemm", [h, w["weight_hh"]] + ([w["bias_hh"]] if "bias_hh" in w else []), transB=1)
    gates = b.op("Add", [gi, gh])  # (B, 4H), torch order
    split = b.op("Constant", [], value=onnx.numpy_helper.from_array(np.array([H] * 4), b.name("split")))
    i, f, gg, o = b.op("Split", [gates, split], n_out=4, axis=1)
    i, f, gg, o = b.op("Sigmoid", [i]), b.op("Sigmoid", [f]), b.op("Tanh", [gg]), b.op("Sigmoid", [o])
    c_next = b.op("Add", [b.op("Mul", [f, c]), b.op("Mul", [i, gg])])
    h_next = b.op("Gemm", [b.op("Mul", [o, b.op("Tanh", [c_next])]), w["weight_hr"]], transB=1)  # (B, P)
    outs = [prefix + n for n in ("h_out", "c_out", "y")]
    b.op("Where", [m, h_next, h], outputs=[outs[0]])
    b.op("Where", [m, c_next, c], outputs=[outs[1]])
    b.op("Mul", [h_next, b.op("Cast", [m], to=elem)], outputs=[outs[2]])
    return onnx.helper.make_graph(
        b.nodes, prefix + "cell",
        [info(h, elem, None), info(c, elem, None), info(x, elem, None), info(m, onnx.TensorProto.BOOL, None)],
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

def load(path, *, batch_first: bool | None = None):
    """Read an ONNX file into an lstmkit layer (see ``from_onnx``)."""
    onnx = require("onnx", "onnx")
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # DecodeError and friends for truncated or foreign files
        raise ValueError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from e
    try:
        return from_onnx(proto, batch_first=batch_first)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def from_onnx(model, *, batch_first: bool | None = None):
    """An lstmkit layer (or cell) from an ONNX model: a ModelProto, bytes, or a path.

    The LSTM/GRU nodes in graph order are the layers of one stack (their sizes must chain); weights must be
    constants. batch_first: override (default: layout=1, or lstmkit's metadata, else False).
    """
    onnx = require("onnx", "onnx")
    if isinstance(model, (str, Path)):
        return load(model, batch_first=batch_first)
    proto = onnx.load_from_string(model) if isinstance(model, bytes) else model
    graph = proto.graph
    meta = {p.key: p.value for p in proto.metadata_props}
    consts = _constants(onnx, graph)
    nodes = [n for n in graph.node if n.op_type in ("LSTM", "GRU")]
    saved = RNNConfig(**json.loads(meta[META_CONFIG])) if META_CONFIG in meta else None
    cell = meta.get(META_KIND, "").endswith("Cell")
    if not nodes:
        if saved is None:
            ops = sorted({n.op_type for n in graph.node})
            raise ValueError(f"no LSTM or GRU node in the graph (ops: {ops}) and no lstmkit metadata")
        missing = [k for k in param_shapes(saved) if k not in consts]
        if missing:
            raise ValueError(f"lstmkit metadata names weights {missing} that the graph does not hold")
        params = {k: consts[k] for k in param_shapes(saved)}
        return build(saved, params, cell, **({} if batch_first is None else {"batch_first": batch_first}))
    layers = [_read_node(n, consts) for n in nodes]
    config, params = _stack(layers)
    if batch_first is None:
        batch_first = layers[0]["layout"] == 1 or bool(saved and saved.batch_first)
    return build(config, params, cell and len(layers) == 1, batch_first=batch_first)


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


DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}


def _read_node(node, consts) -> dict:
    """One ONNX LSTM/GRU node -> {mode, directions, hidden, input_size, layout, params per direction}."""
    from onnx import helper

    mode = node.op_type
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    where = f"{mode} node {node.name or node.output[0]!r}"
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction == "reverse":
        raise ValueError(f"{where}: direction='reverse' alone has no torch/lstmkit equivalent")
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    D = 2 if direction == "bidirectional" else 1
    if acts and acts != DEFAULT_ACTIVATIONS[mode] * D:
        raise ValueError(f"{where}: activations {acts} are not the standard {DEFAULT_ACTIVATIONS[mode]}")
    for unsupported in ("clip", "activation_alpha", "activation_beta"):
        if unsupported in attrs:
            raise ValueError(f"{where}: attribute {unsupported} is not supported")
    if attrs.get("input_forget", 0):
        raise ValueError(f"{where}: input_forget=1 (coupled gates) is not supported")
    if mode == "GRU" and attrs.get("linear_before_reset", 0) != 1:
        raise ValueError(f"{where}: linear_before_reset=0 (reset before the hidden matmul, Keras' "
                         "reset_after=False) is not supported; torch's GRU is linear_before_reset=1")
    inputs = list(node.input) + [""] * 8

    def const(i, name):
        if not inputs[i]:
            return None
        if inputs[i] not in consts:
            raise ValueError(f"{where}: {name} ({inputs[i]!r}) is computed in the graph; only constant weights "
                             "(initializers or Constant nodes) can be read")
        return consts[inputs[i]]

    W, R, B, P = const(1, "W"), const(2, "R"), const(3, "B"), const(7, "P")
    if W is None or R is None:
        raise ValueError(f"{where}: W and R inputs are required")
    if P is not None and np.any(P):
        raise ValueError(f"{where}: peephole weights (P) are not supported")
    G = 4 if mode == "LSTM" else 3
    H = int(attrs.get("hidden_size", R.shape[-1]))
    if W.shape[:2] != (D, G * H) or R.shape != (D, G * H, H) or (B is not None and B.shape != (D, 2 * G * H)):
        raise ValueError(f"{where}: shapes W {W.shape}, R {R.shape}, B {None if B is None else B.shape} do not "
                         f"fit hidden_size={H}, {D} direction(s)")
    dtype = np.float64 if W.dtype == np.float64 else np.float32
    per_direction = []
    for d in range(D):
        p = {"weight_ih": reorder(W[d], mode, "onnx", "torch"), "weight_hh": reorder(R[d], mode, "onnx", "torch")}
        if B is not None:
            p["bias_ih"] = reorder(B[d, :G * H], mode, "onnx", "torch")
            p["bias_hh"] = reorder(B[d, G * H:], mode, "onnx", "torch")
        per_direction.append({k: v.astype(dtype) for k, v in p.items()})
    return {"mode": mode, "directions": D, "hidden": H, "input_size": int(W.shape[2]),
            "layout": int(attrs.get("layout", 0)), "params": per_direction, "where": where}


def _stack(layers: list[dict]) -> tuple[RNNConfig, dict]:
    """Stack per-node layers into one config and torch-named params; ValueError when they do not chain."""
    first = layers[0]
    has_bias = any("bias_ih" in p for layer in layers for p in layer["params"])
    params = {}
    for k, layer in enumerate(layers):
        expected_in = first["input_size"] if k == 0 else first["directions"] * first["hidden"]
        same = (layer["mode"], layer["directions"], layer["hidden"]) == (first["mode"], first["directions"],
                                                                          first["hidden"])
        if not same or layer["input_size"] != expected_in:
            raise ValueError(f"{layer['where']} does not stack on {first['where']}: lstmkit reads the LSTM/GRU "
                             "nodes of one graph as one stack with equal hidden sizes and directions")
        for d, p in enumerate(layer["params"]):
            if has_bias and "bias_ih" not in p:  # a node without B is one with zero biases
                zeros = np.zeros(p["weight_ih"].shape[0], p["weight_ih"].dtype)
                p = {**p, "bias_ih": zeros, "bias_hh": zeros}
            params.update({name + suffix(k, d): value for name, value in p.items()})
    config = RNNConfig(first["mode"], first["input_size"], first["hidden"], len(layers), has_bias,
                       bidirectional=first["directions"] == 2)
    return config, params
