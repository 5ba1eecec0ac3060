"""lstmkit.introspect.trace and views: the traced gates and states obey the equations; the views are right."""
import numpy as np
import pytest

import lstmkit
from lstmkit import ref
from lstmkit.introspect import trace, views

TOL = dict(rtol=0, atol=1e-12)


def sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def previous(dt, t, valid_b, lengths, T):
    """Index of the state a direction read at step t, per sequence: None means its initial state."""
    if dt.reverse:
        return [t + 1 if t + 1 < lengths[b] else None for b in range(len(lengths))]
    return [t - 1 if t > 0 else None for b in range(len(lengths))]


def prev_state(dt, name, t, lengths, T):
    """(B, n) the state ``name`` ("h" or "c") the direction started step t from."""
    cur = dt.h if name == "h" else dt.c
    init = dt.h0 if name == "h" else dt.c0
    idx = previous(dt, t, None, lengths, T)
    return np.stack([init[b] if i is None else cur[i, b] for b, i in enumerate(idx)])


def check_equations(tr):
    """Recompute every gate from the weights and every state from the gates, step by step (textbook form)."""
    cfg, T = tr.config, tr.steps
    H = cfg.hidden_size
    for l, directions in enumerate(tr.layers):
        inp = np.nan_to_num(tr.layer_input(l))  # the reference feeds zeros past a sequence's end
        for d, dt in enumerate(directions):
            w = ref.rnn.layer_weights(tr.params, l, d)
            for t in range(T):
                ok = tr.valid[t]
                if not ok.any():
                    continue
                h_prev = prev_state(dt, "h", t, tr.lengths, T)
                gi = inp[t] @ w["weight_ih"].T + (w["bias_ih"] if "bias_ih" in w else 0)
                gh = h_prev @ w["weight_hh"].T + (w["bias_hh"] if "bias_hh" in w else 0)
                G = dt.gates
                if cfg.mode == "LSTM":
                    a = gi + gh
                    c_prev = prev_state(dt, "c", t, tr.lengths, T)
                    want = {"i": sig(a[:, :H]), "f": sig(a[:, H:2 * H]), "g": np.tanh(a[:, 2 * H:3 * H]),
                            "o": sig(a[:, 3 * H:])}
                    c = G["f"][t] * c_prev + G["i"][t] * G["g"][t]
                    m = G["o"][t] * np.tanh(dt.c[t])
                    h = m @ w["weight_hr"].T if cfg.proj_size else m
                    np.testing.assert_allclose(dt.c[t][ok], c[ok], **TOL)
                else:
                    r, z = sig(gi[:, :H] + gh[:, :H]), sig(gi[:, H:2 * H] + gh[:, H:2 * H])
                    want = {"r": r, "z": z, "n": np.tanh(gi[:, 2 * H:] + G["r"][t] * gh[:, 2 * H:])}
                    h = (1 - G["z"][t]) * G["n"][t] + G["z"][t] * h_prev
                np.testing.assert_allclose(dt.h[t][ok], h[ok], **TOL)
                for name, value in want.items():
                    np.testing.assert_allclose(G[name][t][ok], value[ok], rtol=0, atol=1e-12, err_msg=name)
                # past a sequence's end there is no step: NaN, not a stale value
                assert np.all(np.isnan(dt.h[t][~ok]))
                assert all(np.all(np.isnan(g[t][~ok])) for g in G.values())


CASES = [
    ("LSTM", dict(), None),
    ("LSTM", dict(bidirectional=True), [6, 3, 1]),
    ("LSTM", dict(num_layers=2), None),
    ("LSTM", dict(num_layers=2, bidirectional=True), [6, 2, 4]),
    ("LSTM", dict(proj_size=2), None),
    ("LSTM", dict(proj_size=3, num_layers=2, bidirectional=True), [5, 6, 2]),
    ("LSTM", dict(bias=False, batch_first=True), [6, 0, 3]),
    ("GRU", dict(), None),
    ("GRU", dict(bidirectional=True), [6, 3, 1]),
    ("GRU", dict(num_layers=2, bidirectional=True), [2, 6, 5]),
]


@pytest.mark.parametrize("mode,kw,lengths", CASES)
def test_trace_obeys_the_equations_and_matches_the_model(mode, kw, lengths):
    layer = getattr(lstmkit, mode)(4, 5, seed=1, dtype="float64", backend="reference", **kw)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 6, 4) if layer.config.batch_first else (6, 3, 4))
    tr = layer.trace(x, lengths=lengths)
    cfg = layer.config
    assert len(tr.layers) == cfg.num_layers and all(len(ds) == cfg.num_directions for ds in tr.layers)
    assert tr.layers[-1][0].gates[tr.gate_names[0]].shape == (6, 3, 5)
    assert tr.layers[0][0].h.shape == (6, 3, cfg.output_size)
    check_equations(tr)
    # the same numbers the model computes: its output, and its final state at each sequence's last step
    out, final = layer(x, lengths=lengths)
    out = out.transpose(1, 0, 2) if cfg.batch_first else out
    np.testing.assert_allclose(tr.output, out, rtol=0, atol=1e-12)
    h_n = final[0] if mode == "LSTM" else final
    top = tr.layers[-1][0]
    for b, n in enumerate(tr.lengths):
        if n:
            np.testing.assert_allclose(top.h[n - 1, b], h_n[(cfg.num_layers - 1) * cfg.num_directions, b], atol=1e-12)


def test_trace_with_initial_state_and_unbatched_input():
    layer = lstmkit.LSTM(3, 4, bidirectional=True, seed=0, dtype="float64")
    rng = np.random.default_rng(0)
    h0, c0 = rng.standard_normal((2, 2, 4)), rng.standard_normal((2, 2, 4))
    tr = layer.trace(rng.standard_normal((5, 2, 3)), hx=(h0, c0), lengths=[5, 3])
    np.testing.assert_array_equal(tr.layers[0][1].c0, c0[1])
    check_equations(tr)
    one = layer.trace(rng.standard_normal((5, 3)))  # (T, I): traced as one sequence
    assert one.x.shape == (5, 1, 3) and one.layers[0][0].h.shape == (5, 1, 4)


def test_torch_modules_trace_like_their_numpy_twin():
    torch = pytest.importorskip("torch")
    import lstmkit.torch as lt

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)  # exactly representable in both frontends
    for module in (lt.GRU(3, 4, num_layers=2, bidirectional=True), torch.nn.LSTM(3, 4, proj_size=2),
                   lt.LSTMCell(3, 4)):
        tr = trace(module, torch.from_numpy(x))
        twin = {"GRU": lstmkit.GRU, "LSTM": lstmkit.LSTM}[tr.config.mode]
        kw = {k: v for k, v in tr.config.to_dict().items() if k != "mode"}
        layer = twin(**kw, dtype="float64")
        layer.load_state_dict(tr.params)
        want = layer.trace(x.astype(np.float64))
        for a, b in zip(tr.layers, want.layers):
            for da, db in zip(a, b):
                np.testing.assert_array_equal(da.h, db.h)
        # and the torch module's own output agrees (in its float32)
        if "Cell" in type(module).__name__:  # a cell runs one step
            got = module(torch.from_numpy(x[0]))
            np.testing.assert_allclose(tr.layers[0][0].h[0], got[0].detach().numpy(), atol=1e-5)
        else:
            got = module(torch.from_numpy(x))[0]
            np.testing.assert_allclose(tr.output, got.detach().numpy(), atol=1e-5)


def test_trace_rejects_bad_input():
    layer = lstmkit.GRU(3, 4)
    with pytest.raises(ValueError, match="features"):
        layer.trace(np.zeros((5, 2, 7)))
    with pytest.raises(ValueError, match="lengths"):
        layer.trace(np.zeros((5, 2, 3)), lengths=[9, 1])
    with pytest.raises(TypeError, match="model"):
        trace(object(), np.zeros((5, 2, 3)))


def autograd_state_grads(layer, x, d_last):
    """Oracle: ∂L/∂h_t of every layer by torch autograd over an unrolled stack of torch cells."""
    torch = pytest.importorskip("torch")
    cfg = layer.config
    T, B, _ = x.shape
    cells = []
    for l in range(cfg.num_layers):
        cell = getattr(torch.nn, cfg.mode + "Cell")(cfg.input_size if l == 0 else cfg.hidden_size, cfg.hidden_size)
        cell = cell.double()
        cell.load_state_dict({k: torch.from_numpy(v) for k, v in ref.rnn.layer_weights(layer.params, l, 0).items()})
        cells.append(cell)
    hs = [[None] * T for _ in cells]
    state = [None] * len(cells)
    for t in range(T):
        inp = torch.from_numpy(x[t])
        for l, cell in enumerate(cells):
            out = cell(inp, state[l])
            h = out[0] if cfg.mode == "LSTM" else out
            h.retain_grad()
            hs[l][t], state[l], inp = h, out, h
    (hs[-1][-1] * torch.from_numpy(d_last)).sum().backward()
    return [np.stack([h.grad.numpy() for h in row]) for row in hs]


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_gradient_through_time_equals_autograd(mode):
    """∂L/∂h_t of every layer and step, for L reading the last output only, against torch autograd."""
    layer = getattr(lstmkit, mode)(3, 4, num_layers=2, seed=5, dtype="float64")
    rng = np.random.default_rng(1)
    T, B = 6, 2
    x = rng.standard_normal((T, B, 3))
    d_last = rng.standard_normal((B, 4))
    flow = views.gradient_norms(layer.trace(x), d_last)
    dh = autograd_state_grads(layer, x, d_last)
    for l in range(2):
        np.testing.assert_allclose(flow.dh[l][0], dh[l], atol=1e-12)
        np.testing.assert_allclose(flow.h[l][0], np.linalg.norm(dh[l], axis=2), atol=1e-12)
    d_out = np.zeros((T, B, 4))
    d_out[-1] = d_last
    dx, _, _ = ref.backward(layer.trace(x).cache, d_out)
    np.testing.assert_allclose(flow.dx, dx, atol=1e-12)
    assert flow.curve().shape == (T,)


def test_gradient_through_time_with_lengths_and_two_directions():
    layer = lstmkit.LSTM(3, 4, bidirectional=True, seed=0, dtype="float64")
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    tr = layer.trace(x, lengths=[5, 3])
    flow = views.gradient_norms(tr)
    d_out = np.zeros((5, 2, 8))
    d_out[4, 0], d_out[2, 1] = 1, 1  # each sequence's last valid step
    dx, _, _ = ref.backward(tr.cache, d_out)
    np.testing.assert_allclose(flow.dx, dx, atol=1e-12)
    assert np.all(flow.h[0][0][3:, 1] == 0) and np.all(flow.h[0][1][3:, 1] == 0)  # nothing past the end
    # the reverse direction's first step is a sequence's last one: only that state reaches the loss
    assert flow.h[0][1][4, 0] > 0 and np.all(flow.h[0][1][:4, 0] == 0)
    assert flow.h[0][1][2, 1] > 0 and np.all(flow.h[0][1][:2, 1] == 0)
    assert np.all(flow.h[0][0][:5, 0] > 0)  # the forward direction carries it back through every step


def test_trace_a_model_file(tmp_path):
    layer = lstmkit.GRU(3, 4, num_layers=2, seed=0, dtype="float64")
    path = lstmkit.save(layer, tmp_path / "gru.safetensors")
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    np.testing.assert_array_equal(trace(path, x).output, layer.trace(x).output)
    np.testing.assert_array_equal(trace(str(path), x).layers[1][0].h, layer.trace(x).layers[1][0].h)


@pytest.mark.parametrize("batch_first", [False, True])
def test_a_packed_sequence_is_traced_as_its_padded_form_and_lengths(batch_first):
    """A PackedSequence (which the torch modules take) is traced like its padded input with its lengths, in the
    sequences' original order; lengths given beside it are refused (it carries its own)."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence

    import lstmkit.torch as lt

    torch.manual_seed(0)
    module = lt.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=batch_first).double().eval()
    x, lengths = torch.randn(5, 3, 3, dtype=torch.float64), torch.tensor([2, 5, 3])
    x = x.transpose(0, 1) if batch_first else x
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    got, want = trace(module, packed), trace(module, x, lengths=lengths)
    np.testing.assert_array_equal(got.lengths, [2, 5, 3])
    for name, a in want.layers[-1][1].quantities().items():
        np.testing.assert_array_equal(got.layers[-1][1].quantities()[name], a)
    with pytest.raises(ValueError, match="lengths: a PackedSequence carries its own lengths"):
        trace(module, packed, lengths=lengths)
