"""lstmkit.LSTM/GRU/...Cell (NumPy): torch.nn's shapes, values, gradients and state_dict; bad input."""
import numpy as np
import pytest
import torch

import lstmkit
from lstmkit import GRU, LSTM, GRUCell, LSTMCell

TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-10, atol=1e-12)}
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}


def torch_twin(layer):
    """torch.nn module with the same configuration and weights as an lstmkit layer or cell."""
    c = layer.config
    if isinstance(layer, (LSTMCell, GRUCell)):
        m = getattr(torch.nn, c.mode + "Cell")(c.input_size, c.hidden_size, c.bias)
    else:
        kw = {"proj_size": c.proj_size} if c.mode == "LSTM" else {}
        m = getattr(torch.nn, c.mode)(c.input_size, c.hidden_size, c.num_layers, c.bias, c.batch_first, 0.0,
                                      c.bidirectional, **kw)
    m = m.to(TORCH_DTYPE[layer.dtype.name])
    m.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    return m


SWEEP = [
    ("LSTM", dict(), "float32"), ("LSTM", dict(num_layers=2, bidirectional=True), "float64"),
    ("LSTM", dict(num_layers=2, proj_size=3, batch_first=True), "float32"),
    ("LSTM", dict(bidirectional=True, proj_size=2, lengths=True, state=True), "float64"),
    ("LSTM", dict(num_layers=3, bias=False, lengths=True), "float32"),
    ("GRU", dict(), "float64"),
    ("GRU", dict(num_layers=2, bidirectional=True, batch_first=True, state=True), "float32"),
    ("GRU", dict(num_layers=3, lengths=True, bidirectional=True), "float64"),
]


@pytest.mark.parametrize("mode,kw,dtype", SWEEP)
def test_layer_matches_torch_forward_and_backward(mode, kw, dtype):
    kw = dict(kw)
    use_lengths, use_state = kw.pop("lengths", False), kw.pop("state", False)
    layer = getattr(lstmkit, mode)(4, 6, seed=3, dtype=dtype, **kw)
    twin = torch_twin(layer)
    rng = np.random.default_rng(0)
    T, B = 5, 3
    shape = (B, T, 4) if layer.config.batch_first else (T, B, 4)
    x = rng.standard_normal(shape).astype(dtype)
    lengths = np.array([2, 5, 3]) if use_lengths else None
    hx = None
    if use_state:
        shapes = lstmkit.checks.state_shapes(layer.config, B)
        hx = tuple(rng.standard_normal(s).astype(dtype) for s in shapes)
        hx = hx if mode == "LSTM" else hx[0]

    out, final = layer(x, hx, lengths=lengths)
    xt = torch.tensor(x, requires_grad=True)
    hxt = None if hx is None else (tuple(torch.tensor(h, requires_grad=True) for h in hx) if mode == "LSTM"
                                   else torch.tensor(hx, requires_grad=True))
    inp = xt
    if use_lengths:
        inp = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), layer.config.batch_first, False)
    out_t, final_t = twin(inp, hxt)
    if use_lengths:
        out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_t, layer.config.batch_first, total_length=T)
    finals, finals_t = (final, final_t) if mode == "LSTM" else ((final,), (final_t,))
    np.testing.assert_allclose(out, out_t.detach().numpy(), **TOL[dtype])
    for a, b in zip(finals, finals_t):
        np.testing.assert_allclose(a, b.detach().numpy(), **TOL[dtype])

    d_out = rng.standard_normal(out.shape).astype(dtype)
    d_fin = [rng.standard_normal(f.shape).astype(dtype) for f in finals]
    (torch.sum(out_t * torch.from_numpy(d_out)) + sum(torch.sum(a * torch.from_numpy(b))
                                                       for a, b in zip(finals_t, d_fin))).backward()
    g = layer.backward(d_out, *d_fin)
    np.testing.assert_allclose(g.input, xt.grad.numpy(), **TOL[dtype])
    for name, p in twin.named_parameters():
        np.testing.assert_allclose(g.params[name], p.grad.numpy(), **TOL[dtype], err_msg=name)
    if use_state:
        hx_grads = g.hx if mode == "LSTM" else (g.hx,)
        hxt_all = hxt if mode == "LSTM" else (hxt,)
        for a, b in zip(hx_grads, hxt_all):
            np.testing.assert_allclose(a, b.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("cls", [LSTMCell, GRUCell])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cell_matches_torch(cls, dtype):
    cell = cls(3, 5, seed=1, dtype=dtype)
    twin = torch_twin(cell)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3)).astype(dtype)
    hx = tuple(rng.standard_normal((4, 5)).astype(dtype) for _ in range(2 if cls is LSTMCell else 1))
    hx_arg = hx if cls is LSTMCell else hx[0]
    new = cell(x, hx_arg)
    xt = torch.tensor(x, requires_grad=True)
    hxt = tuple(torch.tensor(h, requires_grad=True) for h in hx)
    new_t = twin(xt, hxt if cls is LSTMCell else hxt[0])
    new, new_t = (new, new_t) if cls is LSTMCell else ((new,), (new_t,))
    for a, b in zip(new, new_t):
        np.testing.assert_allclose(a, b.detach().numpy(), **TOL[dtype])
    d = [np.ones_like(a) * (k + 1) for k, a in enumerate(new)]
    sum(torch.sum(a * torch.from_numpy(b)) for a, b in zip(new_t, d)).backward()
    g = cell.backward(*d)
    np.testing.assert_allclose(g.input, xt.grad.numpy(), **TOL[dtype])
    for name, p in twin.named_parameters():
        np.testing.assert_allclose(g.params[name], p.grad.numpy(), **TOL[dtype], err_msg=name)
    # unbatched input and no state give the same as a batch of one
    single = cell(x[0])
    batch = cell(x[:1])
    first = single if cls is GRUCell else single[0]
    np.testing.assert_allclose(first, (batch if cls is GRUCell else batch[0])[0], **TOL[dtype])


def test_output_last_step_equals_h_n_and_unbatched():
    layer = LSTM(3, 4, num_layers=2, seed=0)
    x = np.random.default_rng(0).standard_normal((6, 2, 3)).astype(np.float32)
    out, (h_n, c_n) = layer(x)
    assert out.shape == (6, 2, 4) and h_n.shape == (2, 2, 4) and c_n.shape == (2, 2, 4)
    np.testing.assert_array_equal(out[-1], h_n[-1])
    out1, (h1, c1) = layer(x[:, 0])  # unbatched (T, I)
    assert out1.shape == (6, 4) and h1.shape == (2, 4)
    np.testing.assert_allclose(out1, out[:, 0], rtol=1e-6, atol=1e-7)


def test_state_dict_round_trip_with_torch_both_ways():
    m = torch.nn.LSTM(4, 8, num_layers=2, bidirectional=True, proj_size=3)
    layer = LSTM(4, 8, num_layers=2, bidirectional=True, proj_size=3)
    layer.load_state_dict(m.state_dict())
    back = torch.nn.LSTM(4, 8, num_layers=2, bidirectional=True, proj_size=3)
    back.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    for (k, a), (k2, b) in zip(m.state_dict().items(), back.state_dict().items()):
        assert k == k2
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert list(layer.state_dict()) == list(m.state_dict())


def test_load_state_dict_copies_and_never_keeps_callers_arrays():
    layer = GRU(2, 3, seed=0, dtype="float64")
    sd = layer.state_dict()
    sd["weight_ih_l0"][:] = 7.0
    assert not np.any(layer.params["weight_ih_l0"] == 7.0)  # state_dict() returned copies
    layer.load_state_dict(sd)
    sd["weight_ih_l0"][:] = 0.0
    assert np.all(layer.params["weight_ih_l0"] == 7.0)  # load copied them in


def test_seed_gives_reproducible_init_and_torch_bound():
    a, b = LSTM(5, 16, seed=42), LSTM(5, 16, seed=42)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
        assert np.abs(a.params[k]).max() <= 1 / np.sqrt(16)


def test_dropout_only_in_training_mode():
    layer = LSTM(3, 8, num_layers=3, dropout=0.5, seed=0, dtype="float64")
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    train_a, _ = layer(x)
    train_b, _ = layer(x)
    assert np.abs(train_a - train_b).max() > 1e-6  # fresh masks each call
    layer.eval()
    eval_a, _ = layer(x)
    eval_b, _ = layer(x)
    np.testing.assert_array_equal(eval_a, eval_b)
    ref_layer = LSTM(3, 8, num_layers=3, dtype="float64")
    ref_layer.load_state_dict(layer.state_dict())
    np.testing.assert_allclose(eval_a, ref_layer(x)[0], rtol=1e-12, atol=1e-14)


def test_zero_length_sequence_and_zero_lengths():
    layer = LSTM(3, 4, num_layers=2, bidirectional=True)
    out, (h, c) = layer(np.zeros((0, 2, 3), np.float32))
    assert out.shape == (0, 2, 8) and h.shape == (4, 2, 4)
    assert np.all(h == 0) and np.all(c == 0)
    g = layer.backward(np.zeros((0, 2, 8), np.float32))
    assert g.input.shape == (0, 2, 3)
    h0 = np.full((4, 2, 4), 0.5, np.float32)
    out, (h, c) = layer(np.ones((3, 2, 3), np.float32), (h0, h0), lengths=[0, 3])
    np.testing.assert_array_equal(out[:, 0], 0)
    np.testing.assert_array_equal(h[:, 0], h0[:, 0])  # a sequence of length 0 keeps its initial state


BAD_INPUTS = [
    ("wrong rank", lambda m: m(np.zeros((2, 3, 4, 5), np.float32)), ValueError, "input"),
    ("wrong features", lambda m: m(np.zeros((2, 3, 5), np.float32)), ValueError, "4 features"),
    ("not an array", lambda m: m([[1.0]]), TypeError, "input"),
    ("mixed dtypes", lambda m: m(np.zeros((2, 3, 4), np.float64)), TypeError, "float32"),
    ("hx wrong shape", lambda m: m(np.zeros((2, 3, 4), np.float32), (np.zeros((1, 3, 6), np.float32),) * 2),
     ValueError, "h0"),
    ("hx not a pair", lambda m: m(np.zeros((2, 3, 4), np.float32), np.zeros((2, 3, 6), np.float32)), TypeError, "hx"),
    ("hx dtype", lambda m: m(np.zeros((2, 3, 4), np.float32), (np.zeros((2, 3, 6)),) * 2), TypeError, "hx"),
    ("lengths count", lambda m: m(np.zeros((2, 3, 4), np.float32), lengths=[1, 2]), ValueError, "lengths"),
    ("lengths range", lambda m: m(np.zeros((2, 3, 4), np.float32), lengths=[1, 2, 3]), ValueError, "lengths"),
    ("lengths negative", lambda m: m(np.zeros((2, 3, 4), np.float32), lengths=[1, -1, 2]), ValueError, "lengths"),
    ("lengths fractional", lambda m: m(np.zeros((2, 3, 4), np.float32), lengths=[1, 1.5, 2]), TypeError, "lengths"),
    ("non-finite weights", lambda m: m.load_state_dict({**m.state_dict(), "weight_hh_l0": np.full((24, 6), np.nan)}),
     ValueError, "weight_hh_l0"),
    ("weights wrong shape", lambda m: m.load_state_dict({**m.state_dict(), "bias_ih_l1": np.zeros(23)}), ValueError,
     "bias_ih_l1"),
    ("weights missing key", lambda m: m.load_state_dict({"weight_ih_l0": np.zeros((24, 4))}), ValueError, "missing"),
    ("backward first", lambda m: m.backward(np.zeros((1, 1, 6))), RuntimeError, "backward"),
]


@pytest.mark.parametrize("name,call,error,text", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_clear_error(name, call, error, text):
    layer = LSTM(4, 6, num_layers=2)
    with pytest.raises(error, match=text):
        call(layer)


@pytest.mark.parametrize("kwargs,text", [
    (dict(input_size=0, hidden_size=3), "input_size"), (dict(input_size=2, hidden_size=-1), "hidden_size"),
    (dict(input_size=2, hidden_size=3, proj_size=3), "proj_size"), (dict(input_size=2, hidden_size=3, dropout=2),
                                                                     "dropout"),
    (dict(input_size=2, hidden_size=3, dtype="int8"), "dtype"), (dict(input_size=2, hidden_size=3, backend="gpu"),
                                                                 "backend"),
])
def test_bad_constructor_arguments(kwargs, text):
    with pytest.raises((ValueError, TypeError), match=text):
        LSTM(**kwargs)


def test_adam_trains_a_copy_task():
    """An LSTM + readout learns to output its input delayed by one step: the loss falls by 10x."""
    rng = np.random.default_rng(0)
    lstm, head = LSTM(1, 16, seed=0, dtype="float64"), lstmkit.Linear(16, 1, seed=1, dtype="float64")
    params = {**{"l." + k: v for k, v in lstm.params.items()}, **{"h." + k: v for k, v in head.params.items()}}
    opt = lstmkit.optim.Adam(params, lr=2e-2)
    losses = []
    for _ in range(150):
        x = rng.standard_normal((10, 16, 1))
        target = np.concatenate([np.zeros((1, 16, 1)), x[:-1]])
        pred = head(lstm(x)[0])
        losses.append(float(np.mean((pred - target) ** 2)))
        gh = head.backward(2 * (pred - target) / pred.size)
        gl = lstm.backward(gh.input)
        opt.step({**{"l." + k: v for k, v in gl.params.items()}, **{"h." + k: v for k, v in gh.params.items()}})
    assert np.mean(losses[-10:]) < 0.1 * np.mean(losses[:10])


def test_summary_counts_torch_and_keras():
    s = lstmkit.summary(LSTM(5, 10))
    assert (s.total, s.keras_total) == (680, 640)
    assert "680" in str(s) and "640" in str(s)
    assert lstmkit.summary(torch.nn.LSTM(5, 10)).total == sum(p.numel() for p in torch.nn.LSTM(5, 10).parameters())
    g = lstmkit.summary(GRU(5, 10, num_layers=2, bidirectional=True))
    assert g.total == sum(p.numel() for p in torch.nn.GRU(5, 10, 2, bidirectional=True).parameters())
    assert g.keras_total == g.total  # Keras' GRU(reset_after=True) keeps both biases
    assert lstmkit.summary(LSTM(5, 10, proj_size=4)).keras_total is None


def test_summary_counts_any_size_without_building_it():
    """Counted from layers 0 and 1: `lstmkit summary --num-layers 10**19` once listed every layer until the
    memory ran out. Up to LISTED_LAYERS layers each gets its rows; past it layers 1..N-1 share one group."""
    from lstmkit.params import RNNConfig
    from lstmkit.summary import LISTED_LAYERS

    for kw in (dict(num_layers=3, bidirectional=True), dict(num_layers=3, proj_size=4), dict(num_layers=2,
               peephole=True, layer_norm=True)):
        assert lstmkit.summary(RNNConfig("LSTM", 5, 10, **kw)).total == sum(
            p.size for p in LSTM(5, 10, **kw).params.values()), kw
    per_layer = sum(p.numel() for p in torch.nn.LSTM(8, 4, 2, bidirectional=True).parameters()) - \
        sum(p.numel() for p in torch.nn.LSTM(8, 4, 1, bidirectional=True).parameters())
    first = sum(p.numel() for p in torch.nn.LSTM(5, 4, 1, bidirectional=True).parameters())
    for n in (LISTED_LAYERS, LISTED_LAYERS + 1, 10**19):
        s = lstmkit.summary(RNNConfig("LSTM", 5, 4, num_layers=n, bidirectional=True))
        assert s.total == first + (n - 1) * per_layer
        assert s.keras_total == s.total - n * 2 * 4 * 4  # one bias vector per gate, direction and layer
        assert len(s.rows) == 2 * 4 * (n if n <= LISTED_LAYERS else 2)
    assert s.rows[-1][0] == f"1..{10**19 - 1} (each)"
    assert "total parameters: 4,479,999,999,999,999,999,840 in torch, 4,159,999,999,999,999,999,840 in Keras" in str(
        lstmkit.summary(RNNConfig("LSTM", 3, 4, num_layers=10**19, bidirectional=True)))


@pytest.mark.parametrize("training", [True, False])
def test_empty_batch_returns_empty_results(training):
    layer = LSTM(3, 4, num_layers=2, bidirectional=True).train(training)
    out, (h, c) = layer(np.zeros((5, 0, 3), np.float32))
    assert out.shape == (5, 0, 8) and h.shape == (4, 0, 4) and c.shape == (4, 0, 4)
    assert layer.backward(np.zeros_like(out)).input.shape == (5, 0, 3)


@pytest.mark.parametrize("cls", [lstmkit.LSTM, lstmkit.GRU])
def test_batch_first_assigned_after_construction_takes_effect(cls):
    """layer.batch_first = True on a built layer changes the layout the forward reads (it used to make an
    attribute the forward ignored: a silent wrong result on square inputs); sizes and options are refused."""
    a = cls(3, 5, num_layers=2, dtype="float64")
    b = cls(3, 5, num_layers=2, batch_first=True, dtype="float64")
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(0).standard_normal((4, 4, 3))
    a.batch_first = True
    assert a.config.batch_first and a.batch_first
    np.testing.assert_array_equal(a(x)[0], b(x)[0])
    a.dropout = 0.25
    assert a.config.dropout == 0.25
    with pytest.raises(ValueError, match="dropout"):
        a.dropout = 2.0
    a.hidden_size = 5  # unchanged: allowed
    for name, value in [("hidden_size", 6), ("num_layers", 1), ("bidirectional", True), ("clip", 1.0)]:
        with pytest.raises(AttributeError, match=name):
            setattr(a, name, value)
