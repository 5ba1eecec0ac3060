"""lr_schedule='plateau' (the LSTM-FCN paper's reduce-on-plateau on the training loss): the rule step by step, the
rate the optimiser really used, the stop at the floor, a bit-identical resume mid-schedule, refused settings."""
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from lstmkit.tasks import checkpoint  # noqa: E402
from lstmkit.tasks.classify.net import SequenceNet  # noqa: E402
from lstmkit.tasks.training import (PLATEAU_MIN_DELTA, TrainConfig, check_plateau, fit, plateau_step,  # noqa: E402
                                    seed_everything)


def _state(lr):
    return {"lr_now": lr, "plateau_best": math.inf, "plateau_bad": 0}


def test_plateau_rule_reduces_after_patience_and_converges_at_the_floor():
    cfg = TrainConfig(lr=1.0, lr_schedule="plateau", plateau_patience=2, plateau_factor=0.5, plateau_min_ratio=0.25)
    state = _state(cfg.lr)
    # 0.9 - PLATEAU_MIN_DELTA / 2 is not an improvement on 0.9: within Keras' min_delta
    losses = [1.0, 0.9, 0.95, 0.9 - PLATEAU_MIN_DELTA / 2, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85]
    events = [plateau_step(cfg, state, loss) for loss in losses]
    assert events == [None, None, None, "reduced", None, None, "reduced", None, "converged", "converged"]
    assert state["lr_now"] == 0.25 and state["plateau_best"] == 0.8


def test_plateau_floor_is_not_undershot():
    cfg = TrainConfig(lr=1.0, lr_schedule="plateau", plateau_patience=1, plateau_factor=0.3, plateau_min_ratio=0.5)
    state = _state(cfg.lr)
    assert [plateau_step(cfg, state, 1.0) for _ in range(3)] == [None, "reduced", "converged"]
    assert state["lr_now"] == 0.5  # max(1.0 * 0.3, 0.5): the floor, not below it


def _problem():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 5, 3, generator=g)
    return x, torch.full((64,), 5), (x[:, :, 0].sum(1) > 0).long()


def _loss(model, x, lengths, y):
    return torch.nn.functional.cross_entropy(model(x, lengths), y)


def _train(epochs, ckpt_dir, resume=False, lr=0.05, **plateau):
    seed_everything(0)
    model = SequenceNet(3, 2, hidden_size=6, dropout=0.3)  # dropout: resume must restore torch's RNG too
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=lr, progress=False, lr_schedule="plateau",
                      **{"plateau_patience": 1, "plateau_factor": 0.5, "plateau_min_ratio": 1 / 64, **plateau})
    result = fit(model, _loss, _problem(), None, cfg, task="test", config={"k": 1}, ckpt_dir=ckpt_dir,
                 resume=resume, log=lambda *_: None)
    return model, result, cfg


def test_fit_follows_the_rule_on_its_own_training_losses(tmp_path):
    _, result, cfg = _train(12, str(tmp_path / "a"))
    hist = result["history"]
    state = _state(cfg.lr)
    expected = []
    for h in hist:  # replay the rule on the recorded training losses: the rates must be the ones trained at
        expected.append(state["lr_now"])
        plateau_step(cfg, state, h["train_loss"])
    assert [h["lr"] for h in hist] == expected
    assert min(expected) < cfg.lr  # the run did reduce (else this test would not test the rule)
    last = checkpoint.load(str(tmp_path / "a" / "last.safetensors"))
    assert last["optim"]["param_groups"][0]["lr"] == hist[-1]["lr"]  # what Adam really stepped with


def test_a_flat_training_loss_stops_at_the_floor():
    seed_everything(0)
    model = torch.nn.Linear(2, 2)
    flat = lambda m, x: (m.weight * 0).sum() + 1.0  # noqa: E731  a loss nothing can lower
    cfg = TrainConfig(epochs=50, batch_size=4, lr=0.1, progress=False, lr_schedule="plateau", plateau_patience=2,
                      plateau_factor=0.5, plateau_min_ratio=0.25)
    result = fit(model, flat, (torch.zeros(8, 2),), None, cfg, task="test", config={}, log=lambda *_: None)
    # epoch 1 sets the best; 2 bad epochs -> 0.05 (after 3), 2 more -> 0.025 (after 5), 2 more at the floor -> stop
    assert result["converged"] and result["stopped_early"] and len(result["history"]) == 7
    assert [h["lr"] for h in result["history"]] == [0.1] * 3 + [0.05] * 2 + [0.025] * 2


def test_resume_mid_plateau_is_bit_identical(tmp_path):
    a, ra, _ = _train(12, str(tmp_path / "a"))
    _train(9, str(tmp_path / "b"))  # stopped after the first reduction: the resumed run must keep its rate and best
    b, rb, _ = _train(12, str(tmp_path / "b"), resume=True)
    assert ra["history"][8]["lr"] < ra["history"][0]["lr"]
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert [(h["train_loss"], h["lr"]) for h in ra["history"]] == [(h["train_loss"], h["lr"]) for h in rb["history"]]


@pytest.mark.parametrize("field, value, message", [
    ("plateau_patience", 0, "plateau_patience: expected a positive integer (epochs), got 0"),
    ("plateau_patience", 2.5, "plateau_patience: expected a positive integer (epochs), got 2.5"),
    ("plateau_factor", 1.0, "plateau_factor: expected a factor in (0, 1), got 1.0"),
    ("plateau_factor", 0.0, "plateau_factor: expected a factor in (0, 1), got 0.0"),
    ("plateau_min_ratio", 0.0, "plateau_min_ratio: expected a fraction of lr in (0, 1], got 0.0"),
    ("plateau_min_ratio", 1.5, "plateau_min_ratio: expected a fraction of lr in (0, 1], got 1.5"),
])
def test_bad_plateau_settings_are_refused_by_name(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        check_plateau(TrainConfig(lr_schedule="plateau", **{field: value}))
