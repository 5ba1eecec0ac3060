"""The custom operators behind lstmkit.torch: gradients, torch.compile, torch.export, state_dict exchange
with torch.nn, input validation, empty sequences and dropout.

Tolerances are stated at each comparison: gradcheck uses float64 with eps=1e-6, atol=1e-7, rtol=1e-5;
compiled vs eager and exported vs eager run the same NumPy kernels, so they must agree to 1e-12 (float64)
or 1e-6 (float32).
"""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import lstmkit.torch as lt
from lstmkit.errors import DtypeMismatchError
from lstmkit.params import RNNConfig, param_shapes
from lstmkit.torch.ops import config_key

F64 = torch.float64
SAME_F64 = dict(rtol=1e-12, atol=1e-12)  # the same computation on the same data, modulo op fusion around it
SAME_F32 = dict(rtol=1e-6, atol=1e-6)
GRADCHECK = dict(eps=1e-6, atol=1e-7, rtol=1e-5)


def _params(config: RNNConfig, gen: torch.Generator) -> list[torch.Tensor]:
    return [(torch.rand(shape, generator=gen, dtype=F64) - 0.5).requires_grad_()
            for shape in param_shapes(config).values()]


def _lstm_op(config, lengths, masks=()):
    """op(x, h0, c0, *params) -> (output, h_n, c_n) with everything else fixed, for gradcheck."""
    def f(x, h0, c0, *params):
        return torch.ops.lstmkit.rnn(x, h0, c0, list(params), lengths, list(masks), [], [], [], config_key(config))
    return f


def _gru_op(config, lengths, masks=()):
    """op(x, h0, *params) -> (output, h_n) (rnn's third output, a GRU's empty c_n, left out)."""
    def f(x, h0, *params):
        return torch.ops.lstmkit.rnn(x, h0, None, list(params), lengths, list(masks), [], [], [],
                                     config_key(config))[:2]
    return f


# ---------------------------------------------------------------------------------------------------------
# Gradients of the operators
# ---------------------------------------------------------------------------------------------------------

def test_gradcheck_lstm_proj_bidirectional_lengths():
    """Every input of the LSTM op (x, h0, c0, each parameter) against finite differences, float64.
    Unsorted lengths include 0 (state passes through) and T; gradcheck also feeds undefined (None)
    output gradients, which the backward must treat as zeros."""
    gen = torch.Generator().manual_seed(0)
    config = RNNConfig("LSTM", 2, 3, num_layers=2, bidirectional=True, proj_size=2)
    T, B, k = 3, 3, 4
    x = torch.randn(T, B, 2, generator=gen, dtype=F64, requires_grad=True)
    h0 = torch.randn(k, B, 2, generator=gen, dtype=F64, requires_grad=True)
    c0 = torch.randn(k, B, 3, generator=gen, dtype=F64, requires_grad=True)
    lengths = torch.tensor([2, 0, 3])
    assert torch.autograd.gradcheck(_lstm_op(config, lengths), (x, h0, c0, *_params(config, gen)), **GRADCHECK)


def test_gradcheck_gru_bidirectional_lengths_no_bias():
    gen = torch.Generator().manual_seed(1)
    config = RNNConfig("GRU", 3, 2, num_layers=2, bidirectional=True, bias=False)
    T, B = 4, 2
    x = torch.randn(T, B, 3, generator=gen, dtype=F64, requires_grad=True)
    h0 = torch.randn(4, B, 2, generator=gen, dtype=F64, requires_grad=True)
    lengths = torch.tensor([1, 4])
    assert torch.autograd.gradcheck(_gru_op(config, lengths), (x, h0, *_params(config, gen)), **GRADCHECK)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_gradcheck_train_ops_saved_workspace(mode):
    """rnn_train: the backward reads the saved workspace (no forward recomputed); every input against finite
    differences in float64, with unsorted lengths including 0 and T; and its outputs equal rnn's exactly."""
    gen = torch.Generator().manual_seed(4)
    lstm = mode == "LSTM"
    config = RNNConfig(mode, 2, 3, num_layers=2, bidirectional=True, proj_size=2 if lstm else 0)
    c, T, B, P = config, 3, 3, config.output_size
    x = torch.randn(T, B, 2, generator=gen, dtype=F64, requires_grad=True)
    states = [torch.randn(4, B, P, generator=gen, dtype=F64, requires_grad=True)]
    if lstm:
        states.append(torch.randn(4, B, 3, generator=gen, dtype=F64, requires_grad=True))
    lengths = torch.tensor([2, 0, 3])

    def f(x, *rest):
        st, params = rest[:len(states)], rest[len(states):]
        c0 = st[1] if lstm else None
        out = torch.ops.lstmkit.rnn_train(x, st[0], c0, list(params), lengths, [], [], [], [], config_key(c))
        return out[:3 if lstm else 2]  # the workspace is not differentiable (nor a GRU's empty c_n)

    params = _params(config, gen)
    assert torch.autograd.gradcheck(f, (x, *states, *params), **GRADCHECK)
    plain = (_lstm_op if lstm else _gru_op)(config, lengths)(x, *states, *params)
    for a, b in zip(f(x, *states, *params), plain):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_gradcheck_with_fixed_dropout_masks(mode):
    """Dropout masks are op inputs, so with masks fixed the op is a deterministic function: its gradient
    must match finite differences (masks with zeros and 1/(1 - p) = 2 entries, p = 0.5)."""
    gen = torch.Generator().manual_seed(2)
    config = RNNConfig(mode, 2, 3, num_layers=3, bidirectional=mode == "GRU")
    T, B, D = 3, 2, config.num_directions
    masks = [torch.bernoulli(torch.full((T, B, D * 3), 0.5, dtype=F64), generator=gen) * 2.0 for _ in range(2)]
    x = torch.randn(T, B, 2, generator=gen, dtype=F64, requires_grad=True)
    states = [torch.randn(3 * D, B, 3, generator=gen, dtype=F64, requires_grad=True)
              for _ in range(2 if mode == "LSTM" else 1)]
    op = (_lstm_op if mode == "LSTM" else _gru_op)(config, None, masks)
    assert torch.autograd.gradcheck(op, (x, *states, *_params(config, gen)), **GRADCHECK)


def test_opcheck_schema_fake_and_autograd_registration():
    """torch.library.opcheck: schema, fake kernel vs real kernel (shapes, strides, dtypes), autograd
    registration and AOT dispatch, for every operator in float32 and float64."""
    gen = torch.Generator().manual_seed(3)
    for dtype in (torch.float32, F64):
        config = RNNConfig("LSTM", 2, 3, num_layers=2, bidirectional=True, proj_size=1)
        params = [p.detach().to(dtype).requires_grad_() for p in _params(config, gen)]
        x = torch.randn(3, 2, 2, dtype=dtype, requires_grad=True)
        h0, c0 = torch.zeros(4, 2, 1, dtype=dtype), torch.zeros(4, 2, 3, dtype=dtype, requires_grad=True)
        key = config_key(config)
        torch.library.opcheck(torch.ops.lstmkit.rnn.default, (x, h0, c0, params, torch.tensor([3, 1]), [], [], [], [],
                                                              key))
        torch.library.opcheck(torch.ops.lstmkit.rnn_train.default, (x, h0, c0, params, torch.tensor([3, 1]), [], [],
                                                                    [], [], key))
        mask = (torch.rand(3, 2, 2, generator=gen) < 0.5).to(dtype) * 2  # inter-layer dropout, an input
        torch.library.opcheck(torch.ops.lstmkit.rnn_train.default, (x, h0, c0, params, torch.tensor([3, 1]), [mask],
                                                                    [], [], [], key))
        config = RNNConfig("GRU", 2, 3)
        params = [p.detach().to(dtype).requires_grad_() for p in _params(config, gen)]
        h0 = torch.randn(1, 2, 3, dtype=dtype)
        torch.library.opcheck(torch.ops.lstmkit.rnn.default, (x, h0, None, params, None, [], [], [], [],
                                                              config_key(config)))
        torch.library.opcheck(torch.ops.lstmkit.rnn_train.default, (x, h0, None, params, None, [], [], [], [],
                                                                    config_key(config)))
        torch.library.opcheck(torch.ops.lstmkit.rnn_step.default, (x[0], h0, None, params, config_key(config)))
        grads = (None, torch.randn(1, 2, 3, dtype=dtype), None)
        torch.library.opcheck(torch.ops.lstmkit.rnn_backward.default,
                              (x.detach(), h0, None, [p.detach() for p in params], None, [], [], [], [], None, *grads,
                               config_key(config)))


# ---------------------------------------------------------------------------------------------------------
# torch.compile and torch.export
# ---------------------------------------------------------------------------------------------------------

def _forward_backward(model, args, kwargs):
    """Outputs and the gradients of a fixed weighted sum w.r.t. the tensor args and every parameter."""
    out, state = model(*args, **kwargs)
    data = out.data if isinstance(out, PackedSequence) else out
    tensors = [data, *(state if isinstance(state, tuple) else (state,))]
    loss = sum((t * torch.linspace(-1, 1, t.numel(), dtype=t.dtype).reshape(t.shape)).sum() for t in tensors)
    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad] + list(model.parameters())
    return tensors, torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_compile_fullgraph_matches_eager(mode):
    """torch.compile(fullgraph=True) through the custom ops, forward and backward, padded input with
    lengths= (LSTM: projection, batch_first) and an unsorted PackedSequence with h0 (GRU)."""
    torch._dynamo.reset()
    torch.manual_seed(4)
    if mode == "LSTM":
        model = lt.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, batch_first=True, dtype=F64)
        x = torch.randn(3, 5, 3, dtype=F64, requires_grad=True)
        args, kwargs = (x,), {"lengths": torch.tensor([5, 2, 4])}
    else:
        model = lt.GRU(3, 4, num_layers=2, bidirectional=True, dtype=F64)
        x = torch.randn(5, 3, 3, dtype=F64, requires_grad=True)
        packed = pack_padded_sequence(x, torch.tensor([2, 5, 3]), enforce_sorted=False)
        args, kwargs = (packed, torch.randn(4, 3, 4, dtype=F64, requires_grad=True)), {}
    eager_out, eager_grads = _forward_backward(model, args, kwargs)
    compiled = torch.compile(model, fullgraph=True)
    comp_out, comp_grads = _forward_backward(compiled, args, kwargs)
    for a, b in zip(comp_out + list(comp_grads), eager_out + list(eager_grads)):
        torch.testing.assert_close(a, b, **SAME_F64)
    if mode == "LSTM":  # lengths' values are unreadable while tracing: the op checks them when it runs
        with pytest.raises(ValueError, match=r"^lengths: expected values in \[0, 5\]"):
            compiled(x, lengths=torch.tensor([9, 2, 4]))


def test_compile_fullgraph_dropout_train_mode():
    """Train-mode dropout under torch.compile(fullgraph=True): masks are drawn inside the graph, the
    output differs from eval mode by more than 1e-3, and the backward runs and gives finite gradients."""
    torch._dynamo.reset()
    torch.manual_seed(16)
    model = lt.GRU(3, 6, num_layers=2, dropout=0.5, dtype=F64)
    x = torch.randn(5, 4, 3, dtype=F64, requires_grad=True)
    model.eval()
    out_eval, _ = model(x)
    model.train()
    out, h_n = torch.compile(model, fullgraph=True)(x)
    assert (out - out_eval).abs().max().item() > 1e-3, "compiled train mode must apply dropout"
    grads = torch.autograd.grad(out.sum() + h_n.sum(), [x, *model.parameters()])
    assert all(torch.isfinite(g).all() for g in grads)


def test_compile_fullgraph_cell_float32():
    torch._dynamo.reset()
    torch.manual_seed(5)
    cell = lt.LSTMCell(3, 4)
    x = torch.randn(2, 3, requires_grad=True)
    hx = (torch.randn(2, 4, requires_grad=True), torch.randn(2, 4))

    def run(m):
        h, c = m(x, hx)
        return [h, c], torch.autograd.grad((h * 2 + c).sum(), [x, hx[0], *cell.parameters()])
    eager_out, eager_grads = run(cell)
    comp_out, comp_grads = run(torch.compile(cell, fullgraph=True))
    for a, b in zip(comp_out + list(comp_grads), eager_out + list(eager_grads)):
        torch.testing.assert_close(a, b, **SAME_F32)


_FRESH_COMPILE = """
import warnings, torch
import lstmkit.torch as lt
torch.manual_seed(0)
x = torch.randn(5, 3, 8)
for make, inp in ((lambda: lt.LSTM(8, 16, 2), x), (lambda: lt.GRU(8, 16, bidirectional=True), x),
                  (lambda: lt.LSTM(8, 16, peephole=True), x), (lambda: lt.LSTMCell(8, 16), x[0]),
                  (lambda: lt.GRUCell(8, 16), x[0])):
    model = make()  # built and compiled before any eager call: nothing warmed up
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = torch.compile(model, fullgraph=True)(inp)
    ours = [str(w.message) for w in seen if "lstmkit" in str(w.filename) or "lru_cache" in str(w.message)]
    assert not ours, ours
    want = model(inp)
    flat = lambda r: [t for t in (r if isinstance(r, tuple) else (r,)) for t in (t if isinstance(t, tuple) else (t,))]
    for a, b in zip(flat(got), flat(want)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
print("ok")
"""


def test_compile_fullgraph_on_a_fresh_module_in_a_fresh_process():
    """torch.compile(fullgraph=True) on modules never called eagerly, in a new process (so no cached
    property, lru_cache or registration was warmed by an earlier test); no Dynamo warning from lstmkit."""
    src = str(Path(lt.__file__).resolve().parents[2])
    env = {**__import__("os").environ, "PYTHONPATH": src}
    run = subprocess.run([sys.executable, "-c", _FRESH_COMPILE], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout[-2000:] + run.stderr[-4000:]


def test_export_lstm_gru_and_cell():
    """torch.export.export of each module; the exported program holds the lstmkit ops and reproduces
    eager outputs."""
    torch.manual_seed(6)
    lstm = lt.LSTM(3, 4, num_layers=2, proj_size=2, batch_first=True, dtype=F64).eval()
    x = torch.randn(2, 5, 3, dtype=F64)
    lengths = torch.tensor([5, 3])
    ep = torch.export.export(lstm, (x,), {"lengths": lengths})
    assert "lstmkit.rnn.default" in str(ep.graph)
    got, want = ep.module()(x, lengths=lengths), lstm(x, lengths=lengths)
    torch.testing.assert_close(got, want, **SAME_F64)

    gru = lt.GRU(3, 4, bidirectional=True, dtype=F64).eval()
    packed = pack_padded_sequence(torch.randn(4, 3, 3, dtype=F64), torch.tensor([1, 4, 2]), enforce_sorted=False)
    ep = torch.export.export(gru, (packed,))
    got, want = ep.module()(packed), gru(packed)
    torch.testing.assert_close(got[0].data, want[0].data, **SAME_F64)
    torch.testing.assert_close(got[1], want[1], **SAME_F64)

    cell = lt.GRUCell(3, 4)
    xc, hc = torch.randn(2, 3), torch.randn(2, 4)
    ep = torch.export.export(cell, (xc, hc))
    assert "lstmkit.rnn_step.default" in str(ep.graph)
    torch.testing.assert_close(ep.module()(xc, hc), cell(xc, hc), **SAME_F32)


# ---------------------------------------------------------------------------------------------------------
# state_dict exchange with torch.nn
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda ns: ns.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=3),
    lambda ns: ns.GRU(3, 5, num_layers=3, bias=False),
    lambda ns: ns.LSTMCell(3, 5),
    lambda ns: ns.GRUCell(3, 5, bias=False),
], ids=["LSTM-proj-bi", "GRU-nobias", "LSTMCell", "GRUCell-nobias"])
def test_state_dict_round_trip_both_ways(make):
    """torch.nn -> lstmkit -> torch.nn carries every tensor bit for bit; the keys are the same sets."""
    torch.manual_seed(8)
    theirs, ours, back = make(torch.nn), make(lt), make(torch.nn)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())           # torch -> lstmkit
    back.load_state_dict(ours.state_dict())             # lstmkit -> torch
    for key, value in theirs.state_dict().items():
        torch.testing.assert_close(back.state_dict()[key], value, rtol=0, atol=0)  # exact copies
    mismatched = lt.LSTM(3, 5, num_layers=2, bidirectional=True)  # no projection: weight_hr_* unexpected
    if isinstance(theirs, torch.nn.LSTM):
        with pytest.raises(RuntimeError, match="weight_hr_l0"):
            mismatched.load_state_dict(theirs.state_dict())


# ---------------------------------------------------------------------------------------------------------
# Validation: the error names the argument
# ---------------------------------------------------------------------------------------------------------

def _bad_calls():
    lstm = lt.LSTM(3, 4, num_layers=2)
    gru = lt.GRU(3, 4, batch_first=True)
    x = torch.randn(5, 2, 3)
    h, c = torch.zeros(2, 2, 4), torch.zeros(2, 2, 4)
    packed = pack_padded_sequence(x, torch.tensor([5, 3]), enforce_sorted=False)
    cell = lt.LSTMCell(3, 4)
    cfg = RNNConfig("GRU", 3, 4)
    params = [torch.zeros(s) for s in param_shapes(cfg).values()]
    key = config_key(cfg)
    cfg2 = RNNConfig("GRU", 3, 4, num_layers=2)  # one inter-layer dropout mask (5, 2, 4)
    params2 = [torch.zeros(s) for s in param_shapes(cfg2).values()]
    key2 = config_key(cfg2)

    def op2(masks):
        return torch.ops.lstmkit.rnn_train(x, h, None, params2, None, masks, [], [], [], key2)
    return [
        ("rank 4", lambda: lstm(torch.randn(5, 2, 3, 1)), ValueError, "^input"),
        ("rank 1", lambda: lstm(torch.randn(3)), ValueError, "^input"),
        ("features", lambda: lstm(torch.randn(5, 2, 7)), ValueError, "^input: expected 3 features"),
        ("packed features", lambda: lstm(pack_padded_sequence(torch.randn(5, 2, 2), torch.tensor([5, 3]))),
         ValueError, "^input"),
        ("not a tensor", lambda: lstm([[1.0, 2.0, 3.0]]), TypeError, "^input"),
        ("h0 shape", lambda: lstm(x, (torch.zeros(1, 2, 4), c)), ValueError, r"^hx: expected h0 of shape \(2, 2, 4\)"),
        ("c0 shape", lambda: lstm(x, (h, torch.zeros(2, 3, 4))), ValueError, "^hx: expected c0"),
        ("hx not a tuple", lambda: lstm(x, h), TypeError, "^hx"),
        ("gru hx tuple", lambda: gru(x.transpose(0, 1), (h[:1],)), TypeError, "^hx"),
        ("input dtype", lambda: lstm(x.double()), TypeError, "^input: expected dtype float32"),
        ("hx dtype", lambda: lstm(x, (h.double(), c)), TypeError, r"^hx \(h0\): expected dtype float32"),
        ("lengths too long", lambda: lstm(x, lengths=torch.tensor([6, 2])), ValueError,
         r"^lengths: expected values in \[0, 5\]"),
        ("lengths negative", lambda: lstm(x, lengths=[-1, 2]), ValueError, "^lengths"),
        ("lengths count", lambda: lstm(x, lengths=torch.tensor([5, 2, 1])), ValueError, "^lengths: expected 2 values"),
        ("lengths non-integer", lambda: lstm(x, lengths=[2.5, 1.0]), TypeError, "^lengths"),
        ("lengths with packed", lambda: lstm(packed, lengths=[5, 3]), ValueError, "^lengths"),
        ("cell rank", lambda: cell(x), ValueError, "^input"),
        ("cell hx shape", lambda: cell(x[0], (torch.zeros(3, 4), torch.zeros(2, 4))), ValueError, "^hx: expected h"),
        ("cell hx dtype", lambda: cell(x[0], (torch.zeros(2, 4), torch.zeros(2, 4, dtype=F64))), TypeError,
         r"^hx \(c\)"),
        ("op params count", lambda: torch.ops.lstmkit.rnn(x, h[:1], None, params[:2], None, [], [], [], [], key),
         ValueError, "^params: expected 4 tensors"),
        ("op lengths value", lambda: torch.ops.lstmkit.rnn(x, h[:1], None, params, torch.tensor([9, 1]), [], [], [],
                                                           [], key), ValueError, "^lengths"),
        ("op float16", lambda: torch.ops.lstmkit.rnn(x.half(), h[:1].half(), None, [p.half() for p in params], None,
                                                     [], [], [], [], key), TypeError, "^dtype"),
        ("op config", lambda: torch.ops.lstmkit.rnn(x, h[:1], None, params, None, [], [], [], [], "{}"), ValueError,
         "^config: expected config_key"),
        ("op mask without the option", lambda: torch.ops.lstmkit.rnn(x, h[:1], None, params, None, [], [h[0]], [],
                                                                     [], key), ValueError, "^mask_recurrent"),
        ("op dropout mask count", lambda: op2([x[..., :1].expand(5, 2, 4)] * 2), ValueError,
         r"^dropout_masks: expected 0 or 1 masks \(one per layer but the last\), got 2"),
        ("op dropout mask shape", lambda: op2([torch.ones(5, 2, 3)]), ValueError,
         r"^dropout_masks\[0\]: expected shape \(5, 2, 4\), got \(5, 2, 3\)"),
        ("op dropout mask dtype", lambda: op2([torch.ones(5, 2, 4, dtype=F64)]), DtypeMismatchError,
         r"^dropout_masks\[0\]: expected dtype float32 \(the layer's dtype\)"),
        ("step bidirectional", lambda: torch.ops.lstmkit.rnn_step(x[0], h, None, params, config_key(
            RNNConfig("GRU", 3, 4, bidirectional=True))), ValueError, "^config"),
        ("proj_size >= hidden", lambda: lt.LSTM(3, 4, proj_size=4), ValueError, "^proj_size"),
        ("layer dtype", lambda: lt.GRU(3, 4, dtype=torch.float16), TypeError, "^dtype"),
        ("dropout range", lambda: lt.GRU(3, 4, num_layers=2, dropout=1.5), ValueError, "^dropout"),
    ]


@pytest.mark.parametrize("label,call,error,pattern", _bad_calls(), ids=[c[0] for c in _bad_calls()])
def test_bad_input_names_the_argument(label, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


# ---------------------------------------------------------------------------------------------------------
# Edge cases: empty sequences, zero lengths, sorted packing, unbatched
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_zero_length_sequence_returns_initial_state(mode):
    """T = 0: empty output of the right width; h_n (and c_n) equal the initial state, exactly, and the
    gradient reaching h0/c0 through h_n/c_n is the identity (the cotangent itself)."""
    kwargs = {"proj_size": 2} if mode == "LSTM" else {}
    model = getattr(lt, mode)(3, 4, num_layers=2, bidirectional=True, dtype=F64, **kwargs)
    P = 2 if mode == "LSTM" else 4
    x = torch.zeros(0, 3, 3, dtype=F64, requires_grad=True)
    states = [torch.randn(4, 3, P, dtype=F64, requires_grad=True)]
    if mode == "LSTM":
        states.append(torch.randn(4, 3, 4, dtype=F64, requires_grad=True))
    out, final = model(x, tuple(states) if mode == "LSTM" else states[0])
    final = final if mode == "LSTM" else (final,)
    assert out.shape == (0, 3, 2 * P)
    cotangents = [torch.randn_like(s) for s in states]
    grads = torch.autograd.grad(sum((f * w).sum() for f, w in zip(final, cotangents)), [x, *states])
    assert grads[0].shape == x.shape
    for s, f, g, w in zip(states, final, grads[1:], cotangents):
        torch.testing.assert_close(f, s, rtol=0, atol=0)
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_zero_length_entries_in_lengths():
    """A sequence of length 0 in lengths=: its outputs are zeros and its h_n/c_n are its h0/c0; the others
    match running them alone (lengths semantics = packed semantics)."""
    torch.manual_seed(9)
    model = lt.LSTM(3, 4, bidirectional=True, dtype=F64)
    x = torch.randn(4, 3, 3, dtype=F64)
    h0, c0 = torch.randn(2, 3, 4, dtype=F64), torch.randn(2, 3, 4, dtype=F64)
    out, (h_n, c_n) = model(x, (h0, c0), lengths=[3, 0, 4])
    torch.testing.assert_close(out[:, 1], torch.zeros(4, 8, dtype=F64), rtol=0, atol=0)
    torch.testing.assert_close(h_n[:, 1], h0[:, 1], rtol=0, atol=0)
    torch.testing.assert_close(c_n[:, 1], c0[:, 1], rtol=0, atol=0)
    alone, (h_alone, _) = model(x[:3, :1], (h0[:, :1].contiguous(), c0[:, :1].contiguous()))
    torch.testing.assert_close(out[:3, :1], alone, **SAME_F64)
    torch.testing.assert_close(out[3, 0], torch.zeros(8, dtype=F64), rtol=0, atol=0)
    torch.testing.assert_close(h_n[:, :1], h_alone, **SAME_F64)


def test_sorted_packed_sequence_matches_torch():
    """PackedSequence without sorted_indices (enforce_sorted=True), float32, against torch.nn.GRU."""
    torch.manual_seed(10)
    ref, ours = torch.nn.GRU(3, 4, num_layers=2), lt.GRU(3, 4, num_layers=2)
    ours.load_state_dict(ref.state_dict())
    packed = pack_padded_sequence(torch.randn(5, 3, 3), torch.tensor([5, 4, 2]), enforce_sorted=True)
    (o_ref, h_ref), (o_ours, h_ours) = ref(packed), ours(packed)
    assert o_ours.sorted_indices is None and torch.equal(o_ours.batch_sizes, o_ref.batch_sizes)
    scale = o_ref.data.abs().max().item()
    torch.testing.assert_close(o_ours.data, o_ref.data, rtol=1e-5, atol=1e-6 * scale)
    torch.testing.assert_close(h_ours, h_ref, rtol=1e-5, atol=1e-6 * scale)
    padded, lengths = pad_packed_sequence(o_ours)
    assert lengths.tolist() == [5, 4, 2]
    # compiled: the batch size is a value of batch_sizes, which fullgraph cannot read (named, not torch's
    # "data-dependent expression"); with graph breaks allowed it runs eagerly there and agrees
    torch._dynamo.reset()
    with pytest.raises(Exception, match="pack it with enforce_sorted=False"):
        torch.compile(ours, fullgraph=True)(packed)
    torch.testing.assert_close(torch.compile(ours)(packed)[1], h_ours, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------------------------------------

def test_dropout_train_changes_outputs_eval_ignores_it():
    torch.manual_seed(11)
    model = lt.LSTM(3, 6, num_layers=3, dropout=0.5, dtype=F64)
    plain = torch.nn.LSTM(3, 6, num_layers=3, dropout=0.0, dtype=F64)  # the same net with no dropout at all
    plain.load_state_dict(model.state_dict())
    x = torch.randn(5, 4, 3, dtype=F64)
    model.eval()
    out_eval, _ = model(x)
    torch.testing.assert_close(out_eval, plain(x)[0], rtol=1e-10, atol=1e-10)  # eval mode: dropout off
    model.train()
    torch.manual_seed(12)
    out_a, _ = model(x)
    torch.manual_seed(12)
    out_b, _ = model(x)
    torch.manual_seed(13)
    out_c, _ = model(x)
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)  # masks come from torch's RNG: reproducible
    assert (out_a - out_eval).abs().max().item() > 1e-3, "train mode must apply dropout"
    assert (out_a - out_c).abs().max().item() > 1e-3, "a different seed must draw different masks"


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_dropout_backward_uses_the_forward_masks(mode):
    """In train mode the module's gradients equal those of the op called with the very masks the module
    drew (redrawn from the same seed), so forward and backward saw the same dropout."""
    torch.manual_seed(14)
    model = getattr(lt, mode)(3, 4, num_layers=3, dropout=0.4, bidirectional=True, dtype=F64).train()
    x = torch.randn(4, 2, 3, dtype=F64, requires_grad=True)
    torch.manual_seed(15)
    out, _ = model(x)
    grads = torch.autograd.grad((out * out).sum(), [x, *model.parameters()])
    torch.manual_seed(15)
    masks = model._dropout_masks(4, 2, x)
    assert len(masks) == 2 and all(set(m.unique().tolist()) <= {0.0, 1 / 0.6} for m in masks)
    c = model.config
    state0 = [torch.zeros(6, 2, 4, dtype=F64)] * (2 if mode == "LSTM" else 1)  # L·D = 3·2
    c0 = state0[1] if mode == "LSTM" else None
    out_op = torch.ops.lstmkit.rnn(x, state0[0], c0, list(model.parameters()), None, masks, [], [], [],
                                   config_key(c))[0]
    torch.testing.assert_close(out, out_op, rtol=0, atol=0)
    grads_op = torch.autograd.grad((out_op * out_op).sum(), [x, *model.parameters()])
    for a, b in zip(grads, grads_op):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_masks_keep_each_value_with_probability_1_minus_p(p):
    """The inter-layer masks are 0 or 1/(1 − p), the kept share within 6 standard deviations of 1 − p
    (n = 105,000 values: sd = sqrt(p(1 − p)/n) ≤ 0.0016), and rows/steps are not all alike."""
    model = lt.LSTM(4, 50, num_layers=4, dropout=p).train()
    masks = model._dropout_masks(70, 10, torch.zeros(1))
    values = torch.cat([m.flatten() for m in masks])
    scaled = torch.tensor(1 / (1 - p), dtype=values.dtype)  # 1/(1 − p) in the mask's dtype
    assert ((values == 0) | (values == scaled)).all()
    kept = (values > 0).double().mean().item()
    assert abs(kept - (1 - p)) <= 6 * math.sqrt(p * (1 - p) / values.numel()), kept
    assert not torch.equal(masks[0][0], masks[0][1]) and not torch.equal(masks[0], masks[1])


def test_training_backward_fills_nothing_workspace_sized():
    """The training op's workspace is an output that autograd must not fill with zeros for the backward: it
    did, a fresh zeroed block of the workspace's size (8 MB in the word-LM shape) on every batch. No
    zero_/fill_ of the backward may be that large (the unused h_n and c_n need none either)."""
    from torch.profiler import profile

    from lstmkit.engine import workspace_size

    model = lt.LSTM(8, 16, num_layers=2, dropout=0.2).train()
    x = torch.randn(7, 3, 8, requires_grad=True)
    out, _ = model(x)
    with profile(record_shapes=True) as prof:
        out.sum().backward()
    large = workspace_size(model.config, 7, 3)
    fills = [(e.name, shapes) for e in prof.events() if e.name in ("aten::zero_", "aten::fill_")
             for shapes in [e.input_shapes[0]] if shapes and int(torch.tensor(shapes).prod()) >= large]
    assert fills == [], fills
    assert x.grad is not None and all(p.grad is not None for p in model.parameters())


# ---------------------------------------------------------------------------------------------------------
# Packaging
# ---------------------------------------------------------------------------------------------------------

def test_import_lstmkit_does_not_import_torch():
    src = str(Path(__file__).resolve().parents[1] / "src")
    code = "import sys, lstmkit; assert 'torch' not in sys.modules, 'lstmkit imported torch'"
    result = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": src}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
