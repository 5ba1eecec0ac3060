"""torch.onnx.export of models holding lstmkit.torch modules, with both exporters, run by onnxruntime; and the
eval-mode graph of torch.export holds no training operator.

Tolerance (float32): ONNX Runtime's LSTM/GRU kernels sum in another order than lstmkit's engine; each output is
a chain of T steps of dot products of I + H terms, so the difference is a few hundred float32 roundings
(6e-8 each) at most: 1e-5 of the output's scale leaves a margin of ~10× over what is seen (≤ 5e-7).
"""
from __future__ import annotations

import io
import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import lstmkit.torch as lt  # noqa: E402

RTOL = 1e-5


class Net(torch.nn.Module):
    """A model holding an lstmkit RNN and a torch layer: outputs (head(output), every final state)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn
        self.head = torch.nn.Linear(rnn.config.num_directions * rnn.config.output_size, 2)

    def forward(self, x, lengths=None):
        out, state = self.rnn(x, lengths=lengths)
        return (self.head(out),) + (tuple(state) if isinstance(state, tuple) else (state,))


NODES = {  # configurations an ONNX LSTM/GRU node expresses
    "lstm_2layer_bidir": lambda: lt.LSTM(3, 5, 2, bidirectional=True),
    "gru_batch_first_nobias": lambda: lt.GRU(3, 5, batch_first=True, bias=False),
    "lstm_peephole_clip_activations": lambda: lt.LSTM(3, 5, peephole=True, clip=1.5, bidirectional=True,
                                                      activations=("HardSigmoid", ("ScaledTanh", 1.2, 0.8),
                                                                   "Softsign")),
    "lstm_input_forget": lambda: lt.LSTM(3, 5, input_forget=True, activations=(("LeakyRelu", 0.1), "Tanh", "Tanh")),
    "gru_before_reset_clip": lambda: lt.GRU(3, 5, 2, linear_before_reset=False, clip=2.0),
}
SCANS = {  # the ONNX ops lack these: dynamo writes the equations' time loop as an ONNX Scan
    "lstm_proj": lambda: lt.LSTM(3, 5, proj_size=2, bidirectional=True),
    "lstm_layer_norm_zoneout_2layer": lambda: lt.LSTM(3, 5, 2, layer_norm=True, zoneout=(0.2, 0.1), peephole=True),
    "gru_layer_norm_zoneout": lambda: lt.GRU(3, 5, layer_norm=True, zoneout=(0.0, 0.2), bidirectional=True),
}


def _model(make, seed=0):
    torch.manual_seed(seed)
    return Net(make()).eval()


def _export(model, args, dynamo, **options):
    logging.disable(logging.WARNING)  # the dynamo exporter logs every skipped torchvision op
    try:
        if dynamo:
            pytest.importorskip("onnxscript")
            return torch.onnx.export(model, args, dynamo=True, verbose=False, **options).model_proto
        f = io.BytesIO()
        torch.onnx.export(model, args, f, dynamo=False, **options)
        return onnx.load_from_string(f.getvalue())
    finally:
        logging.disable(logging.NOTSET)


def _check(proto, model, args):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), args)}
    got = session.run(None, feeds)
    with torch.no_grad():
        want = [t.numpy() for t in model(*args)]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=RTOL * max(1.0, np.abs(w).max()))


def _args(model, T=6, lengths=None):
    B = 3
    c = model.rnn.config
    x = torch.randn((B, T, 3) if c.batch_first else (T, B, 3), generator=torch.Generator().manual_seed(1))
    return (x,) if lengths is None else (x, torch.tensor(lengths))


@pytest.mark.parametrize("lengths", [None, [6, 2, 4]], ids=["full", "lengths"])
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("case", list(NODES))
def test_export_writes_lstm_gru_nodes(case, dynamo, lengths):
    model = _model(NODES[case])
    args = _args(model, lengths=lengths)
    proto = _export(model, args, dynamo)
    c = model.rnn.config
    assert [n.op_type for n in proto.graph.node if n.op_type in ("LSTM", "GRU")] == [c.mode] * c.num_layers
    assert not [n for n in proto.graph.node if n.domain not in ("", "ai.onnx")]  # standard ops only
    _check(proto, model, args)


class NetState(torch.nn.Module):
    """The RNN given lengths and an initial state: outputs (output, every final state)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, lengths, *state):
        out, final = self.rnn(x, state if len(state) == 2 else state[0], lengths=lengths)
        return (out,) + (tuple(final) if isinstance(final, tuple) else (final,))


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("case", list(NODES))
def test_export_keeps_the_initial_state_of_an_empty_sequence(case, dynamo):
    """ONNX's node (as onnxruntime runs it) gives a sequence of length 0 zero final states; lstmkit (like torch's
    packed sequences) gives it its initial state, and so does the exported graph."""
    torch.manual_seed(0)
    model = NetState(NODES[case]()).eval()
    c = model.rnn.config
    g = torch.Generator().manual_seed(3)
    x = _args(Net(model.rnn), lengths=[6, 0, 4])
    k = c.num_layers * c.num_directions
    state = [torch.randn(k, 3, c.hidden_size, generator=g) for _ in range(2 if c.mode == "LSTM" else 1)]
    args = (*x, *state)
    with torch.no_grad():
        final = model(*args)[1:]
    assert all(torch.equal(f[:, 1], s[:, 1]) for f, s in zip(final, state))
    _check(_export(model, args, dynamo), model, args)


@pytest.mark.parametrize("case", ["lstm_2layer_bidir", "lstm_peephole_clip_activations"])
def test_dynamo_export_with_dynamic_time_runs_other_lengths(case):
    model = _model(NODES[case])
    T = torch.export.Dim("T", min=2, max=64)
    proto = _export(model, _args(model), True, dynamic_shapes=({0: T},))
    for steps in (2, 11):
        _check(proto, model, _args(model, T=steps))


@pytest.mark.parametrize("case", list(SCANS))
def test_dynamo_export_of_options_without_a_node_is_a_scan(case):
    """proj_size / layer_norm / zoneout: one ONNX Scan per layer and direction, with a dynamic time dimension
    (checked at other lengths, with lengths)."""
    model = _model(SCANS[case])
    T = torch.export.Dim("T", min=2, max=64)
    proto = _export(model, _args(model, lengths=[6, 2, 4]), True, dynamic_shapes=({0: T}, None))
    c = model.rnn.config
    assert [n.op_type for n in proto.graph.node].count("Scan") == c.num_layers * c.num_directions
    assert not [n for n in proto.graph.node if n.op_type in ("LSTM", "GRU")]
    for steps, lengths in ((6, [6, 2, 4]), (11, [3, 11, 7]), (2, [2, 1, 2])):
        _check(proto, model, _args(model, T=steps, lengths=lengths))


@pytest.mark.parametrize("case", list(SCANS))
def test_torchscript_export_refuses_options_without_a_node(case):
    model = _model(SCANS[case])
    with pytest.raises(ValueError, match="proj_size, layer_norm and zoneout have no ONNX LSTM/GRU node"):
        _export(model, _args(model), False)


class PackedNet(torch.nn.Module):
    """pack -> an lstmkit RNN -> pad, as torch.nn users write it."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, lengths):
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        out, _ = self.rnn(pack_padded_sequence(x, lengths, enforce_sorted=False))
        return pad_packed_sequence(out)[0]


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_a_packed_sequence_export_is_refused_naming_lengths(dynamo):
    """torch's exporter reads pack/pad pairs around torch.nn's own RNNs only: lstmkit's module says so and names
    lengths= (once a dump of the internal graph, "these operations must occur in pairs")."""
    model = PackedNet(lt.LSTM(3, 5)).eval()
    with pytest.raises(Exception, match="export the padded input with lengths="):
        _export(model, (torch.randn(6, 3, 3), torch.tensor([6, 2, 4])), dynamo)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_training_mode_export_with_masks_is_refused(dynamo):
    """The masks would be frozen into the graph: refused with lstmkit's message by both exporters."""
    model = Net(lt.LSTM(3, 5, recurrent_dropout=0.3)).train()
    with pytest.raises(Exception, match="export the model in eval mode"):
        _export(model, _args(model), dynamo, **({} if dynamo else {"training": torch.onnx.TrainingMode.TRAINING}))


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_cells_export(mode, dynamo):
    """dynamo: torch's cell kernels traced; TorchScript: lstmkit::rnn_step translated to a one-step node."""
    cell = (lt.LSTMCell if mode == "LSTM" else lt.GRUCell)(3, 4)
    x = torch.randn(2, 3)
    proto = _export(cell, (x,), dynamo)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    want = cell(x)
    want = [t.detach().numpy() for t in (want if mode == "LSTM" else (want,))]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=RTOL)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_bare_module_exports_as_torch_nn_does(mode):
    """The module itself, not wrapped in a model, exports as a torch.nn.LSTM/GRU does with the TorchScript exporter,
    which passes every forward parameter with a default positionally (lengths included): a keyword-only lengths
    refused it with a TypeError. Its output is torch.nn's. (The dynamo exporter passes only the given arguments.)"""
    dynamo = False
    torch.manual_seed(3)
    module = getattr(lt, mode)(3, 4, num_layers=2).eval()
    reference = getattr(torch.nn, mode)(3, 4, num_layers=2).eval()
    reference.load_state_dict(module.state_dict())
    x = torch.randn(6, 2, 3)
    for m in (module, reference):
        proto = _export(m, (x,), dynamo)
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        np.testing.assert_allclose(got, reference(x)[0].detach().numpy(), rtol=0, atol=RTOL)


@pytest.mark.parametrize("variant", [{}, {"peephole": True, "zoneout": (0.1, 0.1)}], ids=["plain", "variant"])
def test_eval_mode_export_holds_no_training_op(variant):
    model = Net(lt.LSTM(3, 5, 2, **variant))
    x = _args(model)[0]
    targets = {str(n.target) for n in torch.export.export(model.eval(), (x,)).graph.nodes if n.op == "call_function"}
    assert not [t for t in targets if t.startswith("lstmkit.") and "train" in t], targets
    assert [t for t in targets if t.startswith("lstmkit.")]  # the inference operator is there
    trained = {str(n.target) for n in torch.export.export(model.train(), (x,)).graph.nodes if n.op == "call_function"}
    assert "lstmkit.rnn_train.default" in trained  # training mode keeps the workspace-saving op (the
    # assertion above can fail)
