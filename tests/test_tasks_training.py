"""The shared training loop: bit-identical resume, early stopping, atomic checkpoints."""
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from lstmkit.tasks import checkpoint  # noqa: E402
from lstmkit.tasks.classify.net import SequenceNet  # noqa: E402
from lstmkit.tasks.training import TrainConfig, fit, seed_everything  # noqa: E402


def _problem():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(96, 5, 3, generator=g)
    y = (x[:, :, 0].sum(1) > 0).long()
    lengths = torch.full((96,), 5)
    return (x[:64], lengths[:64], y[:64]), (x[64:], lengths[64:], y[64:])


def _loss(model, x, lengths, y):
    return torch.nn.functional.cross_entropy(model(x, lengths), y)


def _train(epochs, ckpt_dir, resume=False, patience=100):
    seed_everything(0)
    model = SequenceNet(3, 2, hidden_size=6, dropout=0.3)  # dropout: resume must restore torch's RNG too
    train, val = _problem()
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=1e-2, patience=patience, progress=False)
    result = fit(model, _loss, train, val, cfg, task="test", config={"k": 1}, ckpt_dir=ckpt_dir, resume=resume,
                 log=lambda *_: None)
    return model, result, ckpt_dir


def test_resume_is_bit_identical(tmp_path):
    a, ra, _ = _train(4, str(tmp_path / "a"))
    _train(2, str(tmp_path / "b"))
    b, rb, _ = _train(4, str(tmp_path / "b"), resume=True)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert [h["val_loss"] for h in ra["history"]] == [h["val_loss"] for h in rb["history"]]
    last_a = checkpoint.load(str(tmp_path / "a" / "last.safetensors"))
    last_b = checkpoint.load(str(tmp_path / "b" / "last.safetensors"))
    for k, v in last_a["model"].items():
        assert torch.equal(v, last_b["model"][k])


def test_checkpoints_written_atomically_with_config(tmp_path):
    _, result, d = _train(2, str(tmp_path / "a"))
    assert sorted(os.listdir(d)) == ["best.safetensors", "last.safetensors"]  # no temp files left behind
    ck = checkpoint.load(os.path.join(d, "last.safetensors"))
    assert ck["config"] == {"k": 1} and ck["trainer"]["epoch"] == 2 and ck["optim"]["state"]


def test_early_stopping_keeps_best_weights(tmp_path):
    model, result, d = _train(30, str(tmp_path / "c"), patience=1)
    assert result["stopped_early"] and len(result["history"]) < 30
    best = checkpoint.load(os.path.join(d, "best.safetensors"))["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, best[k])
    assert result["best_val_loss"] == min(h["val_loss"] for h in result["history"])


def test_resume_without_checkpoint_fails(tmp_path):
    with pytest.raises(FileNotFoundError):
        _train(2, str(tmp_path / "none"), resume=True)


def test_checkpoint_of_another_task_is_refused(tmp_path):
    import pytest
    import torch

    from lstmkit.tasks import checkpoint

    path = str(tmp_path / "m.safetensors")
    checkpoint.save(path, task="classify", config={"hidden_size": 3}, model=torch.nn.Linear(2, 3))
    assert checkpoint.load(path, task="classify")["config"] == {"hidden_size": 3}
    with pytest.raises(ValueError, match="holds a classify model, not a generate model"):
        checkpoint.load(path, task="generate")
