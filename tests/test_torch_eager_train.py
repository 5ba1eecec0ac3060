"""A sequence module's training call in plain eager mode runs ``rnn_train``'s and ``rnn_backward``'s computation
through ``ops._EagerTrain`` (an autograd.Function) instead of the operators' registered autograd: the same bits
as through the operators (run here under a dispatch mode, which keeps them), every gradient, and the operators
wherever something may want to see them."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import lstmkit.torch as lt  # noqa: E402
from lstmkit import engine  # noqa: E402
from lstmkit.torch import ops  # noqa: E402
from dispatch_log import SeenOps  # noqa: E402

pytestmark = pytest.mark.skipif(not engine.available(), reason="trains natively only with the engine")

D = torch.float64
CASES = {
    "LSTM": lambda: lt.LSTM(3, 5, dtype=D),
    "GRU bidirectional lengths": lambda: lt.GRU(3, 5, bidirectional=True, dtype=D),
    "LSTM 2 layers dropout proj": lambda: lt.LSTM(3, 5, num_layers=2, dropout=0.3, proj_size=2, dtype=D),
    "LSTM variants": lambda: lt.LSTM(3, 5, peephole=True, layer_norm=True, zoneout=(0.2, 0.1),
                                     recurrent_dropout=0.2, dtype=D),
    "GRU 2 layers variants": lambda: lt.GRU(3, 5, num_layers=2, dropout=0.2, layer_norm=True, zoneout=(0.0, 0.2),
                                            dtype=D),
}


def _run(module, x, lengths, uses):
    """Seeded forward (the masks) and the gradients of x, h0 and every parameter."""
    torch.manual_seed(7)
    h0 = torch.randn(module.num_layers * (2 if module.bidirectional else 1), x.shape[1], module.proj_size or
                     module.hidden_size, dtype=D, requires_grad=True)
    hx = h0 if module.mode == "GRU" else (h0, torch.zeros(h0.shape[0], x.shape[1], module.hidden_size, dtype=D))
    out, state = module(x, hx, lengths=lengths)
    finals = state if isinstance(state, tuple) else (state,)
    loss = sum(w * t.square().sum() for w, t in zip(uses, (out, *finals)))
    grads = torch.autograd.grad(loss, [x, h0, *module.parameters()])
    return [out.detach(), *(f.detach() for f in finals), *grads]


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("uses", [(1.0, 0.5, 0.25), (0.0, 1.0, 0.0)], ids=["all outputs", "h_n only"])
def test_eager_training_gives_the_operators_bits(name, uses, monkeypatch):
    torch.manual_seed(0)
    module = CASES[name]().train()
    x = torch.randn(6, 3, 3, dtype=D, requires_grad=True)
    lengths = torch.tensor([6, 2, 4]) if "lengths" in name else None
    applied = []
    original = ops._EagerTrain.apply
    monkeypatch.setattr(ops._EagerTrain, "apply", lambda *a: applied.append(1) or original(*a))
    eager = _run(module, x, lengths, uses)
    assert applied, "the eager path was not taken"
    seen = SeenOps()
    with seen:  # a dispatch mode: the operators run, and are seen
        through_ops = _run(module, x, lengths, uses)
    assert "lstmkit.rnn_train.default" in seen.names and "lstmkit.rnn_backward.default" in seen.names
    assert len(applied) == 1
    for a, b in zip(eager, through_ops):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_eager_training_gradcheck_and_double_backward():
    torch.manual_seed(1)
    module = lt.LSTM(2, 3, num_layers=2, peephole=True, dtype=D).train()
    x = torch.randn(4, 2, 2, dtype=D, requires_grad=True)

    def f(x, *params):
        return module(x)[0]

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_training_calls_the_engine_forward_once(monkeypatch):
    calls = []
    original = engine.train_forward
    monkeypatch.setattr(engine, "train_forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    module = lt.GRU(3, 4, dtype=D).train()
    out, _ = module(torch.randn(5, 2, 3, dtype=D, requires_grad=True))
    out.sum().backward()
    assert len(calls) == 1 and all(p.grad is not None for p in module.parameters())


def test_a_replaced_parameter_of_the_wrong_shape_is_named():
    module = lt.LSTM(3, 4).train()
    module.weight_hh_l0 = torch.nn.Parameter(torch.zeros(16, 5))
    with pytest.raises((ValueError, RuntimeError), match="weight_hh_l0"):
        module(torch.randn(5, 2, 3, requires_grad=True))
