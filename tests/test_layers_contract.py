"""The NumPy layers' contract with the code around them: parameters stay the live arrays an optimizer holds
(load_state_dict and attribute assignment copy in place), a backward reads what its forward saw (the layer's own
copy of x and hx; a refusal when lstmkit wrote the parameters in between), gradients and optimizer arguments
of the wrong shape or value are refused by name, and each thread's backward follows its own forward.
"""
from __future__ import annotations

import copy
import pickle
import re
import threading

import numpy as np
import pytest

import lstmkit
from lstmkit import GRU, LSTM, GRUCell, Linear, LSTMCell, optim

RNG = np.random.default_rng(0)


def _x(shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def _first(out):
    """The output (sequence layers) or h' (cells) of a forward call."""
    return out[0] if isinstance(out, tuple) else out


# the modules under test: (make, x shape); sequence layers on both backends
MODULES = {
    "LSTM-native": (lambda: LSTM(3, 4, num_layers=2, seed=0), (5, 2, 3)),
    "GRU-reference": (lambda: GRU(3, 4, seed=0, backend="reference"), (5, 2, 3)),
    "LSTMCell": (lambda: LSTMCell(3, 4, seed=0), (2, 3)),
    "GRUCell-reference": (lambda: GRUCell(3, 4, seed=0, backend="reference"), (2, 3)),
    "Linear": (lambda: Linear(3, 4, seed=0), (2, 3)),
}


def _run(module, x):
    """Forward and a backward of ones -> the gradients."""
    out = _first(module(x))
    return module.backward(np.ones_like(out))


# ------------------------------------------------------------------ parameters: live arrays, copied into in place

@pytest.mark.parametrize("name", list(MODULES))
def test_load_state_dict_copies_into_the_arrays_an_optimizer_holds(name):
    make, shape = MODULES[name]
    module = make()
    params, arrays = module.parameters(), dict(module.params)
    opt = optim.SGD(module.parameters(), lr=0.1)
    other = make()
    for value in other.params.values():
        value += 0.5  # another model's weights, e.g. a checkpoint loaded after the optimizer was built
    state = other.state_dict()
    module.load_state_dict(state)
    assert module.params is params
    assert all(module.params[k] is arrays[k] for k in arrays)  # same arrays, new values
    for k, v in state.items():
        np.testing.assert_array_equal(module.params[k], v)
    before = module.state_dict()
    grads = _run(module, _x(shape)).params
    opt.step(grads)
    for k in before:  # the step reached the layer
        np.testing.assert_allclose(module.params[k], before[k] - 0.1 * grads[k], rtol=1e-6, atol=1e-7, err_msg=k)
    np.testing.assert_array_equal(state[next(iter(state))], other.state_dict()[next(iter(state))])  # never aliased


def test_load_state_dict_strict_false_and_its_result():
    layer = LSTM(3, 4, seed=0)
    state = LSTM(3, 4, seed=1).state_dict()
    kept = layer.params["bias_hh_l0"].copy()
    partial = {k: v for k, v in state.items() if k != "bias_hh_l0"}
    result = layer.load_state_dict({**partial, "extra": np.zeros(2)}, strict=False)
    assert result.missing_keys == ["bias_hh_l0"] and result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(layer.params["bias_hh_l0"], kept)
    np.testing.assert_array_equal(layer.params["weight_ih_l0"], state["weight_ih_l0"])
    assert tuple(layer.load_state_dict(state)) == ([], [])
    with pytest.raises(ValueError, match=r"missing \['bias_hh_l0'\]"):
        layer.load_state_dict(partial)
    with pytest.raises(ValueError, match="strict"):
        layer.load_state_dict(state, strict="False")


@pytest.mark.parametrize("bad,error,text", [
    (np.full((16, 3), 1 + 2j), TypeError, "real numbers"),
    (np.full((16, 3), "1.5"), TypeError, "real numbers"),
    (np.full((16, 3), 1e300), ValueError, "range"),
    (np.full((16, 3), np.nan), ValueError, "finite"),
    (np.zeros((3, 16)), ValueError, r"expected shape \(16, 3\), got \(3, 16\)"),
], ids=["complex", "strings", "overflow", "nan", "transposed"])
def test_load_state_dict_refuses_values_by_key_and_writes_nothing(bad, error, text):
    layer = LSTM(3, 4, seed=0)
    before = layer.state_dict()
    state = {**LSTM(3, 4, seed=1).state_dict(), "weight_ih_l0": bad}
    with pytest.raises(error, match=text) as caught:
        layer.load_state_dict(state)
    assert "state_dict['weight_ih_l0']" in str(caught.value)
    for k, v in before.items():  # checked first: no parameter was written
        np.testing.assert_array_equal(layer.params[k], v)


def test_load_state_dict_reads_a_bfloat16_torch_tensor():
    torch = pytest.importorskip("torch")
    layer = LSTM(3, 4, seed=0)
    state = {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in layer.state_dict().items()}
    layer.load_state_dict(state)
    np.testing.assert_array_equal(layer.params["weight_ih_l0"], state["weight_ih_l0"].float().numpy())


@pytest.mark.parametrize("make", [LSTMCell, GRUCell])
def test_a_cell_takes_only_its_own_names(make):
    cell = make(3, 5, seed=0)
    own = make(3, 5, seed=1).state_dict()
    layer_names = {k + "_l0": np.zeros_like(v) for k, v in own.items()}
    with pytest.raises(ValueError, match=r"unexpected \['weight_ih_l0'\]"):
        cell.load_state_dict({**own, "weight_ih_l0": layer_names["weight_ih_l0"]})
    with pytest.raises(ValueError, match=r"missing \['weight_ih', .*unexpected \['weight_ih_l0'"):
        cell.load_state_dict(layer_names)  # a one-layer RNN's state_dict is not a cell's
    cell.load_state_dict(own)
    np.testing.assert_array_equal(cell.weight_ih, own["weight_ih"])


@pytest.mark.parametrize("make,name,shape", [
    (lambda: LSTM(3, 4, seed=0), "weight_ih_l0", (16, 3)),
    (lambda: GRUCell(3, 4, seed=0), "weight_ih", (12, 3)),
    (lambda: Linear(3, 4, seed=0), "weight", (4, 3)),
])
def test_assigning_a_parameter_copies_it_in_place(make, name, shape):
    module = make()
    live = module.params[name]
    x = _x((5, 2, 3) if isinstance(module, LSTM) else (2, 3))
    before = _first(module(x)).copy()
    value = np.zeros(shape, np.float64)  # castable: copied as the layer's dtype
    setattr(module, name, value)
    assert name not in vars(module)  # no attribute shadowing the parameter
    assert module.params[name] is live and getattr(module, name) is live
    assert not np.any(live) and live.dtype == module.dtype
    assert not np.array_equal(_first(module(x)), before)  # the forward reads the new value
    value[...] = 1.0
    assert not np.any(live)  # the caller's array is not kept
    with pytest.raises(ValueError, match=re.escape(f"{name}: expected shape {tuple(shape)}")):
        setattr(module, name, np.zeros(shape[::-1] + (1,)))
    with pytest.raises(ValueError, match=f"{name}: expected finite"):
        setattr(module, name, np.full(shape, np.inf))
    with pytest.raises(TypeError, match=f"{name}: expected real numbers"):
        setattr(module, name, np.zeros(shape, complex))


def test_cells_read_their_parameters_and_fields_as_attributes():
    cell = LSTMCell(3, 4, seed=0)
    assert cell.weight_ih is cell.params["weight_ih"] and cell.bias_hh is cell.params["bias_hh"]
    assert (cell.input_size, cell.hidden_size, cell.bias) == (3, 4, True)
    assert GRUCell(3, 4, bias=False).bias is False


@pytest.mark.parametrize("field,value", [("bias", False), ("hidden_size", 8), ("input_size", 2)])
def test_a_cells_shape_fields_are_refused_by_name(field, value):
    cell = GRUCell(3, 4, seed=0)
    with pytest.raises(AttributeError, match=f"{field}: fixed when the GRUCell is built"):
        setattr(cell, field, value)
    assert "bias_ih" in cell.params and (cell.input_size, cell.hidden_size) == (3, 4)
    setattr(cell, field, getattr(cell, field))  # an unchanged value passes, as on the sequence layers


def test_reference_backend_checks_arrays_put_into_params():
    x = _x((5, 2, 3))
    layer = LSTM(3, 4, seed=0, backend="reference")
    layer.params["bias_ih_l0"] = layer.params["bias_ih_l0"][:1]  # would broadcast in the reference's sums
    with pytest.raises(ValueError, match=r"params\['bias_ih_l0'\]: expected shape \(16,\), got \(1,\)"):
        layer(x)
    layer = LSTM(3, 4, seed=0, backend="reference")
    layer.params["weight_ih_l0"] = layer.params["weight_ih_l0"].astype(np.float64)  # would return float64
    with pytest.raises(TypeError, match=r"params\['weight_ih_l0'\]: expected dtype float32"):
        layer(x)
    cell = GRUCell(3, 4, seed=0, backend="reference")
    cell.params["bias_hh"] = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match=r"params\['bias_hh'\]"):
        cell(x[0])


# ------------------------------------------------------------------ what a backward reads

@pytest.mark.parametrize("name", list(MODULES))
def test_the_forward_keeps_its_own_copy_of_x(name):
    make, shape = MODULES[name]
    x = _x(shape)
    want = _run(make(), x.copy())
    module = make()
    out = _first(module(x))
    x[...] = _x(shape)  # the caller refills its buffer with the next batch before the backward
    got = module.backward(np.ones_like(out))
    np.testing.assert_array_equal(got.input, want.input)
    for k, v in want.params.items():
        np.testing.assert_array_equal(got.params[k], v, err_msg=k)


@pytest.mark.parametrize("make,x_shape,h_shape", [
    (lambda: LSTM(3, 4, seed=0), (5, 2, 3), (1, 2, 4)),
    (lambda: GRU(3, 4, seed=0, backend="reference"), (5, 2, 3), (1, 2, 4)),
    (lambda: LSTMCell(3, 4, seed=0), (2, 3), (2, 4)),
    (lambda: GRUCell(3, 4, seed=0, backend="reference"), (3,), (4,)),
])
def test_the_forward_keeps_its_own_copy_of_hx(make, x_shape, h_shape):
    x, h = _x(x_shape), _x(h_shape)
    lstm = isinstance(make(), (LSTM, LSTMCell))

    def hx(h):
        return (h, h.copy()) if lstm else h

    reference = make()
    out = _first(reference(x, hx(h.copy())))
    want = reference.backward(np.ones_like(out))
    module = make()
    given = hx(h)
    out = _first(module(x, given))
    h += 1.0  # the caller's state changes in place before the backward
    got = module.backward(np.ones_like(out))
    for k, v in want.params.items():
        np.testing.assert_array_equal(got.params[k], v, err_msg=k)


def _write_by_load(module):
    module.load_state_dict(module.state_dict())


def _write_by_assignment(module):
    name = next(iter(module.params))
    setattr(module, name, module.params[name].copy())


def _write_by_sgd(module):
    optim.SGD(module.parameters(), lr=0.1).step({k: np.zeros_like(v) for k, v in module.params.items()})


def _write_by_adam(module):
    optim.Adam(module.parameters()).step({k: np.zeros_like(v) for k, v in module.params.items()})


@pytest.mark.parametrize("write", [_write_by_load, _write_by_assignment, _write_by_sgd, _write_by_adam],
                         ids=["load_state_dict", "assignment", "SGD", "Adam"])
@pytest.mark.parametrize("name", list(MODULES))
def test_backward_refuses_parameters_lstmkit_wrote_since_the_forward(name, write):
    make, shape = MODULES[name]
    module = make()
    out = _first(module(_x(shape)))
    write(module)
    with pytest.raises(RuntimeError, match="parameters changed since the forward call"):
        module.backward(np.ones_like(out))
    out = _first(module(_x(shape)))  # a new forward: its backward runs
    module.backward(np.ones_like(out))


def test_an_optimizer_over_a_plain_dict_and_step_after_backward_still_work():
    layer = LSTM(3, 4, seed=0)
    opt = optim.Adam(layer.parameters(), lr=1e-2)
    for _ in range(3):  # the usual order: forward, backward, step
        grads = _run(layer, _x((5, 2, 3))).params
        opt.step(grads)
    merged = {"l." + k: v for k, v in layer.params.items()}  # a dict of several modules' arrays: not counted
    out = _first(layer(_x((5, 2, 3))))
    optim.SGD(merged).step({k: np.zeros_like(v) for k, v in merged.items()})
    layer.backward(np.ones_like(out))


def test_a_deep_copy_keeps_the_forward_and_a_pickle_drops_it():
    layer = GRU(3, 4, seed=0)
    x = _x((5, 2, 3))
    out, _ = layer(x)
    want = layer.backward(np.ones_like(out))
    twin = copy.deepcopy(layer)
    np.testing.assert_array_equal(twin.backward(np.ones_like(out)).input, want.input)
    back = pickle.loads(pickle.dumps(layer))
    with pytest.raises(RuntimeError, match="call the layer on an input first"):
        back.backward(np.ones_like(out))
    np.testing.assert_array_equal(back(x)[0], out)
    twin.weight_hh_l0 = np.zeros((12, 4))  # the copy's parameters are its own
    assert np.any(layer.weight_hh_l0)


# ------------------------------------------------------------------ gradients of exactly the returned shapes

def test_backward_refuses_gradients_of_another_shape():
    layer = LSTM(3, 4, num_layers=2, batch_first=True, seed=0)
    out, (h_n, c_n) = layer(_x((3, 5, 3)))  # B = 3, T = 5: h_n (2, 3, 4)
    zeros = np.zeros_like(out)
    with pytest.raises(ValueError, match=r"d_hn: expected shape \(2, 3, 4\) .*got \(3, 2, 4\)"):
        layer.backward(zeros, np.zeros((3, 2, 4), np.float32))  # batch-major, same size
    with pytest.raises(ValueError, match=r"d_cn: expected shape \(2, 3, 4\) .*got \(24,\)"):
        layer.backward(zeros, None, np.zeros(24, np.float32))
    with pytest.raises(ValueError, match=r"d_output: expected shape \(3, 5, 4\) .*got \(5, 3, 4\)"):
        layer.backward(np.zeros((5, 3, 4), np.float32))
    g = layer.backward(zeros, np.ones_like(h_n), np.ones_like(c_n))
    assert g.input.shape == (3, 5, 3)


def test_backward_follows_the_layout_of_its_forward():
    layer = GRU(3, 4, batch_first=True, seed=0)
    out, _ = layer(_x((2, 5, 3)))  # (B, T, ·)
    layer.batch_first = False  # the next forward's layout; this backward is the last forward's
    assert layer.backward(np.ones_like(out)).input.shape == (2, 5, 3)


def test_unbatched_and_cell_gradients_are_checked():
    layer = GRU(3, 4, num_layers=2, seed=0)
    out, h_n = layer(_x((5, 3)))  # unbatched: out (5, 4), h_n (2, 4)
    assert layer.backward(np.ones_like(out), np.ones_like(h_n)).hx.shape == (2, 4)
    with pytest.raises(ValueError, match=r"d_hn: expected shape \(2, 4\)"):
        layer.backward(np.ones_like(out), np.ones((2, 1, 4), np.float32))
    cell = GRUCell(3, 4, seed=0)
    cell(_x((3, 3)))
    with pytest.raises(ValueError, match=r"d_h: expected shape \(3, 4\) .*got \(4, 3\)"):
        cell.backward(np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"d_h: expected shape \(3, 4\) .*got \(1, 4\)"):
        cell.backward(np.ones((1, 4), np.float32))  # would broadcast
    lstm_cell = LSTMCell(3, 4, seed=0)
    lstm_cell(_x((3,)))
    with pytest.raises(ValueError, match=r"d_c: expected shape \(4,\) .*got \(1, 4\)"):
        lstm_cell.backward(np.ones(4, np.float32), np.ones((1, 4), np.float32))
    linear = Linear(3, 2, seed=0)
    linear(_x((4, 3)))
    with pytest.raises(ValueError, match=r"d_y: expected shape \(4, 2\)"):
        linear.backward(np.ones((2, 4)))


# ------------------------------------------------------------------ a cell's state errors speak of the cell

@pytest.mark.parametrize("call,error,text", [
    (lambda c: c(np.ones(3, np.float32), (np.zeros((1, 5), np.float32),) * 2), ValueError,
     r"hx \(h\): expected shape \(5,\) \(hidden_size,\) for an unbatched input, got \(1, 5\)"),
    (lambda c: c(np.ones((2, 3), np.float32), (np.zeros((2, 5), np.float32), np.zeros((3, 5), np.float32))),
     ValueError, r"hx \(c\): expected shape \(2, 5\) \(batch, hidden_size\), got \(3, 5\)"),
    (lambda c: c(np.ones((2, 3), np.float32), np.zeros((2, 5), np.float32)), TypeError,
     r"hx: expected a tuple \(h, c\) for an LSTMCell, got ndarray"),
    (lambda c: c(np.ones((2, 3), np.float32), (np.zeros((2, 5)),) * 2), TypeError,
     r"hx \(h\): expected dtype float32"),
], ids=["unbatched", "batch", "form", "dtype"])
def test_cell_state_errors_name_the_cells_own_shapes(call, error, text):
    with pytest.raises(error, match=text):
        call(LSTMCell(3, 5, seed=0))


def test_gru_cell_state_errors():
    cell = GRUCell(3, 5, seed=0)
    with pytest.raises(ValueError, match=r"hx: expected shape \(2, 5\) \(batch, hidden_size\), got \(5,\)"):
        cell(np.ones((2, 3), np.float32), np.zeros(5, np.float32))
    with pytest.raises(TypeError, match="hx: expected one array h for a GRUCell, got a tuple"):
        cell(np.ones((2, 3), np.float32), (np.zeros((2, 5), np.float32),))


# ------------------------------------------------------------------ modes and threads

@pytest.mark.parametrize("mode", ["False", 0, 1, None])
def test_train_takes_only_a_bool(mode):
    layer = LSTM(3, 4).eval()
    with pytest.raises(ValueError, match="training mode is expected to be boolean"):
        layer.train(mode)
    assert layer.training is False
    assert layer.train(np.bool_(True)).training is True


def test_a_new_thread_with_an_ended_threads_ident_has_no_forward():
    layer = LSTM(3, 4, seed=0)
    ended = {}

    def forward():
        layer(_x((5, 2, 3)))
        ended["ident"] = threading.get_ident()

    worker = threading.Thread(target=forward)
    worker.start()
    worker.join()
    # the OS may give the next thread the ended one's ident: here that thread is this one, forced
    entries = layer._contexts._by_thread
    entries[threading.get_ident()] = entries.pop(ended["ident"])
    with pytest.raises(RuntimeError, match=r"call the layer on an input first in this thread \(each thread's"):
        layer.backward(np.ones((5, 2, 4), np.float32))


# ------------------------------------------------------------------ optimizers

def test_adam_counts_steps_per_parameter():
    params = {"a": np.ones(3), "b": np.ones(3)}
    opt = optim.Adam(params, lr=0.1)
    g = np.array([0.5, -1.0, 2.0])
    for _ in range(3):
        opt.step({"a": g})  # b has no gradient yet (frozen, or unused by the loss)
    opt.step({"a": g, "b": g})
    # b's first step: bias-corrected m/√v is sign(g), so it moves by lr (torch.optim.Adam: [0.9, 1.1, 0.9])
    np.testing.assert_allclose(params["b"], [0.9, 1.1, 0.9], rtol=1e-6)
    np.testing.assert_allclose(params["a"], [0.6, 1.4, 0.6], rtol=1e-6)
    assert opt.steps == {"a": 4, "b": 1}


@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=0.1, momentum=0.9), lambda p: optim.Adam(p, lr=0.1)],
                         ids=["SGD", "Adam"])
def test_optimizers_check_every_gradient_before_changing_anything(make):
    params = {"a": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    opt = make(params)
    with pytest.raises(ValueError, match=r"grads\['b'\]: expected shape \(3,\) \(the parameter's\), got \(2, 3\)"):
        opt.step({"a": np.ones((2, 3), np.float32), "b": np.ones((2, 3), np.float32)})  # would broadcast
    with pytest.raises(ValueError, match=r"grads\['a'\]: expected shape \(2, 3\)"):
        opt.step({"a": np.ones(3, np.float32)})
    with pytest.raises(KeyError, match=r"grads\['c'\]: not a parameter"):
        opt.step({"a": np.ones((2, 3), np.float32), "c": np.ones(3)})
    assert not np.any(params["a"]) and not np.any(params["b"])  # refused steps wrote nothing
    opt.step({"a": np.ones((2, 3), np.float32), "b": None})  # None: no gradient, skipped as torch does
    assert np.all(params["a"] < 0) and not np.any(params["b"])


@pytest.mark.parametrize("make,name", [
    (lambda: optim.SGD({}, lr=float("nan")), "lr"),
    (lambda: optim.SGD({}, lr=float("inf")), "lr"),
    (lambda: optim.SGD({}, lr=0.1, momentum=-0.5), "momentum"),
    (lambda: optim.Adam({}, lr=-1.0), "lr"),
    (lambda: optim.Adam({}, betas=(0.9,)), "betas"),
    (lambda: optim.Adam({}, betas=(1.0, 0.999)), r"betas\[0\]"),
    (lambda: optim.Adam({}, betas=(0.9, -0.1)), r"betas\[1\]"),
    (lambda: optim.Adam({}, eps=-1e-8), "eps"),
    (lambda: optim.Adam({}, eps=float("nan")), "eps"),
])
def test_optimizer_arguments_are_refused_by_name(make, name):
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        make()


def test_clip_grad_norm_to_zero_and_refusals():
    grads = {"a": np.ones(3, np.float32), "b": None}
    assert optim.clip_grad_norm(grads, 0.0) == pytest.approx(np.sqrt(3))
    assert not np.any(grads["a"])  # torch's clip_grad_norm_(max_norm=0) gives zeros
    grads = {"a": np.full(4, 0.5)}
    assert optim.clip_grad_norm(grads, 1.0) == pytest.approx(1.0)
    np.testing.assert_array_equal(grads["a"], 0.5)  # at the limit: unchanged
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="max_norm: expected a number >= 0"):
            optim.clip_grad_norm({"a": np.ones(2)}, bad)


def test_parameters_is_the_live_dict():
    layer = lstmkit.LSTM(3, 4)
    assert layer.parameters() is layer.params
    assert list(layer.parameters()) == list(layer.state_dict())  # names, as the docstring says
