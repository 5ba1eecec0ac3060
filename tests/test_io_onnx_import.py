"""ONNX import of what ONNX's own node tests write: direction="reverse" nodes, and weights that arrive as graph
inputs (from_onnx(..., inputs={...})), checked against onnxruntime and ONNX's reference evaluator; activations'
α/β read as onnxruntime reads them (or refused where it and the ONNX operators disagree); imports in evaluation mode.

onnxruntime's LSTM/GRU run float32 only (float64: "does not support double"), and ONNX's reference evaluator
ignores sequence_lens: float32 with lengths against onnxruntime, float64 at full length against the reference.
Tolerance: float64 to rounding over T ≤ 7 steps (1e-12 of the output's scale); float32 to 1e-5 of it (a few
hundred float32 roundings of 6e-8 at most).
"""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import lstmkit  # noqa: E402
from lstmkit.io.onnx import ReverseRNN  # noqa: E402

T, B, N_IN, H = 7, 3, 4, 5
LENGTHS = np.array([7, 2, 5], np.int32)


def _weights(mode, rng, dtype, n_in, D=1):
    G = 4 if mode == "LSTM" else 3
    return {"W": rng.uniform(-0.5, 0.5, (D, G * H, n_in)).astype(dtype),
            "R": rng.uniform(-0.5, 0.5, (D, G * H, H)).astype(dtype),
            "B": rng.uniform(-0.5, 0.5, (D, 2 * G * H)).astype(dtype)}


def _model(mode, dtype, weights_as_inputs, attrs, layers=1, seed=0):
    """A graph of `layers` chained reverse nodes (as ONNX's node tests build them: X, W, R, B, sequence_lens,
    initial_h[, initial_c] are graph inputs) -> (model, weights per layer, feeds without the weights)."""
    rng = np.random.default_rng(seed)
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    info = helper.make_tensor_value_info
    inputs = [info("X", elem, [T, B, N_IN]), info("sequence_lens", TensorProto.INT32, [B]),
              info("initial_h", elem, [layers, B, H])]
    inputs += [info("initial_c", elem, [layers, B, H])] if mode == "LSTM" else []
    nodes, inits, weights, x = [], [], [], "X"
    for k in range(layers):
        w = _weights(mode, rng, dtype, N_IN if k == 0 else H)
        names = {n: f"{n}{k}" if k else n for n in w}
        if weights_as_inputs:
            inputs += [info(names[n], elem, list(v.shape)) for n, v in w.items()]
        else:
            inits += [numpy_helper.from_array(v, names[n]) for n, v in w.items()]
        weights.append({names[n]: v for n, v in w.items()})
        state = [f"h{k}", f"c{k}"][: 2 if mode == "LSTM" else 1]
        for s, full in zip(state, ("initial_h", "initial_c")):
            nodes.append(helper.make_node("Slice", [full, f"start{k}", f"stop{k}", "axis0"], [s]))
        inits += [numpy_helper.from_array(np.array([k]), f"start{k}"),
                  numpy_helper.from_array(np.array([k + 1]), f"stop{k}")]
        nodes.append(helper.make_node(mode, [x, names["W"], names["R"], names["B"], "sequence_lens", *state],
                                      [f"Y{k}", f"Y_h{k}"], hidden_size=H, direction="reverse", **attrs))
        x = f"x{k + 1}"
        nodes.append(helper.make_node("Squeeze", [f"Y{k}", "axis1"], [x]))
    inits += [numpy_helper.from_array(np.array([0]), "axis0"), numpy_helper.from_array(np.array([1]), "axis1")]
    outputs = [info(x, elem, None), info(f"Y_h{layers - 1}", elem, None)]
    model = helper.make_model(helper.make_graph(nodes, "reverse", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    feeds = {"X": rng.standard_normal((T, B, N_IN)).astype(dtype), "sequence_lens": LENGTHS,
             "initial_h": rng.standard_normal((layers, B, H)).astype(dtype)}
    if mode == "LSTM":
        feeds["initial_c"] = rng.standard_normal((layers, B, H)).astype(dtype)
    return model, weights, feeds


def _lstmkit(layer, feeds):
    hx = (feeds["initial_h"], feeds["initial_c"]) if "initial_c" in feeds else feeds["initial_h"]
    out, state = layer(feeds["X"], hx, lengths=feeds["sequence_lens"])
    return out, (state[0] if isinstance(state, tuple) else state)


def _close(got, want, dtype):
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * max(1.0, np.abs(want).max()))


CASES = {
    "lstm": ("LSTM", {}),
    "lstm_clip_activations": ("LSTM", {"clip": 1.5, "activations": ["HardSigmoid", "Tanh", "Softsign"]}),
    "gru": ("GRU", {"linear_before_reset": 1}),
    "gru_before_reset": ("GRU", {}),  # ONNX's default linear_before_reset=0
}


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_reverse_nodes_with_graph_input_weights_match_onnxruntime(case, layers):
    mode, attrs = CASES[case]
    dtype = np.float32
    model, weights, feeds = _model(mode, dtype, True, attrs, layers)
    every = {k: v for w in weights for k, v in w.items()}
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {**feeds, **every})
    layer = lstmkit.from_onnx(model, inputs=every)
    assert isinstance(layer, ReverseRNN) and layer.config.num_layers == layers
    out, h_n = _lstmkit(layer, feeds)
    _close(out, want[0], dtype)
    _close(h_n[-1:], want[1], dtype)
    assert not out[LENGTHS[1]:, 1].any()  # past a sequence's end the output is zero, as ONNX's


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("case", ["lstm", "gru", "gru_before_reset"])
def test_reverse_node_matches_onnx_reference_evaluator(case, layers):
    """ONNX's own reference semantics (onnx.reference), full-length sequences and default activations (it ignores
    sequence_lens, clip and activations)."""
    mode, attrs = CASES[case]
    model, weights, feeds = _model(mode, np.float64, False, attrs, layers)
    feeds["sequence_lens"] = np.full(B, T, np.int32)
    want = ReferenceEvaluator(model).run(None, feeds)
    out, h_n = _lstmkit(lstmkit.from_onnx(model), feeds)
    _close(out, want[0], np.float64)
    _close(h_n[-1:], want[1], np.float64)


def test_reverse_rnn_layouts_backward_and_refusals():
    model, weights, feeds = _model("GRU", np.float64, False, {"linear_before_reset": 1})
    seq = lstmkit.from_onnx(model)
    first = lstmkit.from_onnx(model, batch_first=True)
    out, h = _lstmkit(seq, feeds)
    out_bf, h_bf = first(feeds["X"].transpose(1, 0, 2), feeds["initial_h"], lengths=LENGTHS)
    _close(out_bf.transpose(1, 0, 2), out, np.float64)
    unbatched, _ = seq(feeds["X"][:, 0], feeds["initial_h"][:, 0])
    _close(unbatched, seq(feeds["X"][:, :1], feeds["initial_h"][:, :1])[0][:, 0], np.float64)
    # backward through the reversal: dx against a central difference of Σ out·w
    w = np.random.default_rng(3).standard_normal(out.shape)
    seq(feeds["X"], feeds["initial_h"], lengths=LENGTHS)
    dx = seq.backward(w).input
    t, b, i, eps = 1, 2, 3, 1e-6
    shifted = [feeds["X"].copy() for _ in range(2)]
    shifted[0][t, b, i] += eps
    shifted[1][t, b, i] -= eps
    f = [(seq(s, feeds["initial_h"], lengths=LENGTHS)[0] * w).sum() for s in shifted]
    assert abs((f[0] - f[1]) / (2 * eps) - dx[t, b, i]) < 1e-8
    assert {row[1] for row in lstmkit.summary(seq).rows} == {"reverse"}
    with pytest.raises(ValueError, match="reverse-direction RNN .* needs the whole sequence"):
        seq.stream()
    with pytest.raises(TypeError, match="ReverseRNN"):
        lstmkit.io.onnx.to_onnx(seq)  # no format lstmkit writes has a reverse-only RNN


def test_mixed_forward_and_reverse_nodes_are_refused():
    model, weights, feeds = _model("LSTM", np.float32, False, {}, layers=2)
    second = [n for n in model.graph.node if n.op_type == "LSTM"][1]
    next(a for a in second.attribute if a.name == "direction").s = b"forward"
    with pytest.raises(ValueError, match="one runs direction='reverse' and the other forward"):
        lstmkit.from_onnx(model)


def test_graph_input_weights_need_their_values_named():
    model, weights, feeds = _model("LSTM", np.float32, True, {})
    w = weights[0]
    with pytest.raises(ValueError, match=r"W is the graph input 'W'; pass its value: .*inputs=\{'W': array\}"):
        lstmkit.from_onnx(model)
    with pytest.raises(ValueError, match=r"R is the graph input 'R'"):
        lstmkit.from_onnx(model, inputs={"W": w["W"]})
    with pytest.raises(ValueError, match=r"inputs\['R'\]: expected shape \(1, 20, 5\) as the graph declares, "
                                         r"got \(1, 20, 4\)"):
        lstmkit.from_onnx(model, inputs={**w, "R": w["R"][:, :, :4]})
    with pytest.raises(ValueError, match=r"inputs: \['Q'\] are not inputs of the graph"):
        lstmkit.from_onnx(model, inputs={**w, "Q": w["R"]})
    with pytest.raises(TypeError, match=r"inputs\['B'\]: expected a float32 or float64 array, got dtype int64"):
        lstmkit.from_onnx(model, inputs={**w, "B": w["B"].astype(np.int64)})
    assert isinstance(lstmkit.from_onnx(model, inputs=w), ReverseRNN)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_batch_first_model_exported_by_torch_imports_as_batch_first(mode, dynamo):
    """torch.onnx.export writes a batch_first torch.nn model as input (B, T, I) -> Transpose -> node (layout 0):
    the imported layer takes the model's own (B, T, I) input (it read the node alone, seq-first, and computed
    something else without an error)."""
    import io
    import logging

    torch = pytest.importorskip("torch")
    if dynamo:
        pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    module = getattr(torch.nn, mode)(3, 5, batch_first=True).eval()
    x = torch.randn(2, 4, 3)  # (B, T, I): B != T, so a wrong layout could not pass silently either
    logging.disable(logging.WARNING)
    try:
        if dynamo:
            proto = torch.onnx.export(module, (x,), dynamo=True, verbose=False).model_proto
        else:
            f = io.BytesIO()
            torch.onnx.export(module, (x,), f, dynamo=False)
            proto = onnx.load_from_string(f.getvalue())
    finally:
        logging.disable(logging.NOTSET)
    layer = lstmkit.io.from_onnx(proto)
    assert layer.config.batch_first
    with torch.no_grad():
        want = module(x)[0].numpy()
    np.testing.assert_allclose(layer(x.numpy())[0], want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()))
    assert not lstmkit.io.from_onnx(proto, batch_first=False).config.batch_first  # the override still wins


# ------------------------------------------------------------------------------- activations' alpha and beta

def _activation_model(mode, attrs, seed=1):
    """One forward node, X (T, B, N_IN) -> Y, with the activation attributes ``attrs``."""
    w = _weights(mode, np.random.default_rng(seed), np.float32, N_IN)
    node = helper.make_node(mode, ["X", "W", "R", "B"], ["Y"], name="rnn", hidden_size=H, **attrs)
    graph = helper.make_graph([node], "activations", [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in w.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _against_onnxruntime(model):
    x = np.random.default_rng(2).standard_normal((T, B, N_IN)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    layer = lstmkit.from_onnx(model)
    _close(layer(x)[0], want[:, 0], np.float32)
    return layer


@pytest.mark.parametrize("mode,attrs,expected", [
    ("LSTM", dict(activations=["HardSigmoid", "Tanh", "Tanh"], activation_beta=[0.25]),
     (("HardSigmoid", 0.2, 0.25), ("Tanh", 0.0, 0.0), ("Tanh", 0.0, 0.0))),
    ("LSTM", dict(activations=["LeakyRelu", "HardSigmoid", "Tanh"], activation_alpha=[0.125], activation_beta=[0.75]),
     (("LeakyRelu", 0.125, 0.0), ("HardSigmoid", 0.2, 0.75), ("Tanh", 0.0, 0.0))),
    ("GRU", dict(activations=["HardSigmoid", "ScaledTanh"], activation_alpha=[0.25, 0.5],
                 activation_beta=[0.375, 1.5]), (("HardSigmoid", 0.25, 0.375), ("ScaledTanh", 0.5, 1.5))),
], ids=["beta-alone", "alpha-taken-by-another", "both-lists-shared"])
def test_alpha_and_beta_are_two_lists_each_in_the_order_of_their_users(mode, attrs, expected):
    """activation_beta with no alpha left was put in the alpha slot (HardSigmoid(0.25, 0.5) for (0.2, 0.25))."""
    assert _against_onnxruntime(_activation_model(mode, attrs)).config.activations == expected


@pytest.mark.parametrize("slot", [0, 1, 2])
@pytest.mark.parametrize("name", ["ThresholdedRelu", "ScaledTanh", "Affine"])
def test_omitted_alpha_beta_where_onnxruntime_reads_zero_are_refused(name, slot):
    """onnxruntime reads an omitted α/β of these as 0.0, the ONNX operators' default (lstmkit's) is 1.0."""
    names = ["Sigmoid", "Tanh", "Tanh"]
    names[slot] = name
    missing = "activation_alpha" if name == "ThresholdedRelu" else "activation_alpha or activation_beta"
    with pytest.raises(ValueError, match=rf"LSTM node 'rnn': activations: {name} has no {missing} value left; give "
                                         r"it explicitly \(onnxruntime reads an omitted one as 0.0"):
        lstmkit.from_onnx(_activation_model("LSTM", dict(activations=names)))
    if name != "ThresholdedRelu":  # α given, β omitted
        with pytest.raises(ValueError, match=rf"{name} has no activation_beta value left"):
            lstmkit.from_onnx(_activation_model("LSTM", dict(activations=names, activation_alpha=[0.5])))


@pytest.mark.parametrize("names", [["LeakyRelu", "Tanh", "Tanh"], ["HardSigmoid", "Elu", "Tanh"],
                                   ["Sigmoid", "Tanh", "Elu"]])
def test_omitted_alpha_beta_defaults_agree_with_onnxruntime(names):
    """LeakyRelu, HardSigmoid and Elu keep the ONNX defaults, which onnxruntime applies too."""
    _against_onnxruntime(_activation_model("LSTM", dict(activations=names)))


# --------------------------------------------------------------------------------------- evaluation mode

def test_imported_layers_are_in_evaluation_mode(tmp_path):
    """An ONNX graph is an evaluation forward: dropout, zoneout and recurrent dropout that lstmkit's metadata
    restores must not run when the imported layer is called (they did: the layer came back training)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, N_IN)).astype(np.float32)
    scan = lstmkit.LSTM(N_IN, H, 2, dropout=0.5, zoneout=(0.3, 0.2), seed=0).eval()  # a Scan export
    nodes = lstmkit.GRU(N_IN, H, 2, dropout=0.5, recurrent_dropout=0.3, seed=0).eval()  # LSTM/GRU nodes
    for source in (scan, nodes):
        proto = lstmkit.to_onnx(source)
        want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"input": x})[0]
        for back in (lstmkit.from_onnx(proto), lstmkit.io.onnx.load(lstmkit.io.onnx.save(source, tmp_path / "m.onnx",
                                                                                          overwrite=True))):
            assert not back.training and back.config.dropout == 0.5
            _close(back(x)[0], want, np.float32)
            _close(back(x)[0], want, np.float32)  # no mask drawn on a second call either
    assert not lstmkit.from_onnx(lstmkit.to_onnx(lstmkit.LSTMCell(N_IN, H, seed=0))).training
    model, weights, feeds = _model("GRU", np.float32, False, {})
    reverse = lstmkit.from_onnx(model)
    assert isinstance(reverse, ReverseRNN) and not reverse.training and not reverse.layer.training
