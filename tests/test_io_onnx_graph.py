"""ONNX import reads the graph around the LSTM/GRU nodes: a stack from the graph input to the graph output through
layout ops only, each node's initial_h/initial_c/sequence_lens empty, zeros or the caller's (graph inputs), or
refused by name; the graphs lstmkit's to_onnx and torch.onnx.export write still import and agree with onnxruntime.

Tolerance (float32): onnxruntime's kernels sum in another order than lstmkit's engine; T = 5 steps of dot products
of I + H terms differ by a few float32 roundings: 1e-5 of the output's scale.
"""
from __future__ import annotations

import copy
import io
import logging

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import lstmkit  # noqa: E402

T, B, N_IN, H = 5, 2, 3, 4
FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64
info = helper.make_tensor_value_info


def _const(name, value):
    return numpy_helper.from_array(np.asarray(value), name)


def _weights(mode, rng, n_in, k, D=1):
    G = 4 if mode == "LSTM" else 3
    shapes = {"W": (D, G * H, n_in), "R": (D, G * H, H), "B": (D, 2 * G * H)}
    return [_const(f"{n}{k}", rng.uniform(-0.6, 0.6, s).astype(np.float32)) for n, s in shapes.items()]


def _node(mode, k, x, optional=(), D=1, outputs=None, **attrs):
    """Node ``l{k}`` reading x with weights W{k}, R{k}, B{k}; outputs Y{k}, Y_h{k}[, Y_c{k}]."""
    outputs = outputs or [f"Y{k}", f"Y_h{k}"] + ([f"Y_c{k}"] if mode == "LSTM" else [])
    direction = {"direction": "bidirectional"} if D == 2 else {}
    return helper.make_node(mode, [x, f"W{k}", f"R{k}", f"B{k}", *optional], outputs, name=f"l{k}", hidden_size=H,
                            **direction, **attrs)


def _model(nodes, inputs, outputs, inits, seed=0, weights=(), opset=17):
    """A model of ``nodes``; weights: (mode, n_in, D) per node k, made as initializers W{k}, R{k}, B{k}."""
    rng = np.random.default_rng(seed)
    inits = list(inits) + [t for k, (mode, n_in, D) in enumerate(weights) for t in _weights(mode, rng, n_in, k, D)]
    graph = helper.make_graph(nodes, "g", inputs, [info(o, FLOAT, None) for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model


def _x(shape=(T, B, N_IN)):
    return info("X", FLOAT, list(shape))


def _run(model, feeds):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _close(got, want):
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()))


def _seq(y):
    """ONNX's Y (T, D, B, H) in lstmkit's output layout (T, B, D·H)."""
    return y.transpose(0, 2, 1, 3).reshape(y.shape[0], y.shape[2], -1)


RNG = np.random.default_rng(7)
X = RNG.standard_normal((T, B, N_IN)).astype(np.float32)
STATE = RNG.standard_normal((1, B, H)).astype(np.float32)


# ------------------------------------------------------------------------ initial_h / initial_c / sequence_lens

SLOTS = {"sequence_lens": 0, "initial_h": 1, "initial_c": 2}


@pytest.mark.parametrize("as_node", [False, True], ids=["initializer", "Constant"])
@pytest.mark.parametrize("mode,slot", [("LSTM", "sequence_lens"), ("LSTM", "initial_h"), ("LSTM", "initial_c"),
                                       ("GRU", "sequence_lens"), ("GRU", "initial_h")])
def test_a_constant_state_or_lengths_is_refused(mode, slot, as_node):
    """A nonzero constant initial state or constant lengths were dropped: the import ran from zeros at full length."""
    value = np.array([T, 2], np.int32) if slot == "sequence_lens" else STATE
    optional = ["", "", ""][: 3 if mode == "LSTM" else 2]
    optional[SLOTS[slot]] = "v"
    pre = [helper.make_node("Constant", [], ["v"], value=_const("v", value))] if as_node else []
    model = _model(pre + [_node(mode, 0, "X", optional)], [_x()], ["Y0"], [] if as_node else [_const("v", value)],
                   weights=[(mode, N_IN, 1)])
    plain = copy.deepcopy(model)
    plain.graph.node[-1].input[4:] = []
    assert np.abs(_run(model, {"X": X})[0] - _run(plain, {"X": X})[0]).max() > 1e-2  # it changes the result
    if slot == "sequence_lens":
        match = rf"{mode} node 'l0': sequence_lens is the constant 'v'; lstmkit's layer runs the lengths its caller"
    else:
        match = rf"{mode} node 'l0': {slot} is the constant 'v', not zeros; lstmkit's layer starts from the hx its"
    with pytest.raises(ValueError, match=match):
        lstmkit.from_onnx(model)


def test_a_state_computed_in_the_graph_is_refused():
    """An encoder whose final state starts the decoder stacked on it; a state computed from a graph input."""
    nodes = [_node("LSTM", 0, "X"), helper.make_node("Squeeze", ["Y0", "one"], ["x1"]),
             _node("LSTM", 1, "x1", ["", "Y_h0", "Y_c0"])]
    model = _model(nodes, [_x()], ["Y1"], [_const("one", [1])], weights=[("LSTM", N_IN, 1), ("LSTM", H, 1)])
    with pytest.raises(ValueError, match=r"LSTM node 'l1': initial_h is computed by Y_h of LSTM node 'l0'; "
                                         r"lstmkit's layer starts from the hx its caller passes"):
        lstmkit.from_onnx(model)
    nodes = [helper.make_node("Add", ["h0", "half"], ["h"]), _node("GRU", 0, "X", ["", "h"])]
    model = _model(nodes, [_x(), info("h0", FLOAT, [1, B, H])], ["Y0"], [_const("half", np.float32(0.5))],
                   weights=[("GRU", N_IN, 1)])
    with pytest.raises(ValueError, match=r"GRU node 'l0': initial_h is computed by Add node 'h'"):
        lstmkit.from_onnx(model)


def _zeros_by(name):
    """(nodes, initializers) making the tensor 'z' (1, B, H) of zeros as exporters write it."""
    if name == "initializer":
        return [], [_const("z", np.zeros((1, B, H), np.float32))]
    if name == "Expand":  # torch.onnx.export (TorchScript): a scalar 0 expanded to (D, B, H), B read from X
        return [helper.make_node("Shape", ["X"], ["s"]), helper.make_node("Gather", ["s", "i1"], ["b"], axis=0),
                helper.make_node("Unsqueeze", ["b", "a0"], ["b1"]),
                helper.make_node("Concat", ["one", "b1", "h"], ["dims"], axis=0),
                helper.make_node("Expand", ["zero", "dims"], ["z"])], \
            [_const("i1", np.array(1)), _const("a0", [0]), _const("one", [1]), _const("h", [H]),
             _const("zero", np.float32(0))]
    if name == "ConstantOfShape":
        return [helper.make_node("ConstantOfShape", ["dims"], ["z"])], [_const("dims", [1, B, H])]
    if name == "Tile":
        return [helper.make_node("Tile", ["row", "reps"], ["z"])], \
            [_const("row", np.zeros((1, 1, H), np.float32)), _const("reps", [1, B, 1])]
    # the dynamo exporter: zeros for every layer, sliced
    return [helper.make_node("ConstantOfShape", ["dims"], ["all"], value=_const("v", np.zeros(1, np.float32))),
            helper.make_node("Slice", ["all", "s0", "s1", "s0", "s1"], ["z"])], \
        [_const("dims", [2, B, H]), _const("s0", [0]), _const("s1", [1])]


@pytest.mark.parametrize("zeros", ["initializer", "Expand", "ConstantOfShape", "Tile", "Slice"])
def test_zero_initial_states_import(zeros):
    pre, inits = _zeros_by(zeros)
    model = _model(pre + [_node("LSTM", 0, "X", ["", "z", "z"])], [_x()], ["Y0", "Y_h0"], inits,
                   weights=[("LSTM", N_IN, 1)])
    want = _run(model, {"X": X})
    out, (h_n, _) = lstmkit.from_onnx(model)(X)
    _close(out, _seq(want[0]))
    _close(h_n, want[1])


def test_graph_input_states_and_lengths_are_the_layers_call_arguments():
    """initial_h/initial_c/sequence_lens passed on by Identity/Cast (as exporters write them) are what the caller
    gives the layer: layer(x, hx, lengths)."""
    nodes = [helper.make_node("Identity", ["h0"], ["h"]), helper.make_node("Cast", ["c0"], ["c"], to=FLOAT),
             helper.make_node("Cast", ["lengths"], ["n"], to=TensorProto.INT32), _node("LSTM", 0, "X", ["n", "h", "c"])]
    inputs = [_x(), info("lengths", INT64, [B]), info("h0", FLOAT, [1, B, H]), info("c0", FLOAT, [1, B, H])]
    model = _model(nodes, inputs, ["Y0", "Y_h0", "Y_c0"], [], weights=[("LSTM", N_IN, 1)])
    c0 = RNG.standard_normal((1, B, H)).astype(np.float32)
    lengths = np.array([T, 2])
    want = _run(model, {"X": X, "lengths": lengths, "h0": STATE, "c0": c0})
    out, (h_n, c_n) = lstmkit.from_onnx(model)(X, (STATE, c0), lengths=lengths)
    for got, expected in zip((out, h_n, c_n), (_seq(want[0]), want[1], want[2])):
        _close(got, expected)


def _two_layers(state0, state1, lengths=("", ""), inputs=(), inits=()):
    """Two GRU nodes stacked (Squeeze of the direction axis between), node k's initial_h / sequence_lens given."""
    nodes = [*[n for n in inits if isinstance(n, onnx.NodeProto)], _node("GRU", 0, "X", [lengths[0], state0]),
             helper.make_node("Squeeze", ["Y0", "one"], ["x1"]), _node("GRU", 1, "x1", [lengths[1], state1])]
    tensors = [t for t in inits if not isinstance(t, onnx.NodeProto)] + [_const("one", [1])]
    return _model(nodes, [_x(), info("h0", FLOAT, [2, B, H]), *inputs], ["Y1"], tensors,
                  weights=[("GRU", N_IN, 1), ("GRU", H, 1)])


def _rows(name, start, stop):
    return [helper.make_node("Slice", ["h0", f"{name}a", f"{name}b", f"{name}c"], [name]),
            _const(f"{name}a", [start]), _const(f"{name}b", [stop]), _const(f"{name}c", [0])]


def test_layers_states_are_their_rows_of_hx():
    model = _two_layers("r0", "r1", inits=_rows("r0", 0, 1) + _rows("r1", 1, 2))
    h0 = RNG.standard_normal((2, B, H)).astype(np.float32)
    _close(lstmkit.from_onnx(model)(X, h0)[0], _run(model, {"X": X, "h0": h0})[0][:, 0])
    with pytest.raises(ValueError, match=r"GRU node 'l1': initial_h is rows 0:1 of the graph input 'h0' through Slice "
                                         r"node 'r1', where lstmkit's layer gives this node rows 1:2 of hx"):
        lstmkit.from_onnx(_two_layers("r0", "r1", inits=_rows("r0", 0, 1) + _rows("r1", 0, 1)))
    one = [info("h1", FLOAT, [1, B, H])]
    shared = _two_layers("h1", "h1", inputs=one)
    with pytest.raises(ValueError, match=r"GRU node 'l0': initial_h is all of the graph input 'h1', which GRU node "
                                         r"'l1' reads too; lstmkit's layer gives each layer its own rows of hx"):
        lstmkit.from_onnx(shared)


def test_one_lengths_for_every_layer():
    model = _two_layers("", "", lengths=("lengths", ""), inputs=[info("lengths", TensorProto.INT32, [B])])
    with pytest.raises(ValueError, match=r"GRU node 'l1': sequence_lens is empty where GRU node 'l0''s is the graph "
                                         r"input 'lengths'; lstmkit's layer runs one lengths, its caller's"):
        lstmkit.from_onnx(model)


def test_layout_1_node_with_a_graph_input_state_is_refused():
    model = _model([_node("GRU", 0, "X", ["", "h0"], layout=1)], [_x((B, T, N_IN)), info("h0", FLOAT, [B, 1, H])],
                   ["Y0"], [], weights=[("GRU", N_IN, 1)])
    with pytest.raises(ValueError, match=r"initial_h is the graph input 'h0', which a layout=1 node reads as "
                                         r"\(B, D, H\) where lstmkit's layer takes hx as \(layers·D, B, H\)"):
        lstmkit.from_onnx(model)


# ------------------------------------------------------------------------------------------- the stack's dataflow

def _squeeze(y, out):
    return helper.make_node("Squeeze", [y, "one"], [out])


NOT_A_STACK = {  # name: (nodes, graph outputs, extra initializers, weights per node, what the refusal says)
    "Mul before": ([helper.make_node("Mul", ["X", "three"], ["x3"]), _node("LSTM", 0, "x3")], ["Y0"], [],
                   [("LSTM", N_IN, 1)], r"LSTM node 'l0': its input X comes from Mul node 'x3'; lstmkit reads a stack"),
    "Relu after": ([_node("LSTM", 0, "X"), helper.make_node("Relu", ["Y0"], ["Z"])], ["Z"], [], [("LSTM", N_IN, 1)],
                   r"graph output 'Z' is computed by Relu node 'Z'; lstmkit reads a stack of LSTM/GRU nodes"),
    "parallel, added": ([_node("LSTM", 0, "X"), _node("LSTM", 1, "X"), helper.make_node("Add", ["Y0", "Y1"], ["Z"])],
                        ["Z"], [], [("LSTM", N_IN, 1), ("LSTM", N_IN, 1)],
                        r"LSTM node 'l1': its input X comes from the graph input 'X', not from the output Y of "
                        r"LSTM node 'l0' before it"),
    "MatMul between": ([_node("LSTM", 0, "X"), _squeeze("Y0", "s"), helper.make_node("MatMul", ["s", "M"], ["m"]),
                        _node("LSTM", 1, "m")], ["Y1"], [_const("M", RNG.standard_normal((H, H)).astype(np.float32))],
                       [("LSTM", N_IN, 1), ("LSTM", H, 1)], r"LSTM node 'l1': its input X comes from MatMul node 'm'"),
    "decoder reads X again": ([_node("LSTM", 0, "X"), _node("LSTM", 1, "X", ["", "Y_h0", "Y_c0"])], ["Y1"], [],
                              [("LSTM", N_IN, 1), ("LSTM", N_IN, 1)],
                              r"LSTM node 'l1': its input X comes from the graph input 'X', not from the output Y"),
    "time and batch swapped between": (
        [_node("GRU", 0, "X"), _squeeze("Y0", "s"), helper.make_node("Transpose", ["s"], ["t"], perm=[1, 0, 2]),
         _node("GRU", 1, "t")], ["Y1"], [], [("GRU", N_IN, 1), ("GRU", H, 1)],
        r"GRU node 'l1': its input X is the Y of GRU node 'l0' through Squeeze node 's', Transpose node 't' with axes "
        r"\('B', 'T', 'F'\), where the node reads \('T', 'B', 'F'\)"),
    "directions reshaped with the batch": (  # (T, 2, B, H) -> (T, 2, B·H): runs in onnxruntime when B = 2
        [_node("GRU", 0, "X", D=2), helper.make_node("Reshape", ["Y0", "keep2"], ["r"]), _node("GRU", 1, "r", D=2)],
        ["Y1"], [_const("keep2", [0, 0, -1])], [("GRU", N_IN, 2), ("GRU", 2 * H, 2)],
        r"Reshape node 'r': shape \[0, 0, -1\] merges the axes \('B', 'H'\) of data with axes \('T', 'D', 'B', 'H'\)"),
    "units before directions": (
        [_node("GRU", 0, "X", D=2), helper.make_node("Transpose", ["Y0"], ["t"], perm=[0, 2, 3, 1]),
         helper.make_node("Reshape", ["t", "keep2"], ["r"]), _node("GRU", 1, "r", D=2)],
        ["Y1"], [_const("keep2", [0, 0, -1])], [("GRU", N_IN, 2), ("GRU", 2 * H, 2)],
        r"Reshape node 'r': shape \[0, 0, -1\] merges the axes \('H', 'D'\)"),
    "fixed sizes swapped": (
        [_node("GRU", 0, "X"), helper.make_node("Reshape", ["Y0", "bt"], ["r"]), _node("GRU", 1, "r")], ["Y1"],
        [_const("bt", [B, T, H])], [("GRU", N_IN, 1), ("GRU", H, 1)],
        r"Reshape node 'r': shape \[2, 5, 4\] does not keep the axes \('T', 'D', 'B', 'H'\) of its data in place"),
    "output of the first layer": (
        [_node("GRU", 0, "X"), _squeeze("Y0", "s"), _node("GRU", 1, "s")], ["s"], [], [("GRU", N_IN, 1), ("GRU", H, 1)],
        r"graph output 's' is the Y of GRU node 'l0', not of the last node"),
    "batch-first input, time-first output": (
        [helper.make_node("Transpose", ["X"], ["t"], perm=[1, 0, 2]), _node("GRU", 0, "t"), _squeeze("Y0", "s")], ["s"],
        [], [("GRU", N_IN, 1)], r"graph output 's': the last node's Y through Squeeze node 's' has axes "
                                r"\('T', 'B', 'F'\), not the graph input's form \(B, T, features\)"),
    "cast to float16": ([helper.make_node("Cast", ["X"], ["c"], to=TensorProto.FLOAT16), _node("GRU", 0, "c")], ["Y0"],
                        [], [("GRU", N_IN, 1)], r"Cast node 'c': casts the data to element type 10"),
    "final states out of order": (
        [_node("GRU", 0, "X"), _squeeze("Y0", "s"), _node("GRU", 1, "s"),
         helper.make_node("Concat", ["Y_h1", "Y_h0"], ["hn"], axis=0)], ["Y1", "hn"], [],
        [("GRU", N_IN, 1), ("GRU", H, 1)], r"graph output 'hn' is made of Y_h, Y_h of nodes \[1, 0\]; lstmkit's h_n"),
    "final states mixed": (
        [_node("LSTM", 0, "X"), _squeeze("Y0", "s"), _node("LSTM", 1, "s"),
         helper.make_node("Concat", ["Y_h0", "Y_c1"], ["hn"], axis=0)], ["Y1", "hn"], [],
        [("LSTM", N_IN, 1), ("LSTM", H, 1)], r"graph output 'hn' is made of Y_h, Y_c of nodes \[0, 1\]"),
    "final state joined with other data": (
        [_node("GRU", 0, "X"), helper.make_node("Concat", ["Y_h0", "pad"], ["hn"], axis=0)], ["Y0", "hn"],
        [_const("pad", np.zeros((1, B, H), np.float32))], [("GRU", N_IN, 1)],
        r"graph output 'hn': Concat node 'hn' joins the final states with the constant 'pad'"),
    "final state transposed": (
        [_node("GRU", 0, "X"), helper.make_node("Transpose", ["Y_h0"], ["hn"], perm=[1, 0, 2])], ["Y0", "hn"], [],
        [("GRU", N_IN, 1)], r"graph output 'hn' is computed by Transpose node 'hn'"),
    "output made of the input": ([_node("GRU", 0, "X"), helper.make_node("Identity", ["X"], ["i"])], ["Y0", "i"], [],
                                 [("GRU", N_IN, 1)], r"graph output 'i' is made of neither the last node's Y nor"),
}


@pytest.mark.parametrize("case", list(NOT_A_STACK))
def test_a_graph_that_is_not_a_stack_is_refused(case):
    nodes, outputs, inits, weights, match = NOT_A_STACK[case]
    inits = inits + [_const("one", [1]), _const("three", np.float32(3))]
    model = _model(nodes, [_x((B, T, N_IN)) if case.startswith("batch-first") else _x()], outputs, inits,
                   weights=weights)
    if case != "cast to float16":  # onnxruntime runs each (it has no float16 LSTM)
        _run(model, {"X": X.transpose(1, 0, 2) if case.startswith("batch-first") else X})
    with pytest.raises(ValueError, match=match):
        lstmkit.from_onnx(model)


def _shape_reshape(nodes):
    """The dynamo exporter's Reshape of Y (T, B, D, H) to (T, B, D·H) with the shape computed from its own."""
    return nodes + [
        helper.make_node("Shape", ["t"], ["shape"]),
        *[helper.make_node("Slice", ["shape", f"i{k}", f"i{k + 1}"], [f"d{k}"]) for k in range(4)],
        helper.make_node("Mul", ["d2", "d3"], ["dh"]),
        helper.make_node("Concat", ["d0", "d1", "dh"], ["target"], axis=0),
        helper.make_node("Reshape", ["t", "target"], ["r"])]


@pytest.mark.parametrize("declared", [(T, B, N_IN), ("time", "batch", N_IN)], ids=["fixed", "symbolic"])
def test_reshapes_as_exporters_write_them(declared):
    """[0, 0, -1], a shape computed from the data's own Shape, and fixed sizes the graph input's dims confirm;
    fixed sizes of axes whose size the graph input does not fix are refused (they hold for one size only)."""
    weights = [("LSTM", N_IN, 2), ("LSTM", 2 * H, 2)]
    inits = [_const(f"i{k}", [k]) for k in range(5)] + [_const("keep2", [0, 0, -1]), _const("fixed", [T, -1, 2 * H])]
    first = [_node("LSTM", 0, "X", D=2), helper.make_node("Transpose", ["Y0"], ["t"], perm=[0, 2, 1, 3])]
    second = [_node("LSTM", 1, "r", D=2), helper.make_node("Transpose", ["Y1"], ["t1"], perm=[0, 2, 1, 3])]
    for last in ("keep2", "fixed"):
        nodes = _shape_reshape(first) + second + [helper.make_node("Reshape", ["t1", last], ["out"])]
        model = _model(nodes, [_x(declared)], ["out", "Y_h1"], inits, weights=weights)
        want = _run(model, {"X": X})
        if last == "fixed" and declared[0] == "time":
            with pytest.raises(ValueError, match=r"Reshape node 'out': shape \[5, -1, 8\] does not keep the axes .* it "
                                                 r"fixes sizes of axes whose size the graph input does not fix"):
                lstmkit.from_onnx(model)
            continue
        out, (h_n, _) = lstmkit.from_onnx(model)(X)
        _close(out, want[0])
        _close(h_n[2:], want[1])


# ------------------------------------------------------------------------- the exporters' graphs still import

LSTMKIT = {
    "LSTM 2-layer bidirectional batch_first": (lambda: lstmkit.LSTM(N_IN, H, 2, bidirectional=True, batch_first=True,
                                                                    seed=0), {}),
    "GRU 2-layer lengths+state": (lambda: lstmkit.GRU(N_IN, H, 2, seed=0), dict(lengths=True, initial_state=True)),
    "LSTM bidirectional lengths+state": (lambda: lstmkit.LSTM(N_IN, H, bidirectional=True, peephole=True, seed=0),
                                         dict(lengths=True, initial_state=True)),
    "LSTM 2-layer streaming": (lambda: lstmkit.LSTM(N_IN, H, 2, seed=0), dict(streaming=True)),
    "LSTM proj (Scan)": (lambda: lstmkit.LSTM(N_IN, H, 2, proj_size=2, seed=0), dict(lengths=True,
                                                                                     initial_state=True)),
}


@pytest.mark.parametrize("metadata", [True, False], ids=["lstmkit", "foreign"])
@pytest.mark.parametrize("case", list(LSTMKIT))
def test_lstmkit_exports_import_and_agree_with_onnxruntime(case, metadata):
    make, options = LSTMKIT[case]
    layer = make().eval()
    proto = lstmkit.to_onnx(layer, **options)
    if not metadata:
        del proto.metadata_props[:]
        if not any(n.op_type in ("LSTM", "GRU") for n in proto.graph.node):  # a Scan: its metadata is the model
            with pytest.raises(ValueError, match="no LSTM or GRU node in the graph"):
                lstmkit.from_onnx(proto)
            return
    c = layer.config
    k = c.num_layers * c.num_directions
    streaming = options.get("streaming")
    x = X[0] if streaming else (X.transpose(1, 0, 2) if c.batch_first else X)
    feeds, hx, lengths = {"input": x}, None, None
    if streaming or options.get("initial_state"):
        hx = [RNG.standard_normal((k, B, s)).astype(np.float32) for s in (c.output_size, c.hidden_size)]
        hx = tuple(hx) if c.mode == "LSTM" else hx[0]
        feeds.update({"h0": hx[0], "c0": hx[1]} if c.mode == "LSTM" else {"h0": hx})
    if options.get("lengths"):
        lengths = feeds["lengths"] = np.array([T, 0])
    want = _run(proto, feeds)
    back = lstmkit.from_onnx(proto)
    assert back.config.batch_first == c.batch_first
    out, state = back(x[None] if streaming else x, hx, lengths=lengths)
    _close(out[0] if streaming else out, want[0])
    for got, expected in zip(state if isinstance(state, tuple) else (state,), want[1:]):
        _close(got, expected)


def _torch_export(module, args, dynamo):
    torch = pytest.importorskip("torch")
    logging.disable(logging.WARNING)
    try:
        if dynamo:
            pytest.importorskip("onnxscript")
            return torch.onnx.export(module, args, dynamo=True, verbose=False).model_proto
        f = io.BytesIO()
        torch.onnx.export(module, args, f, dynamo=False)
        return onnx.load_from_string(f.getvalue())
    finally:
        logging.disable(logging.NOTSET)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("case", ["LSTM 2-layer bidirectional, h0/c0 inputs", "GRU batch_first"])
def test_torch_exports_import_and_agree_with_torch(case, dynamo):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    if case.startswith("LSTM"):
        module = torch.nn.LSTM(N_IN, H, 2, bidirectional=True).eval()
        hx = (torch.randn(4, B, H), torch.randn(4, B, H))
        args = (torch.from_numpy(X), hx)
    else:
        module = torch.nn.GRU(N_IN, H, batch_first=True).eval()
        args = (torch.from_numpy(X.transpose(1, 0, 2).copy()),)
    proto = _torch_export(module, args, dynamo)
    layer = lstmkit.from_onnx(proto)
    with torch.no_grad():
        want = module(*args)
    hx = tuple(t.numpy() for t in args[1]) if len(args) > 1 else None
    out, state = layer(args[0].numpy(), hx)
    _close(out, want[0].numpy())
    for got, expected in zip(state if isinstance(state, tuple) else (state,),
                             want[1] if isinstance(want[1], tuple) else (want[1],)):
        _close(got, expected.numpy())
