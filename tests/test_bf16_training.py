"""bfloat16 mixed-precision training (csrc/quant/quant_train.h): the engine's ``precision="bfloat16"`` and
lstmkit.torch's modules under ``torch.autocast("cpu", dtype=torch.bfloat16)``.

* The weight-gradient product (the one product of its kind: Aᵀ·B over N rows, both operands rounded): every
  element within the bound derived from the rounding (tests/test_quantize.py's ``bf16_product_bound``, which
  depends on the path: vdpbf16ps rounds both operands, the other paths only the weight-side one), and the
  column sums of the same pass bit-equal to float32 sums in row order.
* Whole training calls (forward, BPTT) against the float64 reference, over a sweep (LSTM/GRU, layers,
  directions, lengths, inter-layer dropout, a batch that splits by rows): each product is off by at most
  2u + u² (u = 2⁻⁸) of Σ|a||w|; with random signs a pre-activation is off by ~u relative, gates of slope ≤ 1
  pass it on and the gradients of T steps sum T such terms: measured ≤ 4.4e-3 (outputs) and ≤ 5.3e-3
  (gradients) of the largest value on this sweep on the avx512 path (Zen 4), bounds 1e-2 and 2e-2.
* Bits: independent of the thread count (row split, lockstep pair, one thread), and the same through the engine,
  the eager module and torch.compile(fullgraph=True).
* What has no bf16 products refuses by name in the engine (variant options, proj_size, float64, an unknown
  precision), and computes in float32 under autocast (which permits it): bit-equal to no autocast.
* Training under autocast follows float32's loss curve.
"""
from __future__ import annotations

import numpy as np
import pytest

import lstmkit
from lstmkit import engine, ref
from lstmkit.params import RNNConfig
from test_quantize import ROUNDS_ROWS, bf16_product_bound

pytestmark = pytest.mark.skipif(not engine.available(), reason="lstmkit._engine is not built")

OUT_BOUND, GRAD_BOUND = 1e-2, 2e-2

SWEEP = [  # mode, layers, bidirectional, T, B, lengths, dropout, H
    ("LSTM", 1, False, 7, 3, False, False, 24),
    ("LSTM", 2, True, 9, 5, True, True, 24),
    ("LSTM", 2, False, 12, 64, False, True, 24),  # the row split
    ("LSTM", 1, True, 6, 33, True, False, 24),  # an odd number of packed rows (pairs across steps)
    ("LSTM", 2, True, 8, 1, False, True, 128),  # the lockstep pair, forward and backward
    ("LSTM", 1, False, 8, 2, True, False, 128),  # the lockstep pair in the backward only (lengths)
    ("GRU", 1, False, 7, 3, False, False, 24),
    ("GRU", 2, True, 9, 5, True, True, 24),
    ("GRU", 1, False, 12, 64, False, False, 24),
    ("GRU", 2, False, 8, 2, False, True, 128),  # the lockstep pair
]


def _rel(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def _case(mode, layers, bi, T, B, use_lengths, dropout, H=24, I=11, seed=0):
    rng = np.random.default_rng(seed)
    config = RNNConfig(mode=mode, input_size=I, hidden_size=H, num_layers=layers, bidirectional=bi)
    layer = getattr(lstmkit, mode)(I, H, num_layers=layers, bidirectional=bi, seed=seed)
    params = {k: np.asarray(v, np.float32) for k, v in layer.params.items()}
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = rng.integers(0, T + 1, B) if use_lengths else None
    if lengths is not None:
        lengths[0] = T
    D = 2 if bi else 1
    masks = [(rng.random((T, B, D * H)) > 0.3).astype(np.float32) / 0.7 for _ in range(layers - 1)] \
        if dropout else None
    d_out = rng.standard_normal((T, B, D * H)).astype(np.float32)
    return config, params, x, lengths, masks, d_out


def _engine_train(config, params, x, lengths, masks, d_out, precision="bfloat16"):
    out, final, ws = engine.train_forward(config, params, x, None, lengths, None, masks, precision)
    grads = engine.backward(config, params, x, d_out, None, None, lengths, None, ws, masks, precision)
    return out, final, grads


def test_linear_tn_within_the_rounding_bound():
    rng = np.random.default_rng(3)
    for K, M, Nc in [(1, 1, 1), (7, 13, 5), (64, 40, 33), (1001, 96, 48), (2048, 17, 16)]:
        a = rng.standard_normal((K, M)).astype(np.float32)
        b = (rng.standard_normal((K, Nc)) * 3).astype(np.float32)
        c = np.empty((M, Nc), np.float32)
        sums = np.empty(M, np.float32)
        engine._engine.bf16_linear_tn(a, b, c, sums)
        exact = a.T.astype(np.float64) @ b.astype(np.float64)
        # Aᵀ·B is A's columns times B's columns: the rows of the left operand are aᵀ, the weights bᵀ
        bound = bf16_product_bound(np.ascontiguousarray(a.T), np.ascontiguousarray(b.T),
                                   rounds_rows=engine._engine.quant_isa() in ROUNDS_ROWS)
        excess = np.abs(c - exact) - bound
        assert excess.max() <= 0, f"K={K} M={M} Nc={Nc}: over the bound by {excess.max():.3g}"
        want = np.zeros(M, np.float32)
        for row in a:  # column_sums' order: the rows in order, in float32
            want += row
        np.testing.assert_array_equal(sums, want)


@pytest.mark.parametrize("mode,layers,bi,T,B,use_lengths,dropout,H", SWEEP)
def test_bf16_parity_with_reference(mode, layers, bi, T, B, use_lengths, dropout, H):
    config, params, x, lengths, masks, d_out = _case(mode, layers, bi, T, B, use_lengths, dropout, H)
    out, final, (dx, d_state0, grads) = _engine_train(config, params, x, lengths, masks, d_out)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    m64 = None if masks is None else [m.astype(np.float64) for m in masks]
    r_out, r_final, cache = ref.forward(config, p64, x.astype(np.float64), None, lengths, m64)
    r_dx, r_d0, r_grads = ref.backward(cache, d_out.astype(np.float64), None)
    for name, got, want in [("output", out, r_out), *((f"final[{i}]", a, b) for i, (a, b) in
                                                      enumerate(zip(final, r_final)))]:
        assert out.dtype == np.float32
        err = _rel(got, want)
        assert err <= OUT_BOUND, f"{name}: {err:.3g} > {OUT_BOUND}"
        assert err > 0  # the products really ran in bf16
    for name, got, want in [("dx", dx, r_dx), *((f"d_state0[{i}]", a, b) for i, (a, b) in
                                                enumerate(zip(d_state0, r_d0))),
                            *((k, grads[k], r_grads[k]) for k in r_grads)]:
        assert got.dtype == np.float32
        err = _rel(got, want)
        assert err <= GRAD_BOUND, f"{name}: {err:.3g} > {GRAD_BOUND}"


@pytest.mark.parametrize("case", [("LSTM", 2, True, 10, 64, True, True, 24),  # the row split
                                  ("LSTM", 2, True, 8, 1, False, True, 128),  # the lockstep pair
                                  ("GRU", 1, False, 8, 2, True, False, 128)])
def test_bf16_bits_do_not_depend_on_threads(case):
    case = _case(*case)
    before = engine.get_num_threads()
    try:
        runs = []
        for n in (1, 2):
            engine.set_num_threads(n)
            out, final, (dx, d0, grads) = _engine_train(*case)
            runs.append([out, *final, dx, *d0, *grads.values()])
    finally:
        engine.set_num_threads(before)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_precision_refusals_name_what_is_in_the_way():
    config, params, x, lengths, masks, d_out = _case("LSTM", 1, False, 4, 3, False, False)
    with pytest.raises(ValueError, match="precision: expected one of"):
        engine.train_forward(config, params, x, precision="float16")
    with pytest.raises(ValueError, match="precision='bfloat16'.*float64"):
        engine.train_forward(config, {k: v.astype(np.float64) for k, v in params.items()}, x.astype(np.float64),
                             precision="bfloat16")
    peephole = lstmkit.LSTM(11, 24, peephole=True)
    with pytest.raises(ValueError, match="precision='bfloat16'.*peephole"):
        engine.train_forward(peephole.config, {k: np.asarray(v, np.float32) for k, v in peephole.params.items()}, x,
                             precision="bfloat16")
    proj = lstmkit.LSTM(11, 24, proj_size=5)
    with pytest.raises(ValueError, match="precision='bfloat16'.*proj_size"):
        engine.backward(proj.config, {k: np.asarray(v, np.float32) for k, v in proj.params.items()}, x,
                        np.zeros((4, 3, 5), np.float32), precision="bfloat16")
    with pytest.raises(ValueError, match="precision"):  # a direct call to the kernel checks too
        engine._engine.train_forward("LSTM", 1, False, 24, 0, True, x, [params[k] for k in params], np.zeros(
            (1, 3, 24), np.float32), np.zeros((1, 3, 24), np.float32), None, [], np.empty((4, 3, 24), np.float32),
            np.empty((1, 3, 24), np.float32), np.empty((1, 3, 24), np.float32),
            np.empty(engine.workspace_size(config, 4, 3), np.float32), precision="half")


# ------------------------------------------------------------------------------------------- torch modules

torch = pytest.importorskip("torch")
import lstmkit.torch as lt  # noqa: E402


def _torch_run(module, x, autocast: bool, compiled: bool = False):
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    f = torch.compile(module, fullgraph=True, dynamic=False) if compiled else module
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out, state = f(x)
        loss = out.float().square().mean() + sum(s.float().sum() for s in (state if isinstance(state, tuple)
                                                                              else (state,)))
    loss.backward()
    return [out.detach(), x.grad, *(p.grad for p in module.parameters())], out.dtype


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_autocast_trains_in_bf16_like_torch_nn_in_float32(mode):
    torch.manual_seed(0)
    module = getattr(lt, mode)(6, 32, num_layers=2, batch_first=True)
    reference = getattr(torch.nn, mode)(6, 32, num_layers=2, batch_first=True)
    reference.load_state_dict(module.state_dict())
    x = torch.randn(5, 9, 6)
    (got, dtype), (want, _) = _torch_run(module, x, True), _torch_run(reference, x, False)
    assert dtype == torch.float32  # fp32 state and outputs (torch.nn returns bf16 under autocast)
    for i, (a, b) in enumerate(zip(got, want)):
        err = float((a - b).abs().max() / b.abs().max())
        assert 0 < err <= (OUT_BOUND if i == 0 else GRAD_BOUND), f"tensor {i}: {err:.3g}"
    compiled, _ = _torch_run(module, x, True, compiled=True)
    for a, b in zip(got, compiled):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the engine called directly gives the module's bits
    cfg = RNNConfig(mode=mode, input_size=6, hidden_size=32, num_layers=2)
    params = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    out, _, _ = engine.train_forward(cfg, params, x.transpose(0, 1).contiguous().numpy(), precision="bfloat16")
    np.testing.assert_array_equal(out, got[0].transpose(0, 1).numpy())


@pytest.mark.parametrize("kwargs", [dict(peephole=True), dict(proj_size=8), dict(layer_norm=True), {}])
def test_autocast_without_bf16_products_computes_float32(kwargs):
    """Options without bf16 products (and float64 models) train in float32 under autocast: the same bits."""
    torch.manual_seed(1)
    dtype = torch.float64 if not kwargs else torch.float32
    module = lt.LSTM(5, 16, dtype=dtype, **kwargs)
    x = torch.randn(7, 3, 5, dtype=dtype)
    (a, _), (b, _) = _torch_run(module, x, True), _torch_run(module, x, False)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=0, atol=0)


def test_autocast_keeps_float32_below_the_bf16_batch():
    """Batches under BF16_MIN_BATCH rows train in float32 under autocast (their float32 steps run on two threads):
    the same bits as without autocast; from it on, bf16 products."""
    from lstmkit.torch.ops import BF16_MIN_BATCH

    module = lt.GRU(5, 16)
    for batch in (1, BF16_MIN_BATCH - 1, BF16_MIN_BATCH):
        x = torch.randn(7, batch, 5)
        (a, _), (b, _) = _torch_run(module, x, True), _torch_run(module, x, False)
        same = all(torch.equal(u, v) for u, v in zip(a, b))
        assert same == (batch < BF16_MIN_BATCH), batch


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "LSTMCell", "GRUCell"])
def test_autocast_takes_bf16_in_front_of_the_module_like_torch_nn(cls):
    """Under autocast, what an autocast op in front returns (a Linear's bfloat16 output), and a bfloat16 state,
    are read in the module's float32 as torch.nn takes them (once refused: "expected dtype float32 (the layer's
    dtype) ... build the layer with the dtype you need"); the gradient reaches the Linear in its dtype. Eager
    and compiled (fullgraph) agree; outside autocast the same input is still refused."""
    from lstmkit.errors import DtypeMismatchError

    torch.manual_seed(2)
    linear, module = torch.nn.Linear(5, 6), getattr(lt, cls)(6, 16)
    cell = cls.endswith("Cell")
    x = torch.randn(8, 5) if cell else torch.randn(7, 8, 5)
    h0 = torch.randn(8, 16) if cell else torch.randn(1, 8, 16)
    hx = (h0.bfloat16(), h0.bfloat16()) if cls.startswith("LSTM") else h0.bfloat16()
    runs = []
    for f in (module, torch.compile(module, fullgraph=True)):
        linear.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z = linear(x)
            assert z.dtype == torch.bfloat16
            out = f(z, hx)
        first = out[0] if isinstance(out, tuple) else out
        assert first.dtype == torch.float32
        first.float().square().mean().backward()
        assert linear.weight.grad is not None and torch.isfinite(linear.weight.grad).all()
        runs.append((first.detach(), linear.weight.grad))
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(DtypeMismatchError, match="expected dtype float32"):
        module(linear(x).bfloat16())


def test_autocast_inference_and_eval_stay_float32():
    """Only training calls change: eval (and no_grad) under autocast compute the float32 engine's bits."""
    module = lt.LSTM(5, 16).eval()
    x = torch.randn(7, 3, 5)
    with torch.no_grad():
        plain, _ = module(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto, _ = module(x)
    torch.testing.assert_close(auto, plain, rtol=0, atol=0)


def test_autocast_training_follows_float32_loss_curve():
    """A small sequence regression (the sum of the inputs so far, squashed), trained the same way twice: bf16
    products under autocast and float32. Both learn (the loss falls below a fifth of its start) and the
    curves stay within 15 % of each other at every tenth step (seed-to-seed variation here is larger)."""
    def train(autocast: bool) -> list[float]:
        torch.manual_seed(0)
        lstm, head = lt.LSTM(4, 48), torch.nn.Linear(48, 1)
        opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-2)
        g = torch.Generator().manual_seed(1)
        losses = []
        for _ in range(120):
            x = torch.randn(20, 32, 4, generator=g)
            y = torch.tanh(x.sum(-1, keepdim=True).cumsum(0) / 4)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out, _ = lstm(x)
                loss = torch.nn.functional.mse_loss(head(out).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    bf16, fp32 = train(True), train(False)
    assert bf16[-1] < fp32[0] / 5 and fp32[-1] < fp32[0] / 5
    for step in range(9, 120, 10):
        a, b = np.mean(bf16[step - 9:step + 1]), np.mean(fp32[step - 9:step + 1])
        assert abs(a - b) <= 0.15 * b, f"steps {step - 9}..{step}: bf16 {a:.4g} vs float32 {b:.4g}"
