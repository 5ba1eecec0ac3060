"""A module's inference call runs the operator's computation without torch's dispatcher in plain eager mode
(lstmkit.torch.ops._undispatched): the same bits as through the operator, and the operator itself whenever
something may want to see it (a dispatch or torch-function mode, tracing, torch.func, autograd)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lstmkit.torch as lt  # noqa: E402
from lstmkit.torch import ops  # noqa: E402
from dispatch_log import SeenOps  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402


def _cases():
    torch.manual_seed(0)
    x = torch.randn(7, 3, 5)
    lengths = torch.tensor([7, 2, 5])
    h = torch.randn(3, 6)
    return [
        ("LSTM", lt.LSTM(5, 6, num_layers=2, proj_size=4), lambda m: m(x), "lstmkit.rnn"),
        ("LSTM lengths", lt.LSTM(5, 6, batch_first=True), lambda m: m(x.transpose(0, 1), lengths=lengths),
         "lstmkit.rnn"),
        ("GRU", lt.GRU(5, 6, bidirectional=True), lambda m: m(x), "lstmkit.rnn"),
        ("peephole", lt.LSTM(5, 6, peephole=True, layer_norm=True), lambda m: m(x), "lstmkit.rnn"),
        ("LSTMCell", lt.LSTMCell(5, 6), lambda m: m(x[0], (h, h)), "lstmkit.rnn_step"),
        ("GRUCell", lt.GRUCell(5, 6), lambda m: m(x[0], h), "lstmkit.rnn_step"),
    ]


def _flat(result):
    out = []
    for r in result if isinstance(result, tuple) else (result,):
        out += _flat(r) if isinstance(r, tuple) else [r]
    return out


@pytest.mark.parametrize("name", [c[0] for c in _cases()])
@pytest.mark.parametrize("context", ["inference_mode", "no_grad", "eval, grad on"])
def test_same_bits_as_the_operator(name, context):
    _, module, run, op = next(c for c in _cases() if c[0] == name)
    module.eval()
    cm = {"inference_mode": torch.inference_mode, "no_grad": torch.no_grad, "eval, grad on": torch.enable_grad}[context]
    with cm():
        assert ops._undispatched([torch.zeros(1)] + list(module.parameters())) == (context != "eval, grad on")
        fast = _flat(run(module))
        mode = SeenOps()
        with mode:  # a dispatch mode: the operator itself runs, and is seen
            slow = _flat(run(module))
    assert any(op in f for f in mode.names), mode.names
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
        assert a.requires_grad == b.requires_grad


def test_every_other_context_keeps_the_operator():
    x = torch.randn(4, 2, 3)
    params = [torch.zeros(2)]
    with torch.no_grad():
        assert ops._undispatched([x, *params])
        with TorchFunctionMode():
            assert not ops._undispatched([x, *params])
        with SeenOps():
            assert not ops._undispatched([x, *params])
        assert not ops._undispatched([x, torch.nn.Parameter(torch.zeros(2)).to("meta")])
    assert not ops._undispatched([x, torch.zeros(2, requires_grad=True)])  # autograd records
    assert ops._undispatched([x, None])
