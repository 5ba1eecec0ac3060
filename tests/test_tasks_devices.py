"""``device=`` on every task estimator and ``--device`` on the task commands: a missing accelerator is a named
error before any work, training given device='cpu' explicitly is the default run, and (where a GPU is present)
the same models train and predict on CUDA."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pd = pytest.importorskip("pandas")
pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

from lstmkit.cli import main  # noqa: E402
from lstmkit.tasks.classify import SequenceClassifier  # noqa: E402
from lstmkit.tasks.devices import DeviceUnavailableError, resolve  # noqa: E402
from lstmkit.tasks.forecast import Forecaster  # noqa: E402
from lstmkit.tasks.generate.model import CharLM  # noqa: E402

NO_CUDA = not torch.cuda.is_available()
needs_no_cuda = pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here: asking for it is no error")
needs_cuda = pytest.mark.skipif(NO_CUDA, reason="no CUDA GPU on this machine")
TEXT = "the quick brown fox jumps over the lazy dog. " * 20


def panel(n_series=3, n=40):
    t = np.arange(n)
    return pd.concat([pd.DataFrame({"unique_id": k, "ds": t, "y": 50 + k + 5 * np.sin(2 * np.pi * t / 4)})
                      for k in range(n_series)], ignore_index=True)


def forecaster(device):
    return Forecaster(4, 4, hidden_size=8, epochs=2, batches_per_epoch=2, batch_size=32, device=device)


def sequences(n=24, T=6):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, T, 2)) + y[:, None, None]  # class 1 sits one unit higher
    return X.astype(np.float32), y


def classifier(device):
    return SequenceClassifier(hidden_size=4, epochs=2, batch_size=8, device=device)


def char_lm(device):
    return CharLM(hidden_size=8, embed_dim=4, epochs=1, batches_per_epoch=2, seq_len=16, device=device)


@pytest.mark.parametrize("bad", ["tpu", "meta", 3, "cuda:x"])
def test_a_device_that_is_no_device_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="device: expected"):
        resolve(bad)


@needs_no_cuda
@pytest.mark.parametrize("make", [
    lambda: forecaster("cuda"),
    lambda: classifier("cuda:0").fit(*sequences()),
    lambda: char_lm(torch.device("cuda")),
])
def test_cuda_without_a_gpu_is_a_named_error_before_any_work(make):
    with pytest.raises(DeviceUnavailableError, match=r"device: 'cuda(:0)?' asked for, but torch.cuda.is_available"):
        make()


@needs_no_cuda
@pytest.mark.parametrize("task", ["classify", "forecast", "generate"])
def test_device_flag_without_a_gpu_is_a_usage_error(task, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main([task, "--device", "cuda", "--out", str(tmp_path / "run")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--device" in err and "torch.cuda.is_available() is False" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


@needs_no_cuda
def test_predict_device_flag_without_a_gpu_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["predict", "--model", str(tmp_path / "model.safetensors"), "--device", "cuda"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--device" in err and "torch.cuda.is_available() is False" in err and "Traceback" not in err


def test_predict_on_an_explicit_cpu_device(tmp_path, capsys):
    """lstmkit predict --device cpu loads the saved forecaster there and prints its forecasts."""
    fc = forecaster("cpu").fit(panel())
    fc.save(tmp_path / "model.safetensors")
    panel().to_csv(tmp_path / "history.csv", index=False)
    assert main(["predict", "--model", str(tmp_path / "model.safetensors"), "--csv", str(tmp_path / "history.csv"),
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    want = fc.predict()
    assert printed.count("\n") == len(want) + 1  # a header and one line per forecast


def test_explicit_cpu_device_trains_the_default_model():
    """device='cpu' (a string or a torch.device) takes the very steps of the default run: same seed, same
    batches, same arithmetic, so the forecasts are equal to the last bit."""
    df = panel()
    default = Forecaster(4, 4, hidden_size=8, epochs=2, batches_per_epoch=2, batch_size=32).fit(df).predict()
    for device in ("cpu", torch.device("cpu")):
        fc = forecaster(device).fit(df)
        assert all(p.device.type == "cpu" for m in fc.models for p in m.parameters())
        np.testing.assert_array_equal(fc.predict()["yhat"].to_numpy(), default["yhat"].to_numpy())
    X, y = sequences()
    proba = classifier(torch.device("cpu")).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(proba, SequenceClassifier(hidden_size=4, epochs=2, batch_size=8).fit(X, y)
                                  .predict_proba(X))
    lm = char_lm("cpu").fit(TEXT)
    assert np.isfinite(lm.bits_per_char(TEXT[:200])) and len(lm.sample("the ", n=10)) == 14


@needs_cuda
def test_tasks_train_and_predict_on_cuda(tmp_path):
    """Each estimator trains on the GPU; a CPU-trained model loaded onto the GPU predicts what it predicts on
    the CPU. Tolerance: cuDNN's LSTM and the linear layers may run in TF32 (10 explicit mantissa bits, a
    relative error near 5e-4 per product), through a few layers of a tiny net: rtol 1e-2, atol 1e-2 on values
    near 50 (forecasts) and on probabilities."""
    df = panel()
    fc = forecaster("cuda").fit(df)
    assert all(p.device.type == "cuda" for m in fc.models for p in m.parameters())
    assert np.isfinite(fc.predict()["yhat"]).all()
    cpu = forecaster("cpu").fit(df)
    cpu.save(str(tmp_path / "fc.safetensors"))
    on_gpu = Forecaster.load(str(tmp_path / "fc.safetensors"), device="cuda")
    np.testing.assert_allclose(on_gpu.predict()["yhat"], cpu.predict()["yhat"], rtol=1e-2, atol=1e-2)

    X, y = sequences()
    clf = classifier("cuda").fit(X, y)
    assert next(clf.model_.parameters()).device.type == "cuda"
    cpu_clf = classifier("cpu").fit(X, y)
    cpu_clf.save(str(tmp_path / "clf.safetensors"))
    gpu_clf = SequenceClassifier.load(str(tmp_path / "clf.safetensors"), device="cuda")
    np.testing.assert_allclose(gpu_clf.predict_proba(X), cpu_clf.predict_proba(X), atol=1e-2)

    lm = char_lm("cuda").fit(TEXT, TEXT[:300])
    assert np.isfinite(lm.bits_per_char(TEXT[:200])) and len(lm.sample("the ", n=10)) == 14
    assert lm.next_char_probs("the quick", dynamic_lr=0.1).shape == (9, len(lm.config["vocab"]) + 1)
