"""The variant options through ONNX: exported graphs run by onnxruntime equal the reference (evaluation
mode), lstmkit's own exports read back with the exact config, and foreign nodes with ONNX's variant
attributes (clip, activations with α/β, input_forget, peepholes, linear_before_reset=0) import right."""
import numpy as np
import pytest

import lstmkit
from lstmkit.io.onnx import from_onnx, session, to_onnx

pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

# (mode, options): each ONNX attribute alone, the Scan-body options alone, and mixtures
CASES = [
    ("LSTM", dict(peephole=True)),
    ("LSTM", dict(input_forget=True)),
    ("LSTM", dict(clip=0.5)),
    ("LSTM", dict(activations=("HardSigmoid", "Softsign", ("ScaledTanh", 0.7, 1.3)))),
    ("LSTM", dict(activations=(("LeakyRelu", 0.1), "Elu", ("Affine", 0.5, 0.25)), clip=2.0)),
    ("LSTM", dict(activations=("Sigmoid", ("ThresholdedRelu", 0.2), "Softplus"))),
    ("LSTM", dict(peephole=True, input_forget=True, clip=1.0)),
    ("LSTM", dict(recurrent_dropout=0.3, forget_bias=1.0)),  # training-only: the graph is plain
    ("LSTM", dict(layer_norm=True)),
    ("LSTM", dict(zoneout=(0.2, 0.1), peephole=True, clip=1.5)),
    ("LSTM", dict(proj_size=3, layer_norm=True, zoneout=(0.1, 0.3), activations=("HardSigmoid", "Tanh", "Softsign"))),
    ("GRU", dict(linear_before_reset=False)),
    ("GRU", dict(clip=0.3, activations=("HardSigmoid", "Softplus"))),
    ("GRU", dict(layer_norm=True, zoneout=(0.0, 0.3))),
    ("GRU", dict(linear_before_reset=False, zoneout=(0.0, 0.2), bias=False)),
]


def _layer(mode, options, bidirectional, seed=1):
    rng = np.random.default_rng(seed)
    options = dict(options)
    bias = options.pop("bias", True)
    layer = getattr(lstmkit, mode)(4, 6, num_layers=2, bias=bias, bidirectional=bidirectional, seed=seed, **options)
    for name, value in layer.params.items():  # peepholes and LN parameters away from their 0/1 start
        if name.startswith(("peephole", "ln_")):
            layer.params[name] = (value + rng.normal(0, 0.3, value.shape)).astype(np.float32)
    return layer.eval()


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("mode,options", CASES, ids=[f"{m}-{'-'.join(o)}" for m, o in CASES])
def test_exported_variant_runs_in_onnxruntime_like_the_reference(mode, options, bidirectional):
    layer = _layer(mode, options, bidirectional)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 3, 4)).astype(np.float32)
    lengths = np.array([7, 3, 5])
    k, P = layer.config.num_layers * layer.config.num_directions, layer.config.output_size
    hx = [rng.standard_normal((k, 3, P)).astype(np.float32)]
    hx += [rng.standard_normal((k, 3, 6)).astype(np.float32)] if mode == "LSTM" else []
    out, state = layer(x, hx=tuple(hx) if mode == "LSTM" else hx[0], lengths=lengths)
    feeds = {"input": x, "lengths": lengths, "h0": hx[0], **({"c0": hx[1]} if mode == "LSTM" else {})}
    got = session(to_onnx(layer, lengths=True, initial_state=True)).run(None, feeds)
    expected = [out, *(state if isinstance(state, tuple) else (state,))]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=2e-6)

    back = from_onnx(to_onnx(layer))
    assert back.config == layer.config
    for name, value in layer.params.items():
        np.testing.assert_array_equal(back.params[name], value)


@pytest.mark.parametrize("mode,options", [CASES[6], CASES[10], CASES[11]], ids=["peephole", "scan", "gru"])
def test_streaming_export_of_a_variant_steps_like_the_sequence(mode, options):
    layer = _layer(mode, options, False)
    x = np.random.default_rng(3).standard_normal((5, 2, 4)).astype(np.float32)
    out, _ = layer(x)
    sess = session(to_onnx(layer, streaming=True))
    P = layer.config.output_size
    state = {"h0": np.zeros((2, 2, P), np.float32),
             **({"c0": np.zeros((2, 2, 6), np.float32)} if mode == "LSTM" else {})}
    for t in range(5):
        y, *new = sess.run(None, {"input": x[t], **state})
        np.testing.assert_allclose(y, out[t], rtol=1e-5, atol=2e-6)
        state = dict(zip(state, new))


def _node_model(op, attrs, inputs):
    """A one-node graph as a foreign exporter writes it: X plus constant W, R, B[, sequence_lens, h0, c0], P."""
    names = ["X"] + [name if value is not None else "" for name, value in inputs]
    inits = [numpy_helper.from_array(v, n) for n, v in inputs if v is not None]
    node = helper.make_node(op, names, ["Y", "Y_h"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("op,attrs,peephole", [
    ("LSTM", dict(clip=0.7, activations=["HardSigmoid", "Tanh", "ScaledTanh"], activation_alpha=[0.3, 0.9],
                  activation_beta=[0.6, 1.1]), True),
    ("LSTM", dict(input_forget=1, activations=["Sigmoid", "LeakyRelu", "Tanh"], activation_alpha=[0.05]), False),
    ("GRU", dict(clip=1.2, activations=["Sigmoid", "Softsign"]), False),  # linear_before_reset absent: 0
    ("GRU", dict(linear_before_reset=1, activations=["HardSigmoid", "Elu"], activation_alpha=[0.25, 0.8],
                 activation_beta=[0.4]), False),
])
def test_foreign_nodes_with_variant_attributes_import_and_agree_with_onnxruntime(op, attrs, peephole):
    rng = np.random.default_rng(5)
    G, H, I = (4 if op == "LSTM" else 3), 5, 3
    W = rng.uniform(-0.6, 0.6, (1, G * H, I)).astype(np.float32)
    R = rng.uniform(-0.6, 0.6, (1, G * H, H)).astype(np.float32)
    B = rng.uniform(-0.6, 0.6, (1, 2 * G * H)).astype(np.float32)
    P = rng.uniform(-0.6, 0.6, (1, 3 * H)).astype(np.float32) if peephole else None
    optional = [("seq", None), ("h0", None), ("c0", None), ("P", P)] if P is not None else []
    inputs = [("W", W), ("R", R), ("B", B)] + optional
    model = _node_model(op, dict(hidden_size=H, **attrs), inputs)
    x = rng.standard_normal((6, 2, I)).astype(np.float32)
    y, y_h = session(model).run(None, {"X": x})
    layer = from_onnx(model).eval()
    assert layer.config.peephole == peephole
    out, state = layer(x)
    np.testing.assert_allclose(out, y[:, 0], rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(state[0] if isinstance(state, tuple) else state, y_h, rtol=1e-5, atol=2e-6)


def test_lstmkit_torch_variant_modules_convert_with_their_options():
    torch = pytest.importorskip("torch")
    import lstmkit.torch as lt

    gru = lt.GRU(6, 8, linear_before_reset=False, recurrent_dropout=0.25, clip=3.0,
                 activations=("HardSigmoid", ("ScaledTanh", 1.7, 0.67))).eval()
    lstm = lt.LSTM(6, 8, peephole=True, layer_norm=True, zoneout=(0.1, 0.2), bidirectional=True).eval()
    x = torch.randn(5, 2, 6)
    for module in (gru, lstm):
        layer = lstmkit.from_torch(module)
        assert layer.config == module.config
        with torch.no_grad():
            expected = module(x)[0].numpy()
        np.testing.assert_allclose(layer.eval()(x.numpy())[0], expected, rtol=1e-5, atol=1e-6)
        got = session(to_onnx(module)).run(None, {"input": x.numpy()})[0]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6)
