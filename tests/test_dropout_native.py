"""Training with inter-layer dropout runs on the native engine in one call (the masks an argument of
engine.forward / train_forward / backward and of the torch operators), for the NumPy layers and the torch
modules, and computes
what the reference computes with the same masks (float64, rtol = atol = 1e-10: the engine sums in another
order than NumPy, ~K·2^-53 per product over T = 6 steps and 3 layers, far below; tests/test_composition.py
checks more option sets)."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import lstmkit
from lstmkit import engine, ref

pytestmark = pytest.mark.skipif(not engine.available(), reason="lstmkit._engine is not built")
TOL = {"rtol": 1e-10, "atol": 1e-10}
CASES = [("LSTM", {}), ("LSTM", {"bidirectional": True, "proj_size": 2}), ("GRU", {"bidirectional": True}),
         ("LSTM", {"peephole": True, "zoneout": (0.2, 0.1), "recurrent_dropout": 0.3}),
         ("GRU", {"layer_norm": True, "recurrent_dropout": 0.2})]


def _refuse(*args, **kwargs):
    raise AssertionError("the NumPy reference ran")


@pytest.fixture
def no_reference(monkeypatch):
    """Make the reference's forward and backward fail, so a test passes only if the engine ran."""
    for module in (ref, ref.rnn):
        monkeypatch.setattr(module, "forward", _refuse)
        monkeypatch.setattr(module, "backward", _refuse)


def _reference(layer, rng_before, x, lengths, d_out, d_final):
    replay = copy.copy(layer)
    replay.rng = rng_before
    drop, vm = replay._dropout_masks(*x.shape[:2]), replay._variant_masks(*x.shape[:2])
    out, final, cache = ref.rnn.forward(layer.config, layer.params, x, None, lengths, drop, vm)
    return out, final, ref.rnn.backward(cache, d_out, d_final)


@pytest.mark.parametrize("mode,options", CASES)
def test_numpy_layer_trains_with_dropout_natively(mode, options, monkeypatch):
    layer = getattr(lstmkit, mode)(3, 4, num_layers=3, dropout=0.4, seed=0, dtype="float64", **options)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 2, 3))
    lengths = np.array([6, 4])
    rng_before = copy.deepcopy(layer.rng)
    with monkeypatch.context() as m:
        m.setattr(ref, "forward", _refuse)
        m.setattr(ref, "backward", _refuse)
        out, state = layer(x, lengths=lengths)
        final = state if mode == "LSTM" else (state,)
        d_out = rng.standard_normal(out.shape)
        d_final = tuple(rng.standard_normal(s.shape) for s in final)
        grads = layer.backward(d_out, *d_final)
    assert isinstance(layer._last.cache, np.ndarray)  # one workspace: one native training call
    r_out, r_final, (r_dx, r_ds0, r_grads) = _reference(layer, rng_before, x, lengths, d_out, d_final)
    np.testing.assert_allclose(out, r_out, **TOL)
    for a, b in zip(final, r_final):
        np.testing.assert_allclose(a, b, **TOL)
    np.testing.assert_allclose(grads.input, r_dx, **TOL)
    for a, b in zip(grads.hx if mode == "LSTM" else (grads.hx,), r_ds0):
        np.testing.assert_allclose(a, b, **TOL)
    for key, value in r_grads.items():
        np.testing.assert_allclose(grads.params[key], value, **TOL, err_msg=key)


@pytest.mark.parametrize("mode,options", CASES)
def test_torch_module_trains_with_dropout_natively(mode, options, no_reference):
    torch = pytest.importorskip("torch")
    import lstmkit.torch as lt

    torch.manual_seed(0)
    model = getattr(lt, mode)(3, 4, num_layers=3, dropout=0.4, dtype=torch.float64, **options).train()
    x = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    out, _ = model(x, lengths=torch.tensor([6, 4]))
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters())


def test_workspace_keeps_each_layer_input_times_its_mask():
    """What the training forward reads after layer 0 is the layer below's output times its mask: with masks
    that are exact powers of two, the one native call gives the bits of running the layers one by one and
    multiplying in between, forward and (the workspace's) backward, with and without lengths."""
    layer = lstmkit.GRU(3, 4, num_layers=3, bidirectional=True, seed=0, dtype="float64")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 2, 3))
    masks = [(rng.random((5, 2, 8)) < 0.5) * 2.0 for _ in range(2)]
    d_out = rng.standard_normal((5, 2, 8))
    for lengths in (None, np.array([3, 5])):
        out, final, ws = engine.train_forward(layer.config, layer.params, x, None, lengths, dropout_masks=masks)
        assert ws.shape == (engine.workspace_size(layer.config, 5, 2),)
        want, _, cache = ref.rnn.forward(layer.config, layer.params, x, None, lengths, masks)
        np.testing.assert_allclose(out, want, **TOL)
        dx, _, grads = engine.backward(layer.config, layer.params, x, d_out, None, None, lengths, workspace=ws,
                                       dropout_masks=masks)
        r_dx, _, r_grads = ref.rnn.backward(cache, d_out, None)
        np.testing.assert_allclose(dx, r_dx, **TOL)
        for key in r_grads:
            np.testing.assert_allclose(grads[key], r_grads[key], **TOL, err_msg=key)
        # the same call without a workspace recomputes the forward with the masks
        dx2, _, _ = engine.backward(layer.config, layer.params, x, d_out, None, None, lengths, dropout_masks=masks)
        np.testing.assert_array_equal(dx2, dx)
        # inference with masks (torch's rnn op in train mode without autograd) gives the training forward's bits
        out2, final2 = engine.forward(layer.config, layer.params, x, None, lengths, dropout_masks=masks)
        np.testing.assert_array_equal(out2, out)
        for a, b in zip(final2, final):
            np.testing.assert_array_equal(a, b)


def test_dropout_masks_are_checked_by_name():
    layer = lstmkit.LSTM(3, 4, num_layers=3, seed=0)
    x = np.zeros((5, 2, 3), np.float32)
    with pytest.raises(ValueError, match=r"dropout_masks: expected 0 or 2 masks \(one per layer but the last\), got 1"):
        engine.train_forward(layer.config, layer.params, x, dropout_masks=[np.ones((5, 2, 4), np.float32)])
    with pytest.raises(ValueError, match=r"dropout_masks\[1\]: expected shape \(5, 2, 4\)"):
        engine.forward(layer.config, layer.params, x,
                       dropout_masks=[np.ones((5, 2, 4), np.float32), np.ones((5, 2, 3), np.float32)])
    with pytest.raises(TypeError, match=r"dropout_masks\[0\]: expected dtype float32"):
        engine.backward(layer.config, layer.params, x, np.zeros((5, 2, 4), np.float32),
                        dropout_masks=[np.ones((5, 2, 4)), np.ones((5, 2, 4), np.float32)])


@pytest.mark.parametrize("options", [{}, {"peephole": True, "recurrent_dropout": 0.2}])
def test_dropout_training_compiles_and_exports(options):
    """The training path with dropout traces: torch.compile(fullgraph=True) (aot_eager, so the masks come from
    the same RNG stream as eager) gives eager's output and gradients bit for bit; torch.export holds one
    training operator for the whole stack."""
    torch = pytest.importorskip("torch")
    import lstmkit.torch as lt

    torch.manual_seed(0)
    model = lt.LSTM(3, 4, num_layers=2, dropout=0.3, dtype=torch.float64, **options).train()
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    results = []
    for run in (torch.compile(model, fullgraph=True, backend="aot_eager"), model):
        torch.manual_seed(1)
        out, _ = run(x)
        (dx,) = torch.autograd.grad(out.square().sum(), [x])
        results.append((out.detach(), dx))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)
    graph = torch.export.export(model, (x,)).graph
    ops = [str(n.target) for n in graph.nodes if "lstmkit" in str(n.target)]
    assert ops == ["lstmkit.rnn_train.default"], ops


def test_variant_operator_with_dropout_masks_runs_natively(no_reference):
    """rnn called with a variant config and inter-layer dropout masks (training without autograd, or a direct
    call) and its backward run on the engine, and agree with the training operator the module calls."""
    torch = pytest.importorskip("torch")
    import lstmkit.torch as lt

    torch.manual_seed(3)
    model = lt.GRU(3, 4, num_layers=2, dropout=0.5, layer_norm=True, dtype=torch.float64).train()
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    masks = model._dropout_masks(5, 2, x)
    h0 = torch.zeros(2, 2, 4, dtype=torch.float64)
    out, _, _ = torch.ops.lstmkit.rnn(x, h0, None, list(model.parameters()), None, masks, [], [], [],
                                      model._config_key)
    (dx,) = torch.autograd.grad(out.square().sum(), [x])
    want, _, _, _ = torch.ops.lstmkit.rnn_train(x, h0, None, list(model.parameters()), None, masks, [], [], [],
                                                model._config_key)
    (want_dx,) = torch.autograd.grad(want.square().sum(), [x])
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    torch.testing.assert_close(dx, want_dx, rtol=1e-12, atol=1e-12)
