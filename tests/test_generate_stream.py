"""The char LM's stronger options: weight tying (one tensor, through save/load), stream training with a step
count or a wall-clock budget, the options training on the native engine, and bad values named."""
import json
import math
import os
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lstmkit.torch.modules as modules  # noqa: E402
import lstmkit.torch.ops as ops  # noqa: E402
from lstmkit import engine, ref  # noqa: E402
from lstmkit.cli import main  # noqa: E402
from lstmkit.tasks import checkpoint  # noqa: E402
from lstmkit.tasks.generate import CharLM  # noqa: E402
from lstmkit.tasks.generate.net import CharNet  # noqa: E402
from lstmkit.tasks.generate.stream import StreamConfig  # noqa: E402

TEXT = "def f(x):\n    return x + 1\n\nclass A:\n    pass\n" * 60  # ~2.8K characters


def _quiet(*args, **kwargs):
    pass


def test_tied_output_layer_is_the_embedding_tensor():
    torch.manual_seed(0)
    net = CharNet(11, embed_dim=8, hidden_size=8, tie_weights=True)
    names = dict(net.named_parameters())
    assert "head.weight" not in names and "head_bias" in names
    x = torch.tensor([[1, 2, 3]])
    logits, _ = net(x)
    out, _ = net.rnn(net.embed(x))
    # the same float32 product either way: equal to the last bit
    torch.testing.assert_close(logits, out @ net.embed.weight.T + net.head_bias, rtol=0, atol=0)
    logits[0, -1, 7].backward()  # id 7 is not in the input: only the output layer reaches its row
    assert net.embed.weight.grad[7].abs().sum() > 0


def test_tied_model_survives_save_and_load(tmp_path):
    lm = CharLM(hidden_size=16, embed_dim=16, tie_weights=True, steps=3, batch_size=4, seq_len=16, eval_every=2)
    lm.fit(TEXT[:2000], TEXT[2000:2400], log=_quiet)
    path = str(tmp_path / "m.safetensors")
    lm.save(path)
    back = CharLM.load(path)
    assert back.config["tie_weights"] and back.model.tied
    assert "model.head.weight" not in checkpoint.load(path)["tensors"]
    probe = TEXT[2400:2600]
    np.testing.assert_allclose(back.next_char_probs(probe), lm.next_char_probs(probe), rtol=0, atol=1e-7)
    with torch.no_grad():  # still tied after loading: one write moves the logits too
        before, _ = back.model(torch.tensor([[1, 2]]))
        back.model.embed.weight[3] += 1.0
        after, _ = back.model(torch.tensor([[1, 2]]))
    assert (after[0, :, 3] != before[0, :, 3]).all()


def test_zoneout_and_recurrent_dropout_regularise_training_only_and_survive_save_load(tmp_path):
    """The variant cell's options reach the recurrent layer; they draw masks in training (two training forwards
    differ) and not in evaluation (zoneout by its expectation: two evaluations agree), and a saved model comes
    back with them (the same probabilities) and names them in its table row."""
    from lstmkit.tasks.generate.job import describe

    lm = CharLM(hidden_size=16, embed_dim=16, tie_weights=True, zoneout=(0.5, 0.05), recurrent_dropout=0.25,
                steps=3, batch_size=4, seq_len=16, eval_every=2)
    lm.fit(TEXT[:2000], TEXT[2000:2400], log=_quiet)
    rnn = lm.model.rnn
    assert rnn.config.zoneout == (0.5, 0.05) and rnn.config.recurrent_dropout == 0.25
    x = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        lm.model.train()
        a, b = lm.model(x)[0], lm.model(x)[0]
        lm.model.eval()
        c, d = lm.model(x)[0], lm.model(x)[0]
    assert not torch.equal(a, b) and torch.equal(c, d)
    path = str(tmp_path / "zo.safetensors")
    lm.save(path)
    back = CharLM.load(path)
    assert back.model.rnn.config.zoneout == (0.5, 0.05) and back.model.rnn.config.recurrent_dropout == 0.25
    probe = TEXT[2400:2600]
    np.testing.assert_allclose(back.next_char_probs(probe), lm.next_char_probs(probe), rtol=0, atol=1e-7)
    assert describe(back.config) == "16 hidden, tied, zoneout 0.5/0.05, recurrent dropout 0.25"


def test_checkpoint_without_the_new_options_still_loads(tmp_path):
    lm = CharLM(hidden_size=8, embed_dim=4, epochs=1, batches_per_epoch=1, seq_len=16)
    lm.fit(TEXT[:1000], log=_quiet)
    new_keys = ("embed_dropout", "proj_size", "layer_norm", "tie_weights", "steps", "time_budget", "warmup",
                "weight_decay", "eval_every", "zoneout", "recurrent_dropout")
    for k in new_keys:  # as an older lstmkit wrote it
        del lm.config[k]
    path = str(tmp_path / "old.safetensors")
    lm.save(path)
    back = CharLM.load(path)
    assert not back.model.tied and back.sample("def", 5).startswith("def")


def test_time_budget_stops_on_time():
    budget = 1.5
    lm = CharLM(hidden_size=16, embed_dim=8, time_budget=budget, steps=10**6, batch_size=4, seq_len=16,
                eval_every=10**6)
    start = time.perf_counter()
    lm.fit(TEXT[:2000], TEXT[2000:2400], log=_quiet)
    wall = time.perf_counter() - start
    h = lm.history_
    assert h["stopped_by"] == "time budget" and 0 < h["steps"] < 10**6
    # the loop checks the clock before each step: it overruns by at most one step plus the final validation
    # (~0.1 s each for this net even on a loaded 2-core machine; 3 s allows 30x)
    assert budget <= h["seconds"] < budget + 3 and wall < budget + 3


def test_steps_schedule_warms_up_and_decays_to_the_floor():
    cfg = StreamConfig(lr=1e-2, warmup=9, min_lr=0.1, steps=100)
    assert math.isclose(cfg.lr_at(0, 0.0), 1e-3)  # (0 + 1) / (9 + 1) of lr
    assert math.isclose(cfg.lr_at(9, 0.0), 1e-2)
    assert math.isclose(cfg.lr_at(99, cfg.progress(100, 0.0)), 1e-3)  # the floor, min_lr·lr
    assert math.isclose(StreamConfig(time_budget=10.0).progress(0, 5.0), 0.5)
    lm = CharLM(hidden_size=8, embed_dim=8, steps=5, batch_size=2, seq_len=8, eval_every=2)
    lm.fit(TEXT[:1000], TEXT[1000:1300], log=_quiet)
    h = lm.history_
    assert h["steps"] == 5 and h["stopped_by"] == "steps" and [e["step"] for e in h["evaluations"]] == [2, 4, 5]
    assert h["best_val_bpc"] == min(e["val_bpc"] for e in h["evaluations"])


@pytest.mark.skipif(not engine.available(), reason="lstmkit._engine is not built")
@pytest.mark.parametrize("options", [
    {"tie_weights": True, "num_layers": 2, "dropout": 0.2, "embed_dropout": 0.1},
    {"proj_size": 8, "embed_dim": 8, "tie_weights": True, "num_layers": 2, "dropout": 0.2},
    {"layer_norm": True, "num_layers": 2, "dropout": 0.2},
    {"layer_norm": True, "tie_weights": True},  # benchmarks/tasks_run.py's text model
    {"zoneout": (0.5, 0.05), "tie_weights": True},
    {"recurrent_dropout": 0.25, "zoneout": (0.2, 0.1), "num_layers": 2, "dropout": 0.2},
    {"cell": "gru", "zoneout": (0.0, 0.1), "recurrent_dropout": 0.2},
])
def test_new_options_train_on_the_native_engine(options, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the NumPy reference or torch's kernels ran")

    for module in (ref, ref.rnn):
        monkeypatch.setattr(module, "forward", refuse)
        monkeypatch.setattr(module, "backward", refuse)
    monkeypatch.setattr(modules.devices, "sequence_forward", refuse)
    calls = []
    native = engine.train_forward  # what lstmkit::rnn_train runs: the engine's training forward
    monkeypatch.setattr(ops.engine, "train_forward", lambda *a, **k: calls.append(1) or native(*a, **k))
    kw = {"hidden_size": 16, "embed_dim": 16, "num_layers": 1, **options}
    lm = CharLM(steps=2, batch_size=4, seq_len=16, eval_every=2, **kw)
    lm.fit(TEXT[:2000], TEXT[2000:2400], log=_quiet)
    assert len(calls) == 2  # per step one native training call, inter-layer dropout's masks an input of it
    assert all(math.isfinite(e["val_bpc"]) for e in lm.history_["evaluations"])


@pytest.mark.parametrize("kwargs, name", [
    ({"steps": 0}, "steps"),
    ({"time_budget": -1.0}, "time_budget"),
    ({"steps": 5, "warmup": -1}, "warmup"),
    ({"steps": 5, "weight_decay": -0.1}, "weight_decay"),
])
def test_bad_stream_settings_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CharLM(**kwargs)


@pytest.mark.parametrize("kwargs, name", [
    ({"tie_weights": True, "embed_dim": 4, "hidden_size": 8}, "tie_weights"),
    ({"proj_size": 8, "hidden_size": 8}, "proj_size"),
    ({"proj_size": 2, "cell": "gru"}, "proj_size"),
    ({"embed_dropout": 1.0}, "embed_dropout"),
    ({"zoneout": (0.5, 1.0)}, r"zoneout\[1\]"),
    ({"zoneout": 0.5}, "zoneout: expected a pair"),
    ({"zoneout": ("a", 0.1)}, r"zoneout\[0\]"),
    ({"cell": "gru", "zoneout": (0.1, 0.1)}, "zoneout: a GRU has no cell state"),
    ({"recurrent_dropout": -0.1}, "recurrent_dropout"),
])
def test_bad_network_options_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CharNet(11, **kwargs)


@pytest.mark.parametrize("argv, flag", [
    (["--time-budget", "0"], "--time-budget"),
    (["--steps", "0"], "--steps"),
    (["--dropout", "1.5"], "--dropout"),
    (["--embed-dropout", "-0.1"], "--embed-dropout"),
    (["--proj-size", "-1"], "--proj-size"),
    (["--warmup", "x"], "--warmup"),
    (["--weight-decay", "-1"], "--weight-decay"),
    (["--eval-every", "0"], "--eval-every"),
    (["--zoneout", "0.5", "1"], "--zoneout"),
    (["--recurrent-dropout", "1"], "--recurrent-dropout"),
])
def test_bad_flags_are_argparse_errors_naming_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate"] + argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "expected" in err


@pytest.mark.parametrize("argv, flag", [
    (["--tie-weights", "--embed-dim", "16", "--hidden-size", "32"], "--tie-weights"),
    (["--proj-size", "32", "--hidden-size", "32"], "--proj-size"),
    (["--resume", "--steps", "3"], "--resume"),
    (["--steps", "3", "--epochs", "4"], "--epochs"),  # epoch-training flags would be ignored: refused
    (["--time-budget", "1", "--patience", "9"], "--patience"),
    (["--steps", "3", "--lr-schedule", "constant"], "--lr-schedule"),
    (["--warmup", "5"], "--warmup"),  # and stream-training flags in epoch training
    (["--eval-every", "7"], "--eval-every"),
    (["--cell", "gru", "--zoneout", "0.3", "0.1"], "--zoneout"),
])
def test_flags_that_do_not_fit_together_are_named(argv, flag, tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path / "r")] + argv) != 0
    err = capsys.readouterr().err
    assert flag in err and not os.path.exists(tmp_path / "r")  # refused before the run folder is made


def test_generate_cli_with_stream_training_and_sampling(tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = ["generate", "--limit", "12000", "--steps", "3", "--eval-every", "2", "--hidden-size", "16",
            "--embed-dim", "16", "--tie-weights", "--num-layers", "2", "--dropout", "0.1", "--seq-len", "16",
            "--batch-size", "4", "--n-chars", "20", "--prompt", "def ", "--dynamic-lr", "0", "--out", out,
            "--no-progress"]
    assert main(argv) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["training"]["steps"] == 3 and res["training_time"]["chars_read"] == 3 * 4 * 16
    assert len(res["training_time"]["load_average_before"]) == 3
    assert res["table"][0]["model"].startswith("LSTM char LM (2x16 hidden, tied, static)")
    assert all(s.startswith("def ") and len(s) == 24 for s in res["samples"])
    capsys.readouterr()
    assert main(["predict", "--model", os.path.join(out, "model.safetensors"), "--prompt", "if", "--n-chars",
                 "10"]) == 0
    assert capsys.readouterr().out.startswith("if")


def test_char_net_dropout_draws_torch_dropouts_distribution_from_torch_seed():
    """net.Dropout (NumPy's generator for the CPU's masks): identity in evaluation; in training every value is 0
    or x/(1 − p), kept with probability 1 − p (within 5 binomial standard deviations over 2^18 values), the
    gradient flows through the kept values only, and torch's seed decides the mask (same seed, same mask)."""
    from lstmkit.tasks.generate.net import Dropout

    p = 0.65
    drop = Dropout(p)
    x = torch.rand(64, 64, 64, dtype=torch.float64) + 0.5  # no zeros of its own
    assert drop.eval()(x) is x and Dropout(0.0).train()(x) is x
    drop.train()
    torch.manual_seed(3)
    y = drop(x.requires_grad_(True))
    kept = y != 0
    np.testing.assert_allclose(y[kept].detach().numpy(), (x[kept] / (1 - p)).detach().numpy(), rtol=1e-15)
    n = x.numel()
    assert abs(kept.sum().item() - n * (1 - p)) < 5 * math.sqrt(n * p * (1 - p))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.double() / (1 - p), rtol=0, atol=0)
    torch.manual_seed(3)
    assert torch.equal(drop(x.detach()) != 0, kept)
    assert not torch.equal(drop(x.detach()) != 0, kept)  # the next draw is another mask
    assert drop(torch.ones(4, dtype=torch.bfloat16)).dtype == torch.bfloat16
