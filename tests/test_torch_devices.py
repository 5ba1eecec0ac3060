"""lstmkit.torch modules on devices lstmkit's CPU kernels do not serve: dispatch to torch's kernels (plain) or to
lstmkit.torch.equations (variants, lengths, lstmkit's dropout masks), never through the CPU operators.

Without a GPU the dispatch is tested on the "meta" device: a meta tensor cannot be copied to the CPU, and a
recording dispatch mode shows that no lstmkit operator ran. The CUDA parity tests (float64 and float32 against
the CPU module) run where torch.cuda.is_available().
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import lstmkit.torch as lt  # noqa: E402
from lstmkit.torch import ops  # noqa: E402
from dispatch_log import SeenOps as _Ops  # noqa: E402


SEQUENCE = {
    "lstm": (lambda: lt.LSTM(3, 4, 2), "LSTM"),
    "lstm_proj_bidir": (lambda: lt.LSTM(3, 4, 2, proj_size=2, bidirectional=True), "LSTM"),
    "gru_bidir": (lambda: lt.GRU(3, 4, bidirectional=True, batch_first=True), "GRU"),
    "lstm_variant": (lambda: lt.LSTM(3, 4, peephole=True, layer_norm=True, zoneout=(0.2, 0.1),
                                     recurrent_dropout=0.3), "LSTM"),
    "gru_variant": (lambda: lt.GRU(3, 4, 2, dropout=0.3, linear_before_reset=False, clip=1.0), "GRU"),
}


@pytest.mark.parametrize("lengths", [None, [5, 2]], ids=["full", "lengths"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", list(SEQUENCE))
def test_meta_module_runs_without_lstmkit_ops(case, train, lengths):
    make, mode = SEQUENCE[case]
    m = make().train(train).to("meta")
    c = m.config
    x = torch.randn(2, 5, 3, device="meta") if c.batch_first else torch.randn(5, 2, 3, device="meta")
    with _Ops() as seen:
        out, state = m(x, lengths=lengths)
        out.sum().backward()
    assert not [n for n in seen.names if n.startswith("lstmkit")], "an lstmkit CPU operator ran on meta tensors"
    D, P, K = c.num_directions, c.output_size, c.num_layers * c.num_directions
    assert out.device.type == "meta" and out.shape == x.shape[:2] + (D * P,)
    h = state[0] if mode == "LSTM" else state
    assert h.shape == (K, 2, P) and h.device.type == "meta"
    assert all(p.grad is not None and p.grad.device.type == "meta" for p in m.parameters())


def test_meta_plain_uses_torch_kernels_and_variant_the_equations(monkeypatch):
    """Which implementation serves which call: torch._VF for a plain config, equations.forward otherwise."""
    calls = []
    from lstmkit.torch import devices

    real_vf, real_eq = torch._VF.lstm, devices.equations.forward
    monkeypatch.setattr(devices.torch._VF, "lstm", lambda *a: calls.append("vf") or real_vf(*a), raising=False)
    monkeypatch.setattr(devices.equations, "forward", lambda *a, **k: calls.append("eq") or real_eq(*a, **k))
    x = torch.randn(4, 2, 3, device="meta")
    lt.LSTM(3, 4).to("meta")(x)
    lt.LSTM(3, 4)(x.new_empty(x.shape, device="cpu").normal_())  # the CPU keeps lstmkit's operator
    lt.LSTM(3, 4).to("meta")(x, lengths=[4, 1])
    lt.LSTM(3, 4, peephole=True).to("meta")(x)
    assert calls == ["vf", "eq", "eq"]


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_meta_cells(mode):
    cell = (lt.LSTMCell if mode == "LSTM" else lt.GRUCell)(3, 4).to("meta")
    with _Ops() as seen:
        out = cell(torch.randn(2, 3, device="meta"))
        unbatched = cell(torch.randn(3, device="meta"))
    assert not [n for n in seen.names if n.startswith("lstmkit")]
    h = out[0] if mode == "LSTM" else out
    assert h.shape == (2, 4) and h.device.type == "meta"
    assert (unbatched[0] if mode == "LSTM" else unbatched).shape == (4,)


def test_operators_refuse_non_cpu_tensors():
    """Called directly with a tensor off the CPU, an operator's real kernel refuses by name (never copies)."""
    with pytest.raises(ValueError, match="lstmkit's operators run on CPU tensors, got one on meta"):
        ops._check_cpu(torch.empty(1, device="meta"))


# ------------------------------------------------------------------------------------------------------- CUDA

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA_CASES = {
    "lstm_plain": lambda: lt.LSTM(3, 8, 2, bidirectional=True, proj_size=4),
    "gru_plain": lambda: lt.GRU(3, 8, 2, batch_first=True),
    "lstm_variant": lambda: lt.LSTM(3, 8, peephole=True, layer_norm=True, clip=2.0, zoneout=(0.2, 0.1)),
    "gru_variant": lambda: lt.GRU(3, 8, linear_before_reset=False, activations=("HardSigmoid", "Softsign")),
}


@cuda
@pytest.mark.parametrize("lengths", [None, [7, 3, 5]], ids=["full", "lengths"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", list(CUDA_CASES))
def test_cuda_matches_cpu(case, dtype, lengths):
    """Forward and every gradient on CUDA against the CPU module (eval mode: zoneout by its expectation).

    Tolerance: float64 1e-10; float32 2e-5 of the value's scale (cuDNN/cuBLAS sum in another order, and TF32 is
    off for these matmuls by torch's default)."""
    torch.manual_seed(0)
    cpu = CUDA_CASES[case]().to(dtype).eval()
    gpu = CUDA_CASES[case]().to(dtype).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    x = torch.randn(7, 3, 3, dtype=dtype)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    results = []
    for m, xd in ((cpu, x.clone()), (gpu, x.to("cuda"))):
        xd.requires_grad_()
        out, state = m(xd, lengths=lengths)
        h = state[0] if isinstance(state, tuple) else state
        w = torch.linspace(-1, 1, out.numel(), dtype=dtype).reshape(out.shape).to(out.device)
        ((out * w).sum() + h.pow(2).sum()).backward()
        assert out.device == xd.device  # nothing came back from elsewhere
        results.append([out, h, xd.grad] + [p.grad for p in m.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=tol * max(1.0, a.abs().max().item()))


@cuda
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_cuda_cells_match_cpu(mode):
    torch.manual_seed(0)
    cls = lt.LSTMCell if mode == "LSTM" else lt.GRUCell
    cpu = cls(3, 8, dtype=torch.float64)
    gpu = cls(3, 8, dtype=torch.float64)
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    x = torch.randn(4, 3, dtype=torch.float64)
    a, b = cpu(x), gpu(x.to("cuda"))
    a, b = (a[0], b[0]) if mode == "LSTM" else (a, b)
    torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-12)


# ------------------------------------------------- the non-CPU path's arithmetic, run on the CPU

ELSEWHERE_CASES = {
    "lstm_proj_bidir_2layer": lambda: lt.LSTM(3, 6, 2, proj_size=3, bidirectional=True, dtype=torch.float64),
    "gru_batch_first_dropout": lambda: lt.GRU(3, 6, 2, batch_first=True, dropout=0.4, dtype=torch.float64),
    "lstm_variant": lambda: lt.LSTM(3, 6, peephole=True, layer_norm=True, zoneout=(0.3, 0.2), recurrent_dropout=0.25,
                                    clip=2.0, dtype=torch.float64),
    "gru_variant": lambda: lt.GRU(3, 6, bidirectional=True, linear_before_reset=False, zoneout=(0.0, 0.2),
                                  activations=("HardSigmoid", "Softsign"), dtype=torch.float64),
}


@pytest.mark.parametrize("lengths", [None, [5, 2, 4], [5, 0, 4]], ids=["full", "lengths", "zero_length"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", list(ELSEWHERE_CASES))
def test_non_cpu_path_computes_what_the_operators_do(case, train, lengths, monkeypatch):
    """What a CUDA module computes (torch._VF, packed for lengths, or equations.py: devices.py), forced on the CPU
    in float64, against
    lstmkit's operators: outputs, states and every gradient to 1e-12 of their scale, with the same masks
    (both paths draw them from torch's RNG in the same order)."""
    from lstmkit.torch import devices

    results = []
    for forced in (False, True):
        torch.manual_seed(0)
        m = ELSEWHERE_CASES[case]().train(train)
        x = torch.randn(3, 5, 3, dtype=torch.float64) if m.batch_first else torch.randn(5, 3, 3, dtype=torch.float64)
        x.requires_grad_()
        with monkeypatch.context() as patch:
            if forced:
                patch.setattr(devices, "elsewhere", lambda t: True)
            out, state = m(x, lengths=lengths)
            state = state if isinstance(state, tuple) else (state,)
            w = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape)
            ((out * w).sum() + sum(s.pow(2).sum() for s in state)).backward()
        results.append([out.detach(), *(s.detach() for s in state), x.grad] + [p.grad for p in m.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12 * max(1.0, a.abs().max().item()))


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_non_cpu_cell_path_computes_what_the_operators_do(mode, monkeypatch):
    from lstmkit.torch import devices

    torch.manual_seed(0)
    cell = (lt.LSTMCell if mode == "LSTM" else lt.GRUCell)(3, 5, dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64)
    hx = (torch.randn(4, 5, dtype=torch.float64),) * (2 if mode == "LSTM" else 1)
    hx = hx if mode == "LSTM" else hx[0]
    want = cell(x, hx)
    monkeypatch.setattr(devices, "elsewhere", lambda t: True)
    got = cell(x, hx)
    for g, w in zip(got if mode == "LSTM" else (got,), want if mode == "LSTM" else (want,)):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-12)


def test_plain_lengths_go_through_torch_packed_kernels(monkeypatch):
    """Off the CPU a plain config with lengths runs torch's packed-sequence kernels (cuDNN's on a GPU), not the
    equations' Python loop; a zero length (which torch cannot pack) falls back to the equations."""
    from lstmkit.torch import devices

    calls = []
    real_eq = devices.equations.forward
    monkeypatch.setattr(devices, "elsewhere", lambda t: True)
    monkeypatch.setattr(devices.equations, "forward", lambda *a, **k: calls.append("eq") or real_eq(*a, **k))
    m, x = lt.GRU(3, 4, 2, bidirectional=True), torch.randn(5, 3, 3)
    m(x, lengths=[5, 2, 4])
    assert calls == []
    m(x, lengths=[5, 0, 4])
    assert calls == ["eq"]
