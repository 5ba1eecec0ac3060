"""lstmkit.torch under torch.func, and the operator set.

Per-sample gradients (``vmap(grad(...))`` over ``functional_call``) run the native backward operator through its
vmap rule (one backward per sample) and are compared with a loop of torch.nn's own backward, one sample at a time;
grad of grad runs ``equations.py`` under ``torch.func.vjp`` and is compared with torch.nn's double backward.

Tolerance: float64 throughout; lstmkit and torch.nn evaluate the same equations in another summation order, whose
rounding stays below 1e-13 of the largest value at these sizes (<= 20 terms per gate, <= 6 steps): compared with
rtol=1e-10 and atol = 1e-12 (entries near 0, where a relative bound means nothing).
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import lstmkit.torch as lt  # noqa: E402
from lstmkit import engine  # noqa: E402
from lstmkit.torch import ops  # noqa: E402

from torch.func import functional_call, grad, vmap  # noqa: E402

F64 = torch.float64
TOL = dict(rtol=1e-10, atol=1e-12)

CASES = {  # name: (lstmkit module, torch.nn module or None, constructor keywords, per-sample input shape)
    "lstm_2layers_proj": (lt.LSTM, torch.nn.LSTM, dict(num_layers=2, proj_size=2), (6, 3)),
    "gru_bidirectional_batched": (lt.GRU, torch.nn.GRU, dict(bidirectional=True, batch_first=True), (2, 5, 3)),
    "lstm_cell": (lt.LSTMCell, torch.nn.LSTMCell, {}, (3,)),
    "gru_cell": (lt.GRUCell, torch.nn.GRUCell, {}, (2, 3)),
    "variant_lstm": (lt.LSTM, None, dict(peephole=True, layer_norm=True, clip=1.5), (5, 3)),
}


def _loss(model):
    def loss(params, x):
        out = functional_call(model, params, (x,))
        out = out[0] if isinstance(out, tuple) else out
        return (out ** 2).sum()
    return loss


def _per_sample_reference(model, xs) -> list[dict]:
    """Each sample's gradients by ordinary autograd, one sample at a time."""
    result = []
    for x in xs:
        model.zero_grad()
        out = model(x)
        ((out[0] if isinstance(out, tuple) else out) ** 2).sum().backward()
        result.append({k: p.grad.clone() for k, p in model.named_parameters()})
    return result


@pytest.mark.skipif(not engine.available(), reason="lstmkit._engine is not built")
@pytest.mark.parametrize("case", list(CASES))
def test_per_sample_gradients_match_torch_nn(case, monkeypatch):
    """vmap(grad) over the module: every parameter's per-sample gradient equals torch.nn's (or, for a variant
    torch.nn lacks, the module's own ordinary backward per sample), computed by the native backward operator."""
    cls, reference_cls, kwargs, shape = CASES[case]
    torch.manual_seed(0)
    model = cls(3, 4, dtype=F64, **kwargs).train()
    reference = model
    if reference_cls is not None:
        reference = reference_cls(3, 4, dtype=F64, **kwargs)
        reference.load_state_dict(model.state_dict())
    xs = torch.randn(4, *shape, dtype=F64)
    native = []
    original = ops._numpy_backward
    monkeypatch.setattr(ops, "_numpy_backward", lambda *a: native.append(1) or original(*a))
    monkeypatch.setattr(ops, "graph_gradients", lambda *a: pytest.fail("a first derivative took the graph path"))
    params = {k: v.detach() for k, v in model.named_parameters()}
    grads = vmap(grad(_loss(model)), in_dims=(None, 0))(params, xs)
    assert len(native) == len(xs)  # the backward operator's vmap rule: one native backward per sample
    monkeypatch.undo()
    for n, want in enumerate(_per_sample_reference(reference, xs)):
        for name, value in want.items():
            torch.testing.assert_close(grads[name][n], value, **TOL, msg=f"{case}: {name}, sample {n}")


def test_grad_of_grad_matches_torch_nn_double_backward():
    """torch.func nested twice: the inner backward is differentiable (equations.py under torch.func.vjp), and
    the second derivative equals torch.nn's double backward; never the native backward's silent zero."""
    torch.manual_seed(1)
    model = lt.GRU(3, 4, dtype=F64)
    reference = torch.nn.GRU(3, 4, dtype=F64)
    reference.load_state_dict(model.state_dict())
    x = torch.randn(5, 3, dtype=F64)

    def inner(module):
        return lambda x: (module(x)[0] ** 3).sum()

    got = grad(lambda x: grad(inner(model))(x).pow(2).sum())(x)
    xr = x.clone().requires_grad_()
    (g1,) = torch.autograd.grad(inner(reference)(xr), xr, create_graph=True)
    (want,) = torch.autograd.grad(g1.pow(2).sum(), xr)
    assert want.abs().max() > 1e-3  # a second derivative worth comparing
    torch.testing.assert_close(got, want, **TOL)


def test_func_grad_stays_differentiable_for_ordinary_autograd():
    """torch.func.grad of a module whose parameters require grad, inside an ordinary training loss (a gradient
    penalty): the input gradient must carry its dependence on the parameters, as torch.nn's does (the native
    backward would silently drop it); the penalty's parameter gradient equals torch.nn's."""
    torch.manual_seed(4)
    model = lt.LSTM(3, 4, dtype=F64)
    reference = torch.nn.LSTM(3, 4, dtype=F64)
    reference.load_state_dict(model.state_dict())
    x = torch.randn(5, 3, dtype=F64)
    got, want = [], []
    for module, result in ((model, got), (reference, want)):
        dx = grad(lambda x: (module(x)[0] ** 2).sum())(x)
        assert dx.requires_grad
        result.extend(torch.autograd.grad((dx ** 2).sum(), list(module.parameters())))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("make", [lambda: lt.GRU(3, 4, dtype=F64), lambda: lt.LSTM(3, 4, peephole=True, dtype=F64),
                                  lambda: lt.LSTMCell(3, 4, dtype=F64)])
def test_forward_mode_equals_reverse_mode(make):
    """Forward mode (jacfwd, hessian) runs the equations in torch ops (lstmkit's operators have no forward
    derivative; devices.forward_ad): the same Jacobian as reverse mode through the operators."""
    torch.manual_seed(4)
    model = make()
    x = torch.randn(5, 3, dtype=F64)
    f = lambda x: model(x)[0]  # noqa: E731
    torch.testing.assert_close(torch.func.jacfwd(f)(x), torch.func.jacrev(f)(x), rtol=1e-12, atol=1e-14)
    g = lambda x: model(x)[0].sum()  # noqa: E731
    torch.testing.assert_close(torch.func.hessian(g)(x), torch.func.jacrev(torch.func.jacrev(g))(x), rtol=1e-10,
                               atol=1e-12)


def test_vmap_forward_equals_a_loop():
    """vmap of the eval-mode forward (the inference operator's vmap rule) equals the module on each sample."""
    torch.manual_seed(2)
    model = lt.LSTM(3, 4, num_layers=2, dtype=F64).eval()
    xs = torch.randn(3, 6, 2, 3, dtype=F64)
    with torch.no_grad():
        got = vmap(lambda x: model(x)[0])(xs)
        want = torch.stack([model(x)[0] for x in xs])
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("op", ["rnn", "rnn_train"])
def test_gradcheck_batched_grad(op):
    """gradcheck's check_batched_grad: autograd vmaps the backward over a batch of output gradients with its
    legacy batching, which custom operators' vmap rules do not reach: the formula then differentiates
    equations.py (torch ops, batched by torch) instead of failing; float64 finite differences as in
    test_torch_ops.py."""
    if op == "rnn_train" and not engine.available():
        pytest.skip("lstmkit._engine is not built")
    gen = torch.Generator().manual_seed(3)
    model = lt.LSTM(2, 3, num_layers=2, dtype=F64)
    key = ops.config_key(model.config)
    lengths = torch.tensor([3, 1])
    x = torch.randn(3, 2, 2, generator=gen, dtype=F64, requires_grad=True)
    h0 = torch.randn(2, 2, 3, generator=gen, dtype=F64, requires_grad=True)
    c0 = torch.randn(2, 2, 3, generator=gen, dtype=F64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]

    def f(x, h0, c0, *params):
        if op == "rnn":
            return torch.ops.lstmkit.rnn(x, h0, c0, list(params), lengths, [], [], [], [], key)
        return torch.ops.lstmkit.rnn_train(x, h0, c0, list(params), lengths, [], [], [], [], key)[:3]

    assert torch.autograd.gradcheck(f, (x, h0, c0, *params), eps=1e-6, atol=1e-7, rtol=1e-5, check_batched_grad=True)


def test_registered_operators_are_the_four():
    """One call path: exactly rnn, rnn_train, rnn_backward and rnn_step are registered under lstmkit::, plain and
    variant configs alike."""
    names = {n.split("::")[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("lstmkit::")}
    assert names == set(ops.OPERATORS) == {"rnn", "rnn_train", "rnn_backward", "rnn_step"}


@pytest.mark.parametrize("kwargs", [{}, dict(peephole=True)], ids=["plain", "variant"])
def test_plain_and_variant_modules_call_the_same_operators(kwargs):
    """The eval graph holds rnn, the training graph rnn_train, for a plain and a variant config alike."""
    model = lt.LSTM(3, 4, **kwargs)
    x = torch.randn(5, 2, 3)
    trained = "lstmkit.rnn_train.default" if engine.available() else "lstmkit.rnn.default"
    for mode, want in ((False, "lstmkit.rnn.default"), (True, trained)):
        graph = torch.export.export(model.train(mode), (x,)).graph
        targets = {str(n.target) for n in graph.nodes if "lstmkit" in str(n.target)}
        assert targets == {want}, targets
