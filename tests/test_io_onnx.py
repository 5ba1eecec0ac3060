"""ONNX leg: every export runs in onnxruntime and matches lstmkit's reference; imports of torch.onnx.export
graphs and hand-built tf2onnx-style nodes; streaming models; refused bad files."""
import io as pyio
import warnings

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import lstmkit
from lstmkit.io import onnx as lkonnx
from lstmkit.io.gates import reorder

RTOL, ATOL = 1e-5, 1e-6  # float32, stated tolerance for every ONNX Runtime comparison

SWEEP = [
    ("LSTM", dict()),
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(proj_size=3)),
    ("LSTM", dict(num_layers=2, bidirectional=True, proj_size=3, batch_first=True)),
    ("LSTM", dict(bias=False, batch_first=True)),
    ("GRU", dict()),
    ("GRU", dict(num_layers=2, bidirectional=True, batch_first=True)),
    ("GRU", dict(bias=False, num_layers=2)),
]
IDS = [m + "".join(f"-{k}={v}" for k, v in kw.items()) for m, kw in SWEEP]


def make(mode, kw, seed=0):
    return getattr(lstmkit, mode)(4, 6, seed=seed, backend="reference", **kw)


def sequence_inputs(layer, T=7, B=3, seed=1):
    rng = np.random.default_rng(seed)
    c = layer.config
    x = rng.standard_normal((B, T, 4) if c.batch_first else (T, B, 4)).astype(np.float32)
    k = c.num_layers * c.num_directions
    h0 = rng.standard_normal((k, B, c.output_size)).astype(np.float32)
    c0 = rng.standard_normal((k, B, c.hidden_size)).astype(np.float32)
    return x, h0, c0, np.array([T, 0, 2], np.int64)[:B]  # a sequence of length 0 keeps its initial state


def flat(mode, result):
    out, state = result
    return [out, *state] if mode == "LSTM" else [out, state]


@pytest.mark.parametrize("mode,kw", SWEEP, ids=IDS)
def test_sequence_export_runs_in_onnxruntime_with_lengths_and_state(mode, kw):
    layer = make(mode, kw)
    x, h0, c0, lengths = sequence_inputs(layer)
    hx = (h0, c0) if mode == "LSTM" else h0
    expected = flat(mode, layer(x, hx, lengths=lengths))
    feeds = {"input": x, "lengths": lengths, "h0": h0, **({"c0": c0} if mode == "LSTM" else {})}
    got = lkonnx.session(lstmkit.to_onnx(layer, lengths=True, initial_state=True)).run(None, feeds)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL)
    plain = lkonnx.session(lstmkit.to_onnx(layer)).run(None, {"input": x})
    for g, e in zip(plain, flat(mode, layer(x))):
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("mode,kw", SWEEP, ids=IDS)
def test_onnx_round_trip_is_exact(mode, kw, tmp_path):
    layer = make(mode, kw)
    path = lkonnx.save(layer, tmp_path / "m.onnx")
    back = lstmkit.io.read(path)
    assert back.config == layer.config
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v, err_msg=k)


@pytest.mark.parametrize("mode,kw", [s for s in SWEEP if not s[1].get("bidirectional")],
                         ids=[i for s, i in zip(SWEEP, IDS) if not s[1].get("bidirectional")])
def test_streaming_export_steps_through_the_sequence(mode, kw):
    layer = make(mode, kw)
    x, h0, c0, _ = sequence_inputs(layer)
    expected = flat(mode, layer(x, (h0, c0) if mode == "LSTM" else h0))
    steps = x.transpose(1, 0, 2) if layer.config.batch_first else x
    session = lkonnx.session(lstmkit.to_onnx(layer, streaming=True))
    state = {"h0": h0, **({"c0": c0} if mode == "LSTM" else {})}
    outputs = []
    for x_t in steps:
        out, *new_state = session.run(None, {"input": x_t, **state})
        state = dict(zip(state, new_state))
        outputs.append(out)
    outputs = np.stack(outputs, 1 if layer.config.batch_first else 0)
    np.testing.assert_allclose(outputs, expected[0], rtol=RTOL, atol=ATOL)
    for got, e in zip(state.values(), expected[1:]):
        np.testing.assert_allclose(got, e, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("cls", ["LSTMCell", "GRUCell"])
def test_cells_export_as_one_step_models(cls):
    cell = getattr(lstmkit, cls)(4, 6, seed=0)
    rng = np.random.default_rng(0)
    x, h, c = (rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (3, 6), (3, 6)))
    lstm = cls == "LSTMCell"
    model = lstmkit.to_onnx(cell)
    got = lkonnx.session(model).run(None, {"input": x, "h0": h, **({"c0": c} if lstm else {})})
    expected = cell(x, (h, c)) if lstm else (cell(x, h),)
    for g, e in zip(got[1:], expected):
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL)
    assert type(lstmkit.from_onnx(model)).__name__ == cls


def test_bidirectional_streaming_is_refused():
    with pytest.raises(ValueError, match="bidirectional"):
        lstmkit.to_onnx(lstmkit.LSTM(2, 3, bidirectional=True), streaming=True)


def test_flags_a_graph_cannot_hold_are_refused_by_name():
    """lengths / initial_state with a one-step model (streaming, a cell) were ignored: the graph had no lengths
    input, which onnxruntime then called unknown; an opset below what the ops need failed in the onnx checker."""
    for model, kw in [(lstmkit.LSTM(2, 3), dict(streaming=True)), (lstmkit.GRUCell(2, 3), {})]:
        for flag in ("lengths", "initial_state"):
            with pytest.raises(ValueError, match=f"{flag}: a .* takes one step"):
                lstmkit.to_onnx(model, **kw, **{flag: True})
    with pytest.raises(ValueError, match="opset: expected an int >= 17 .*LayerNormalization.*got 13"):
        lstmkit.to_onnx(lstmkit.LSTM(2, 3, layer_norm=True), opset=13)
    with pytest.raises(ValueError, match="opset: expected an int >= 13 .*got 7"):
        lstmkit.to_onnx(lstmkit.GRU(2, 3), opset=7)
    assert lstmkit.to_onnx(lstmkit.GRU(2, 3), opset=13).opset_import[0].version == 13


@pytest.mark.parametrize("mode,kw", [("LSTM", dict(num_layers=2, bidirectional=True)), ("GRU", dict(num_layers=2)),
                                     ("LSTM", dict(batch_first=True, bias=False))])
def test_imports_torch_onnx_export_graphs(mode, kw):
    torch.manual_seed(0)
    module = getattr(torch.nn, mode)(4, 6, **kw).eval()
    x = torch.randn(3, 7, 4) if kw.get("batch_first") else torch.randn(7, 3, 4)
    f = pyio.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), f, dynamo=False, opset_version=17)
    # torch transposes batch_first inputs in the graph, so the nodes say layout=0: batch_first is ours to give
    layer = lstmkit.io.onnx.from_onnx(f.getvalue(), batch_first=kw.get("batch_first", False))
    assert (layer.config.num_layers, layer.config.bidirectional) == (kw.get("num_layers", 1),
                                                                     kw.get("bidirectional", False))
    with torch.no_grad():
        expected = module(x)[0].numpy()
    np.testing.assert_allclose(layer(x.numpy())[0], expected, rtol=RTOL, atol=ATOL)


def tf2onnx_style_lstm(layer, layout=0):
    """A graph like tf2onnx writes: Constant-node weights, layout attribute, sequence_lens input unused."""
    p = layer.state_dict()
    W = reorder(p["weight_ih_l0"], "LSTM", "torch", "onnx")[None]
    R = reorder(p["weight_hh_l0"], "LSTM", "torch", "onnx")[None]
    B = np.concatenate([reorder(p["bias_ih_l0"], "LSTM", "torch", "onnx"),
                        reorder(p["bias_hh_l0"], "LSTM", "torch", "onnx")])[None]
    consts = [helper.make_node("Constant", [], [n], value=numpy_helper.from_array(v, n))
              for n, v in (("W", W), ("R", R), ("B", B))]
    lstm = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Y_h"], hidden_size=6, layout=layout,
                            activations=["Sigmoid", "Tanh", "Tanh"], name="lstm")
    shape = ["batch", "time"] if layout else ["time", "batch"]
    graph = helper.make_graph(consts + [lstm], "tf2onnx_like",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, shape + [4])],
                              [helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_imports_constant_node_weights_and_layout_attribute():
    layer = lstmkit.LSTM(4, 6, seed=3)
    x = np.random.default_rng(0).standard_normal((3, 5, 4)).astype(np.float32)
    for layout in (0, 1):
        back = lstmkit.from_onnx(tf2onnx_style_lstm(layer, layout))
        assert back.config.batch_first == bool(layout)
        xin = x if layout else x.transpose(1, 0, 2)
        np.testing.assert_allclose(back(xin)[0], layer(x.transpose(1, 0, 2))[0].transpose(1, 0, 2) if layout
                                   else layer(xin)[0], rtol=RTOL, atol=ATOL)


def _single_node_model(op, attrs, W, R, B=None):
    inits = [numpy_helper.from_array(v, n) for n, v in (("W", W), ("R", R), ("B", B)) if v is not None]
    node = helper.make_node(op, ["X", "W", "R"] + (["B"] if B is not None else []), ["Y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph)


def test_bad_onnx_files_are_refused_clearly(tmp_path):
    good = lkonnx.save(lstmkit.LSTM(3, 4, seed=0), tmp_path / "good.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(ValueError, match="truncated.onnx"):
        lkonnx.load(truncated)

    relu = helper.make_graph([helper.make_node("Relu", ["X"], ["Y"])], "g",
                             [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
                             [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    with pytest.raises(ValueError, match=r"no LSTM or GRU node .*Relu"):
        lstmkit.from_onnx(helper.make_model(relu))

    z = np.zeros
    two = _single_node_model("LSTM", dict(hidden_size=2, direction="bidirectional",
                                          activations=["Sigmoid", "Tanh", "Tanh", "Sigmoid", "Relu", "Tanh"]),
                             z((2, 8, 3), np.float32), z((2, 8, 2), np.float32))
    with pytest.raises(ValueError, match="two directions use different activations"):
        lstmkit.from_onnx(two)
    unknown = _single_node_model("GRU", dict(hidden_size=2, activations=["Sigmoid", "Gelu"]),
                                 z((1, 6, 3), np.float32), z((1, 6, 2), np.float32))
    with pytest.raises(ValueError, match="activations: expected one of"):
        lstmkit.from_onnx(unknown)
    wrong = _single_node_model("LSTM", dict(hidden_size=2), z((1, 8, 3), np.float32), z((1, 8, 5), np.float32))
    with pytest.raises(ValueError, match="do not fit hidden_size=2"):
        lstmkit.from_onnx(wrong)
    sideways = _single_node_model("LSTM", dict(hidden_size=2, direction="sideways"), z((1, 8, 3), np.float32),
                                  z((1, 8, 2), np.float32))
    with pytest.raises(ValueError, match="direction: expected 'forward', 'reverse' or 'bidirectional'"):
        lstmkit.from_onnx(sideways)
