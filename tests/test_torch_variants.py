"""lstmkit.torch.LSTM/GRU with the variant options (docs/variants.md) against the NumPy reference.

Same masks on both sides (training masks drawn with torch's RNG, re-drawn after reseeding), float64,
tolerance rtol 1e-10 / atol 1e-10; gradcheck of the custom operator; opcheck (schema, fake kernel,
autograd registration); parameters, initialisation and a short training run.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lstmkit.torch as lt  # noqa: E402
from lstmkit import ref  # noqa: E402
from lstmkit.ref.variants import VariantMasks  # noqa: E402
from lstmkit.torch.ops import config_key  # noqa: E402

TOL = dict(rtol=1e-10, atol=1e-10)
CASES = [
    ("LSTM", dict(peephole=True, layer_norm=True, zoneout=(0.3, 0.2), recurrent_dropout=0.25)),
    ("LSTM", dict(input_forget=True, clip=0.7, activations=("HardSigmoid", "Softsign", "Elu"), proj_size=3)),
    ("LSTM", dict(peephole=True, zoneout=(0.2, 0.0), bidirectional=True, num_layers=2)),
    ("GRU", dict(layer_norm=True, zoneout=(0.0, 0.3), recurrent_dropout=0.2, bidirectional=True)),
    ("GRU", dict(linear_before_reset=False, clip=0.8, recurrent_dropout=0.3, num_layers=2)),
]


def make(mode, options, seed=0):
    torch.manual_seed(seed)
    cls = lt.LSTM if mode == "LSTM" else lt.GRU
    model = cls(3, 5, dtype=torch.float64, **options)
    with torch.no_grad():  # away from the layer-norm identity init
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("mode, options", CASES, ids=lambda v: str(v))
def test_module_matches_reference(mode, options, train):
    model = make(mode, options).train(train)
    cfg = model.config
    T, B = 6, 4
    x = torch.randn(T, B, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 2, 0, 5])
    torch.manual_seed(11)
    masks = model._variant_masks(T, B, x)
    torch.manual_seed(11)
    out, state = model(x, lengths=lengths)
    final = state if mode == "LSTM" else (state,)
    vm = VariantMasks(*[[m.numpy() for m in ms] or None for ms in masks]) if any(masks) else None
    params = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    r_out, r_final, cache = ref.forward(cfg, params, x.detach().numpy(), None, lengths.numpy(), None, vm)
    np.testing.assert_allclose(out.detach().numpy(), r_out, **TOL)
    for a, b in zip(final, r_final):
        np.testing.assert_allclose(a.detach().numpy(), b, **TOL)
    g_out = torch.randn_like(out)
    g_final = [torch.randn_like(f) for f in final]
    torch.autograd.backward([out, *final], [g_out, *g_final])
    r_dx, _, r_grads = ref.backward(cache, g_out.numpy(), tuple(g.numpy() for g in g_final))
    np.testing.assert_allclose(x.grad.numpy(), r_dx, **TOL)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), r_grads[name], **TOL, err_msg=name)


def test_parameters_registered_and_initialised():
    model = lt.LSTM(3, 4, peephole=True, layer_norm=True, forget_bias=1.0, bidirectional=True)
    names = set(model.state_dict())
    for s in ("_l0", "_l0_reverse"):
        assert {f"peephole{s}", f"ln_ih_weight{s}", f"ln_ih_bias{s}", f"ln_hh_weight{s}", f"ln_hh_bias{s}",
                f"ln_cell_weight{s}", f"ln_cell_bias{s}"} <= names
    assert torch.all(model.ln_ih_weight_l0 == 1) and torch.all(model.ln_cell_bias_l0 == 0)
    assert torch.all(model.bias_ih_l0[4:8] == 1.0) and torch.all(model.bias_hh_l0[4:8] == 0.0)
    assert model.peephole_l0.shape == (12,)
    assert "peephole=True" in repr(model)
    gru = lt.GRU(3, 4, layer_norm=True)
    assert "ln_cell_weight_l0" not in gru.state_dict() and gru.ln_hh_bias_l0.shape == (12,)
    # a plain layer draws what it always drew
    torch.manual_seed(0)
    a = lt.LSTM(3, 4)
    torch.manual_seed(0)
    b = lt.LSTM(3, 4, layer_norm=True)
    assert torch.equal(a.weight_ih_l0, b.weight_ih_l0)


def test_options_are_validated_by_name():
    with pytest.raises(ValueError, match="zoneout"):
        lt.GRU(3, 4, zoneout=(0.2, 0.0))
    with pytest.raises(ValueError, match="recurrent_dropout"):
        lt.LSTM(3, 4, recurrent_dropout=1.5)
    with pytest.raises(ValueError, match="activations"):
        lt.LSTM(3, 4, activations=("Sigmoid", "Nope", "Tanh"))
    with pytest.raises(ValueError, match="bidirectional"):  # a variant streams (test_composition); this one cannot
        lt.LSTM(3, 4, peephole=True, bidirectional=True).stream()


def test_training_masks_follow_torch_seed():
    model = lt.LSTM(3, 5, zoneout=(0.3, 0.3), recurrent_dropout=0.3)
    x = torch.randn(7, 2, 3)
    torch.manual_seed(5)
    a = model(x)[0]
    torch.manual_seed(5)
    b = model(x)[0]
    c = model(x)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    model.eval()
    assert torch.equal(model(x)[0], model(x)[0])


def _op_inputs(mode, options, T=4, B=3, seed=0):
    model = make(mode, options, seed).train(True)
    cfg = model.config
    K = cfg.num_layers * cfg.num_directions
    x = torch.randn(T, B, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(K, B, cfg.output_size, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(K, B, cfg.hidden_size, dtype=torch.float64, requires_grad=True) if mode == "LSTM" else None
    params = [p.detach().clone().requires_grad_(True) for p in model._flat_weights]
    return model, cfg, x, h0, c0, params, model._variant_masks(T, B, x)


@pytest.mark.parametrize("mode, options", [
    ("LSTM", dict(peephole=True, layer_norm=True, zoneout=(0.3, 0.2), recurrent_dropout=0.2, proj_size=2)),
    ("GRU", dict(linear_before_reset=False, zoneout=(0.0, 0.3), recurrent_dropout=0.2,
                 activations=("Sigmoid", "Softsign"))),
    ("GRU", dict(layer_norm=True, bidirectional=True)),
], ids=lambda v: str(v))
@pytest.mark.parametrize("op", ["rnn", "rnn_train"])
def test_gradcheck_variant_op(mode, options, op):
    """Both operators with a variant config: rnn (its backward recomputes the forward) and rnn_train (its
    backward reads the saved workspace)."""
    model, cfg, x, h0, c0, params, (m_rd, m_zc, m_zh) = _op_inputs(mode, options)
    key = config_key(cfg)
    lengths = torch.tensor([4, 1, 3])

    def f(x, h0, *rest):
        c0_ = rest[0] if mode == "LSTM" else None
        ps = list(rest[1:] if mode == "LSTM" else rest)
        if op == "rnn":
            out, h, c = torch.ops.lstmkit.rnn(x, h0, c0_, ps, lengths, [], m_rd, m_zc, m_zh, key)
        else:
            out, h, c, _ = torch.ops.lstmkit.rnn_train(x, h0, c0_, ps, lengths, [], m_rd, m_zc, m_zh, key)
        return (out, h, c) if mode == "LSTM" else (out, h)

    inputs = (x, h0, *([c0] if mode == "LSTM" else []), *params)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode, options", [
    ("LSTM", dict(peephole=True, layer_norm=True, zoneout=(0.3, 0.2), recurrent_dropout=0.2)),
    ("GRU", dict(linear_before_reset=False, recurrent_dropout=0.2, clip=0.9)),
], ids=["lstm", "gru"])
def test_opcheck_variant_ops(mode, options):
    model, cfg, x, h0, c0, params, (m_rd, m_zc, m_zh) = _op_inputs(mode, options)
    lengths, key = torch.tensor([4, 2, 3]), config_key(cfg)
    torch.library.opcheck(torch.ops.lstmkit.rnn.default,
                          (x, h0, c0, params, lengths, [], m_rd, m_zc, m_zh, key))
    torch.library.opcheck(torch.ops.lstmkit.rnn_train.default,
                          (x, h0, c0, params, lengths, [], m_rd, m_zc, m_zh, key))


def test_training_runs_the_forward_once(monkeypatch):
    """With a gradient wanted, the module trains through rnn_train: one native forward per
    step, its workspace saved for the backward (no second forward)."""
    from lstmkit import engine

    calls = []
    original = engine.train_forward
    monkeypatch.setattr(engine, "train_forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    model = make("LSTM", dict(peephole=True, layer_norm=True, zoneout=(0.2, 0.1), recurrent_dropout=0.2))
    x = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    out, _ = model(x)
    out.square().sum().backward()
    assert len(calls) == 1 and x.grad is not None and all(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        model(x)
    assert len(calls) == 1  # no gradient wanted: the plain forward, no workspace


def test_training_smoke():
    """A variant LSTM learns to output the running sum of its input's sign within a few dozen steps."""
    torch.manual_seed(0)
    model = lt.LSTM(1, 16, batch_first=True, peephole=True, layer_norm=True, zoneout=(0.1, 0.05),
                    recurrent_dropout=0.1, forget_bias=1.0)
    head = torch.nn.Linear(16, 1)
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=0.02)
    x = torch.randn(32, 12, 1)
    y = torch.cumsum(torch.sign(x), 1) / 4
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(head(model(x)[0]), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_numpy_layer_to_lstmkit_torch_keeps_the_variant():
    import lstmkit

    layer = lstmkit.GRU(3, 5, layer_norm=True, zoneout=(0.0, 0.2), clip=2.0, seed=0, dtype="float64").eval()
    module = layer.to_torch("lstmkit")
    assert module.config == layer.config
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    np.testing.assert_allclose(module(torch.from_numpy(x))[0].detach().numpy(), layer(x)[0], **TOL)


def test_operator_mask_errors_are_named():
    """The operators check their masks as the engine does (one shared check), naming the argument."""
    model, cfg, x, h0, c0, params, (m_rd, m_zc, m_zh) = _op_inputs(
        "LSTM", dict(zoneout=(0.3, 0.2), recurrent_dropout=0.2))
    key, lengths = config_key(cfg), torch.tensor([4, 2, 3])
    with pytest.raises(ValueError, match=r"mask_zoneout_c\[0\]: expected shape \(4, 3, 5\), got \(4, 3, 2\)"):
        torch.ops.lstmkit.rnn_train(x, h0, c0, params, lengths, [], m_rd, [m_zc[0][..., :2]], m_zh, key)
    with pytest.raises(ValueError, match=r"mask_recurrent: expected a list of 1 masks .*got 2"):
        torch.ops.lstmkit.rnn(x, h0, c0, params, lengths, [], m_rd * 2, m_zc, m_zh, key)
    with pytest.raises(TypeError, match=r"mask_zoneout_h\[0\]: expected dtype float64"):
        torch.ops.lstmkit.rnn(x, h0, c0, params, lengths, [], m_rd, m_zc, [m_zh[0].float()], key)
