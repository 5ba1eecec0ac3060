"""ES-RNN's dilated stack (``Forecaster(model='esrnn', dilations=((1, 3), (6, 12)))``, Smyl's monthly network):
fold/unfold against a hand-written step loop where step t reads the state of step t − d, the blocks' residual
connections, causality over origins, the default (no stack) unchanged, save/load, bad values refused by name and
the CLI flag."""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pd = pytest.importorskip("pandas")
pytest.importorskip("safetensors")

from lstmkit.cli import main  # noqa: E402
from lstmkit.tasks.forecast import Forecaster  # noqa: E402
from lstmkit.tasks.forecast.esrnn import ESRNN, DilatedStack, fold, unfold  # noqa: E402

from test_tasks_forecast_esrnn import _model_and_batch, seasonal_panel, small  # noqa: E402

CELLS = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}


def dilated_loop(layer, x, d: int, cell: str):
    """One recurrent layer (lstmkit.torch, one layer) as a dilated layer written out: a torch.nn cell with its
    weights stepped over x (B, T, F) in time order, step t starting from the state step t − d left (zeros for
    t < d). -> (B, T, hidden)."""
    sd = {k.removesuffix("_l0"): v for k, v in layer.state_dict().items()}
    ref = CELLS[cell](x.shape[2], sd["weight_hh"].shape[1])
    ref.load_state_dict(sd)
    states, outs = [], []
    for t in range(x.shape[1]):
        prev = states[t - d] if t >= d else None
        state = ref(x[:, t], prev)
        states.append(state)
        outs.append(state[0] if cell == "lstm" else state)
    return torch.stack(outs, 1)


def test_fold_puts_the_d_subsequences_in_rows_and_unfold_inverts_it():
    x = torch.arange(2 * 7 * 1, dtype=torch.float32).reshape(2, 7, 1)
    z = fold(x, 3)  # T 7 padded to 9: rows b·3 + r hold steps r, r + 3, r + 6 of sequence b
    assert z.shape == (6, 3, 1)
    assert z[1, :, 0].tolist() == [1.0, 4.0, 0.0] and z[3, :, 0].tolist() == [7.0, 10.0, 13.0]
    for d in (1, 2, 3, 7, 12):
        assert torch.equal(unfold(fold(x, d), d, 7), x)
    assert torch.equal(fold(x, 1), x)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("d", [1, 3, 4, 12])
def test_a_dilated_layer_is_a_step_loop_reading_the_state_d_steps_back(cell, d):
    torch.manual_seed(d)
    stack = DilatedStack(cell, 5, 6, [[d]])
    x = torch.randn(3, 11, 5)  # 11 steps: not a multiple of 3, 4 or 12 (dilation 12: every step starts at zero)
    with torch.no_grad():
        got, state = stack(x)
        want = dilated_loop(stack.blocks[0][0], x, d, cell)
    assert state is None and got.shape == (3, 11, 6)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def test_blocks_stack_their_layers_and_add_residuals_after_the_first():
    torch.manual_seed(0)
    stack = DilatedStack("lstm", 5, 6, [[1, 3], [6, 12]])
    x = torch.randn(2, 30, 5)
    with torch.no_grad():
        (l1, l3), (l6, l12) = stack.blocks
        first = dilated_loop(l3, dilated_loop(l1, x, 1, "lstm"), 3, "lstm")  # no residual: 5 inputs, 6 outputs
        want = dilated_loop(l12, dilated_loop(l6, first, 6, "lstm"), 12, "lstm") + first
        got, _ = stack(x)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def test_no_origin_reads_a_later_one():
    """Changing the values from step 20 on leaves every output before step 20 as it was, through the smoothing,
    the windows and all four dilated layers (whose padding past T comes after every real step)."""
    _, idx, y, n = _model_and_batch(T=30, lengths=(30, 30, 30))
    torch.manual_seed(1)
    model = ESRNN(5, 4, input_length=6, horizon=6, n_quantiles=3, hidden_size=8, dilations=[[1, 3], [6, 12]]).eval()
    later = y.clone()
    later[:, 20:] *= 1.7
    with torch.no_grad():
        pred, *_ = model(idx, y, n, torch.zeros(3, 4))
        moved, *_ = model(idx, later, n, torch.zeros(3, 4))
    np.testing.assert_allclose(moved[:, :20].numpy(), pred[:, :20].numpy(), rtol=1e-6, atol=1e-7)
    assert not torch.allclose(moved[:, 20:], pred[:, 20:])


def test_default_keeps_the_one_layer_and_dilation_one_is_that_layer():
    """dilations=None builds the plain layer (the state dict and config as before the option); one block of
    dilation 1 with the same weights is that layer, so the forecasts are equal."""
    df = seasonal_panel(n_series=4, n=30)
    plain = small().fit(df)
    assert "dilations" not in plain.config and not isinstance(plain.models[0].rnn, DilatedStack)
    assert {k for k in plain.models[0].state_dict() if k.startswith("rnn.")} == \
        {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0"}
    one = small(dilations=[[1]])
    one.config.update({k: plain.config[k] for k in ("series_ids", "series_heads", "series_shifts")})
    one._series = plain._series
    one.models = [one._build(one.config["members"][0])]
    state = {k.replace("rnn.", "rnn.blocks.0.0.") if k.startswith("rnn.") else k: v
             for k, v in plain.models[0].state_dict().items()}
    one.models[0].load_state_dict(state)
    np.testing.assert_allclose(one.predict()["yhat"], plain.predict()["yhat"], rtol=1e-6)


def test_dilated_forecaster_saves_and_loads(tmp_path):
    df = seasonal_panel(n_series=4, n=30)
    fc = small(dilations=((1, 2), (4,)), ensemble=2).fit(df)
    assert fc.config["dilations"] == [[1, 2], [4]]
    assert isinstance(fc.models[0].rnn, DilatedStack) and fc.models[1].rnn.dilations == ((1, 2), (4,))
    path = str(tmp_path / "m.safetensors")
    fc.save(path)
    back = Forecaster.load(path)
    assert back.config["dilations"] == [[1, 2], [4]] and back.models[0].rnn.dilations == ((1, 2), (4,))
    np.testing.assert_array_equal(back.predict_arrays({"s1": df.y[df.unique_id == "s1"].to_numpy()}, members=True),
                                  fc.predict_arrays({"s1": df.y[df.unique_id == "s1"].to_numpy()}, members=True))
    np.testing.assert_array_equal(back.predict()["yhat"], fc.predict()["yhat"])


WANT = r"dilations: expected blocks of positive integers such as \(\(1, 3\), \(6, 12\)\), got "


@pytest.mark.parametrize("value, got", [
    (0, "0"), ((), r"no blocks: \(\)"), (((),), r"\(\(\),\): block 0 is \(\)"),
    (((1, 0),), r"\(\(1, 0\),\): block 0 is \(1, 0\)"), (((3, -1),), r"\(\(3, -1\),\): block 0 is \(3, -1\)"),
    (((1,), (2.5,)), r"\(\(1,\), \(2.5,\)\): block 1 is \(2.5,\)"),
    (((True,),), r"\(\(True,\),\): block 0 is \(True,\)"), ("1,3", "'1,3'"),
    (((1, 3), "6"), r"\(\(1, 3\), '6'\): block 1 is '6', not a sequence$"),
    ((1, 3), r"\(1, 3\): block 0 is 1, not a sequence \(one block of these layers is written \(\(1, 3\),\)\)"),
])
def test_bad_dilations_are_refused_by_name(value, got):
    with pytest.raises(ValueError, match=WANT + got):
        small(dilations=value)


def test_dilations_only_for_esrnn_and_one_layer_a_dilation():
    with pytest.raises(ValueError, match="dilations: only model='esrnn' has a dilated stack, got"):
        small(model="lstm", dilations=[[1]])
    with pytest.raises(ValueError, match="num_layers: with dilations each dilation is a layer; leave num_layers at 1,"
                                         " got 2"):
        small(num_layers=2, dilations=[[1]])


def test_cli_dilations(tmp_path, capsys):
    csv = tmp_path / "tiny.csv"
    seasonal_panel(n_series=4, n=28).to_csv(csv, index=False)
    tiny = ["--csv", str(csv), "--horizon", "4", "--season-length", "4", "--epochs", "1", "--batches-per-epoch",
            "2", "--hidden-size", "8", "--no-progress", "--baselines", ""]
    out = str(tmp_path / "run")
    assert main(["forecast", *tiny, "--model", "esrnn", "--dilations", "1,2", "4", "--out", out]) == 0
    assert json.load(open(os.path.join(out, "results.json")))["config"]["dilations"] == [[1, 2], [4]]
    assert Forecaster.load(os.path.join(out, "model.safetensors")).models[0].rnn.dilations == ((1, 2), (4,))
    capsys.readouterr()
    assert main(["report", out, "--out", str(tmp_path / "r.html")]) != 0  # one layer to show: there are three
    assert "is an ES-RNN with a dilated stack (dilations [[1, 2], [4]])" in capsys.readouterr().err
    assert main(["forecast", *tiny, "--model", "lstm", "--dilations", "1,2", "--out", str(tmp_path / "bad")]) != 0
    assert "--dilations: only --model esrnn has a dilated stack, got 1,2 with --model lstm" in capsys.readouterr().err
    for value in ("0,3", "1,-2", "1.5", "a", ""):
        with pytest.raises(SystemExit) as e:
            main(["forecast", "--model", "esrnn", "--dilations", "1", value, "--out", str(tmp_path / "r2")])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "argument --dilations: expected a block of comma-separated positive" in err
        assert f"got {value!r}" in err and not (tmp_path / "r2").exists()
