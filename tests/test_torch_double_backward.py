"""Double backward through lstmkit.torch's operators: gradgradcheck in float64, and a gradient-penalty step
that gives torch.nn's numbers.

A backward run with create_graph=True differentiates lstmkit.torch.equations instead of the native backward
(ops.graph_gradients). gradgradcheck compares its second derivatives with finite differences of its first
(float64, eps 1e-6: errors ~1e-9 against gradcheck's atol 1e-5); the first derivatives of that path must
equal the native backward's to float64 rounding (1e-12 of the gradient's scale).
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import lstmkit.torch as lt  # noqa: E402

F64 = torch.float64


def _functional(module, **kwargs):
    """f(x, *params) -> every output of module(x), for gradcheck over the input and the parameters."""
    names = [n for n, _ in module.named_parameters()]

    def f(x, *params):
        out = torch.func.functional_call(module, dict(zip(names, params)), (x,), kwargs)
        return tuple(t for t in _flatten(out))
    return f, [p.detach().clone().requires_grad_() for p in module.parameters()]


def _flatten(value):
    if isinstance(value, torch.Tensor):
        yield value
    else:
        for v in value:
            yield from _flatten(v)


def _seeded(cls, *args, train=True, **kwargs):
    torch.manual_seed(0)
    m = cls(*args, dtype=F64, **kwargs)
    with torch.no_grad():  # away from layer norm's identity initialisation
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m.train(train)


CASES = {
    "lstm_proj_bidir_lengths": (lambda: _seeded(lt.LSTM, 2, 3, num_layers=2, proj_size=2, bidirectional=True),
                                (4, 3, 2), {"lengths": torch.tensor([4, 1, 3])}),
    "lstm_eval": (lambda: _seeded(lt.LSTM, 2, 3, train=False), (3, 2, 2), {}),
    "gru_bidir": (lambda: _seeded(lt.GRU, 2, 3, bidirectional=True), (3, 2, 2), {}),
    "gru_lengths_eval": (lambda: _seeded(lt.GRU, 2, 3, num_layers=2, train=False), (4, 2, 2),
                         {"lengths": torch.tensor([2, 4])}),
    "lstm_cell": (lambda: _seeded(lt.LSTMCell, 2, 3), (2, 2), {}),
    "gru_cell": (lambda: _seeded(lt.GRUCell, 2, 3), (2, 2), {}),
    "variant_lstm_train": (lambda: _seeded(lt.LSTM, 2, 3, peephole=True, layer_norm=True, clip=2.0, proj_size=2),
                           (3, 2, 2), {}),
    "variant_lstm_zoneout_eval": (lambda: _seeded(lt.LSTM, 2, 3, zoneout=(0.3, 0.2), input_forget=True,
                                                  train=False), (3, 2, 2), {}),
    "variant_gru_train": (lambda: _seeded(lt.GRU, 2, 3, linear_before_reset=False, activations=("HardSigmoid",
                                                                                                "Softsign")),
                          (3, 2, 2), {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_gradgradcheck(case):
    make, shape, kwargs = CASES[case]
    f, params = _functional(make(), **kwargs)
    x = torch.randn(shape, dtype=F64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    assert torch.autograd.gradgradcheck(f, (x, *params), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("case", ["lstm_proj_bidir_lengths", "gru_bidir", "variant_lstm_train", "lstm_cell"])
def test_create_graph_gradients_equal_native_ones(case):
    make, shape, kwargs = CASES[case]
    f, params = _functional(make(), **kwargs)
    x = torch.randn(shape, dtype=F64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    outs = f(x, *params)
    weights = [torch.randn_like(o) for o in outs]
    loss = sum((o * w).sum() for o, w in zip(outs, weights))
    native = torch.autograd.grad(loss, (x, *params), retain_graph=True)
    graph = torch.autograd.grad(loss, (x, *params), create_graph=True)
    assert all(g.requires_grad for g in graph)  # the create_graph path, not the native one
    for n, g in zip(native, graph):
        torch.testing.assert_close(g.detach(), n, rtol=0, atol=1e-12 * max(1.0, n.abs().max().item()))


def test_gradient_penalty_step_matches_torch_nn():
    """loss + λ·Σ‖∂loss/∂θ‖², backward and one SGD step: the same numbers as torch.nn.LSTM (float64)."""
    torch.manual_seed(0)
    ours = lt.LSTM(3, 5, num_layers=2, dtype=F64)
    theirs = torch.nn.LSTM(3, 5, num_layers=2, dtype=F64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(6, 4, 3, dtype=F64)
    results = []
    for m in (ours, theirs):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        out, (h, c) = m(x)
        loss = out.pow(2).mean() + h.sum()
        grads = torch.autograd.grad(loss, list(m.parameters()), create_graph=True)
        penalty = sum(g.pow(2).sum() for g in grads)
        opt.zero_grad()
        (loss + 0.5 * penalty).backward()
        results.append(([p.grad.clone() for p in m.parameters()], penalty.detach()))
        opt.step()
    (g_ours, pen_ours), (g_theirs, pen_theirs) = results
    torch.testing.assert_close(pen_ours, pen_theirs, rtol=1e-12, atol=0)
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12 * max(1.0, b.abs().max().item()))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
