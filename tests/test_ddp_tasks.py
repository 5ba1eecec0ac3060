"""The task trainers' own DDP paths, 2 processes (torchrun, gloo on loopback) against 1, in one torchrun launch
whose worker (this file) runs every scenario:

* ES-RNN's weighted loss (a weighted mean per rank is not its share of the batch's) trains the same weights;
* LSTM-FCN's masked batch norm takes the global batch's statistics (params and running buffers agree), a rank
  with no example in the last batch counting nothing;
* the stream trainer (``CharLM(steps=...)``) is data-parallel: each rank reads its rows, the weights follow one
  process's;
* with dropout, the ranks draw different masks and a resume gives each rank its own RNG back (bit-identical to
  the uninterrupted 2-process run);
* rank 0 alone decides whether to resume (``Forecaster``, ``SequenceClassifier(ensemble=2)``), so a rank that
  cannot see the run folder follows it instead of training afresh (which deadlocked).

Tolerance as tests/test_ddp.py: float32 weights within atol 1e-6 + rtol 1e-5 (summation order only).

Worker: ``python -m torch.distributed.run ... tests/test_ddp_tasks.py OUT``.
"""
import json
import os
import shutil
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
pd = pytest.importorskip("pandas")
if not torch.distributed.is_available():  # pragma: no cover
    pytest.skip("torch.distributed is not available", allow_module_level=True)

ATOL, RTOL = 1e-6, 1e-5
TEXT = "def f(x):\n    return x + 1\n\nclass A:\n    pass\n" * 20


def _quiet(*args, **kwargs):
    pass


# -- the scenarios, run alike by one process (here) and by each rank (the worker) ---------------------------------

def _panel(n_series=12, n=40, m=4):
    rng = np.random.default_rng(0)
    rows = []
    for k in range(n_series):
        t = np.arange(n)
        y = (100 + 10 * k) * (1 + 0.3 * np.sin(2 * np.pi * (t + k) / m)) * (1 + 0.05 * rng.standard_normal(n))
        rows.append(pd.DataFrame({"unique_id": f"s{k}", "ds": t, "y": y}))
    return pd.concat(rows, ignore_index=True)


def esrnn(out, epochs=2, resume=False):
    """ES-RNN with the MASE loss weights and the level penalty (two weighted means); 12 series in batches of 5."""
    from lstmkit.tasks.forecast import Forecaster

    fc = Forecaster(horizon=4, season_length=4, model="esrnn", hidden_size=8, epochs=epochs, batches_per_epoch=3,
                    batch_size=5, lr=1e-2, loss_weights="mase", level_penalty=1.0, refit=False)
    fc.fit(_panel(), ckpt_dir=out, resume=resume, log=_quiet)
    return fc


def _sequences(n=41, T=6):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, T, 3, generator=g) + torch.linspace(0, 3, n)[:, None, None]
    lengths = torch.randint(3, T + 1, (n,), generator=g)
    lengths[:20] = T  # some batches without padding: batch norm's unmasked path too
    return x, lengths, (x[:, :, 0].sum(1) > 6).long()


def _fit(model, out, epochs, batch_size, resume=False):
    from lstmkit.tasks.training import TrainConfig, fit

    x, lengths, y = _sequences()
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=1e-2, patience=100, progress=False)
    loss = lambda m, x, n, y: torch.nn.functional.cross_entropy(m(x, n), y)  # noqa: E731
    fit(model, loss, (x[:31], lengths[:31], y[:31]), (x[31:], lengths[31:], y[31:]), cfg, task="test",
        config={"k": 1}, ckpt_dir=out, resume=resume, log=_quiet)


def fcn(out):
    """LSTM-FCN without dropout; 31 cases in batches of 10: the last batch's one case leaves rank 1 a placeholder.
    The conv biases are frozen: batch norm cancels them, so their gradient is rounding noise that Adam would blow
    up to steps of lr in a random direction (in one process as much as in two)."""
    from lstmkit.tasks.classify.net import LSTMFCN
    from lstmkit.tasks.training import seed_everything

    seed_everything(0)
    model = LSTMFCN(3, 2, steps=6, hidden_size=4, dropout=0.0)
    for block in model.blocks:
        block.conv.bias.requires_grad_(False)
    _fit(model, out, 2, 10)


def fcn_gradients(path):
    """One training step's gradients and batch-norm buffers of LSTM-FCN (conv biases trainable here), through the
    loop's own step (``training._step_loss``): a batch of 10 (5 per rank), then one of 1 case (rank 1 runs a
    placeholder that must count nothing). Written by rank 0 to ``path``."""
    from lstmkit.tasks import distributed
    from lstmkit.tasks.classify.net import LSTMFCN
    from lstmkit.tasks.training import _step_loss, seed_everything

    seed_everything(0)
    model = LSTMFCN(3, 2, steps=6, hidden_size=4, dropout=0.0).train()
    net = distributed.wrap(model)
    x, lengths, y = _sequences()
    loss_fn = lambda m, x, n, y: torch.nn.functional.cross_entropy(m(x, n), y)  # noqa: E731
    found = []
    for idx in (torch.arange(15, 25), torch.tensor([30])):  # padded and unpadded cases in the first
        model.zero_grad(set_to_none=True)
        loss, _, _ = _step_loss(net, loss_fn, (x, lengths, y), idx, torch.device("cpu"), distributed.rank(),
                                distributed.world_size())
        loss.backward()
        found.append({**{f"grad.{k}": p.grad.clone() for k, p in model.named_parameters()},
                      **{k: b.clone() for k, b in model.named_buffers()}})
    if distributed.is_main():
        torch.save(found, path)


def dropout(out, epochs, resume=False):
    """SequenceNet with dropout between its 2 layers and before the head."""
    from lstmkit.tasks.classify.net import SequenceNet
    from lstmkit.tasks.training import seed_everything

    seed_everything(0)
    _fit(SequenceNet(3, 2, hidden_size=8, num_layers=2, dropout=0.3, head_dropout=0.3), out, epochs, 8, resume)


def stream(out):
    """CharLM stream training (steps): 4 streams, 2 per rank."""
    from lstmkit.tasks.generate import CharLM

    lm = CharLM(hidden_size=16, embed_dim=8, seq_len=16, batch_size=4, steps=6, eval_every=3, warmup=2)
    rows = []
    lm_build = lm._build

    def build():  # count the stream rows the model reads, on this rank
        model = lm_build()
        model.register_forward_pre_hook(lambda m, args: rows.append(int(args[0].shape[0])) if m.training else None)
        return model

    lm._build = build
    lm.fit(TEXT, TEXT[:300], ckpt_dir=out)
    return lm, rows


def classify_ensemble(out, epochs, resume=False):
    from lstmkit.tasks.classify import SequenceClassifier

    x, lengths, y = _sequences()
    clf = SequenceClassifier(hidden_size=8, epochs=epochs, batch_size=16, ensemble=2, head_dropout=0.0)
    clf.fit(x[:, :5].numpy(), y.numpy(), ckpt_dir=out, resume=resume, log=_quiet)
    return clf


def _hide_from_other_ranks(folder):
    """On ranks other than 0, os.path.isfile/exists see nothing under ``folder``: a second machine, which need not
    see the run folder (docs/distributed.md)."""
    from lstmkit.tasks import distributed

    if distributed.is_main():
        return
    root = os.path.realpath(folder)
    real_isfile, real_exists = os.path.isfile, os.path.exists
    hidden = lambda p: isinstance(p, (str, os.PathLike)) and os.path.realpath(p).startswith(root)  # noqa: E731
    os.path.isfile = lambda p: False if hidden(p) else real_isfile(p)
    os.path.exists = lambda p: False if hidden(p) else real_exists(p)


def worker(out):
    from lstmkit.tasks import distributed

    torch.set_num_threads(1)
    distributed.setup()
    rank = distributed.rank()
    esrnn(os.path.join(out, "esrnn"))
    fcn(os.path.join(out, "fcn"))
    fcn_gradients(os.path.join(out, "fcn-gradients.pt"))
    dropout(os.path.join(out, "dropout-full"), 2)
    dropout(os.path.join(out, "dropout-resumed"), 1)
    torch.manual_seed(12345)  # a new process would not have the first run's generator states: resume must restore
    dropout(os.path.join(out, "dropout-resumed"), 2, resume=True)
    _, rows = stream(os.path.join(out, "stream"))
    with open(os.path.join(out, f"stream-rows-{rank}.json"), "w") as f:
        json.dump(rows, f)
    # resume where only rank 0 sees the run folders
    classify_ensemble(os.path.join(out, "hidden", "classify"), 1)
    esrnn(os.path.join(out, "hidden", "esrnn"))
    _hide_from_other_ranks(os.path.join(out, "hidden"))
    classify_ensemble(os.path.join(out, "hidden", "classify"), 2, resume=True)
    esrnn(os.path.join(out, "hidden", "esrnn"), 3, resume=True)
    distributed.teardown()


# -- the tests ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two(tmp_path_factory):
    from test_ddp import _run_torchrun

    out = tmp_path_factory.mktemp("ddp-tasks")
    _run_torchrun([os.path.abspath(__file__), str(out)])
    return out


def _load(path):
    from lstmkit.tasks import checkpoint

    return checkpoint.load(str(path))


def _close(a, b):
    for k, v in a.items():
        assert torch.allclose(v.float(), b[k].float(), atol=ATOL, rtol=RTOL), (k, (v - b[k]).abs().max())


def test_esrnn_weighted_loss_trains_like_one_process(two, tmp_path):
    """Before the fix the weighted means were per rank: 2.2e-3 apart after 6 Adam steps (tourism, mase)."""
    esrnn(str(tmp_path / "one"))
    a, b = (_load(run / "member-0" / "last.safetensors") for run in (two / "esrnn", tmp_path / "one"))
    _close(a["model"], b["model"])
    for h2, h1 in zip(a["trainer"]["history"], b["trainer"]["history"]):  # the all-reduced weighted metrics
        assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-5)
        assert h2["val_loss"] == pytest.approx(h1["val_loss"], rel=1e-5)


def test_lstm_fcn_batch_norm_uses_the_global_batch(two, tmp_path):
    """Each rank normalises with the global batch's statistics: one step's gradients and running buffers are one
    process's, a placeholder rank counting nothing (before the fix: each rank's half batch)."""
    fcn_gradients(str(tmp_path / "one.pt"))
    for two_step, one_step in zip(torch.load(two / "fcn-gradients.pt"), torch.load(tmp_path / "one.pt")):
        _close(two_step, one_step)


def test_lstm_fcn_trains_like_one_process(two, tmp_path):
    """Two epochs with batch norm: within 1e-3 (measured 2.5e-4 on the conv weights, the running buffers 9e-5;
    before the fix 0.13 and 3.7). Not 1e-6: Adam scales each step by 1/sqrt(v), so the scale-free conv weights
    before batch norm, whose gradients are tiny, amplify rounding (one process with 2 threads instead of 1 lands
    7.7e-5 away too). The conv biases are frozen: batch norm cancels them, their gradient is pure rounding."""
    fcn(str(tmp_path / "one"))
    a, b = _load(two / "fcn" / "last.safetensors")["model"], _load(tmp_path / "one" / "last.safetensors")["model"]
    for k, v in a.items():  # the running buffers (mean, var, batches tracked) included
        assert torch.allclose(v.float(), b[k].float(), atol=1e-3, rtol=0), (k, (v - b[k]).abs().max())


def test_stream_training_is_data_parallel(two, tmp_path):
    """Each rank reads its 2 of the 4 streams (before: all 4, an independent copy per rank) and the weights are
    one process's."""
    lm, rows = stream(str(tmp_path / "one"))
    assert set(rows) == {4}
    for rank in (0, 1):
        seen = json.loads((two / f"stream-rows-{rank}.json").read_text())
        assert len(seen) >= 6 and set(seen[:6]) == {2}, seen
    _close(_load(two / "stream" / "best.safetensors")["model"], _load(tmp_path / "one" / "best.safetensors")["model"])


def test_dropout_resume_restores_every_ranks_rng(two):
    """Each rank draws its own dropout masks (checkpointed per rank), and an interrupted 2-process run resumed by
    2 processes is bit-identical to the uninterrupted one (before: 0.021 apart, rank 1 got rank 0's RNG)."""
    full = _load(two / "dropout-full" / "last.safetensors")
    resumed = _load(two / "dropout-resumed" / "last.safetensors")
    assert full["meta"]["rng.ranks"] == "2"
    assert not torch.equal(full["tensors"]["rng.torch"], full["tensors"]["rng.torch.1"])  # different streams
    for k, v in full["model"].items():
        assert torch.equal(v, resumed["model"][k]), (k, (v - resumed["model"][k]).abs().max())


def test_resume_with_another_process_count_says_so(two, tmp_path):
    shutil.copytree(two / "dropout-full", tmp_path / "run")
    lines = []
    from lstmkit.tasks.classify.net import SequenceNet
    from lstmkit.tasks.training import TrainConfig, fit, seed_everything

    seed_everything(0)
    x, lengths, y = _sequences()
    model = SequenceNet(3, 2, hidden_size=8, num_layers=2, dropout=0.3, head_dropout=0.3)
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-2, patience=100, progress=False)
    fit(model, lambda m, x, n, y: torch.nn.functional.cross_entropy(m(x, n), y), (x[:31], lengths[:31], y[:31]),
        None, cfg, task="test", config={"k": 1}, ckpt_dir=str(tmp_path / "run"), resume=True, log=lines.append)
    assert any("RNG states of 2 process(es), this run has 1" in line for line in lines), lines


def test_only_rank_0_decides_to_resume(two):
    """Rank 1 saw no run folder: it resumed with rank 0 (before: it trained afresh and both ranks hung)."""
    members = [_load(two / "hidden" / "classify" / f"member-{m}" / "last.safetensors") for m in (0, 1)]
    assert [m["trainer"]["epoch"] for m in members] == [2, 2]
    history = _load(two / "hidden" / "esrnn" / "member-0" / "last.safetensors")["trainer"]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]


if __name__ == "__main__":  # the torchrun worker
    worker(sys.argv[1])
