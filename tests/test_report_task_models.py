"""Models trained by the task commands open in lstmkit.load, report and explain (char-LM: through its embedding)."""
import json

import numpy as np

import lstmkit
from lstmkit.cli import main
from lstmkit.introspect.report import read_data
from lstmkit.io.safetensors import read


def test_generate_checkpoint_loads_and_reports(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 60)
    run = tmp_path / "run"
    assert main(["generate", "--text", str(corpus), "--epochs", "1", "--hidden-size", "12", "--seq-len", "16",
                 "--batches-per-epoch", "2", "--n-chars", "10", "--out", str(run), "--no-progress"]) == 0
    model_file = run / "model.safetensors"
    layer = lstmkit.load(model_file)  # the recurrent layer inside the task checkpoint
    metadata, tensors = read(model_file)
    embed = tensors["model.embed.weight"]  # (V + 1, E); row 0 is the unknown-character id
    assert layer.config.mode == "LSTM" and layer.config.hidden_size == 12
    assert layer.config.input_size == embed.shape[1]
    np.testing.assert_array_equal(layer.params["weight_ih_l0"], tensors["model.rnn.weight_ih_l0"])

    sample = tmp_path / "sample.txt"
    sample.write_text("lazy fox")
    x, text = read_data(sample, layer, model_path=model_file)
    vocab = json.loads(metadata["config"])["vocab"]
    assert text == "lazy fox" and x.shape == (8, 1, embed.shape[1])
    np.testing.assert_allclose(x[:, 0], embed[[1 + vocab.index(ch) for ch in text]], rtol=1e-12)

    out = tmp_path / "report.html"
    assert main(["report", str(model_file), "--data", str(sample), "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000 and "lazy fox" in out.read_text()
    assert main(["explain", str(model_file), "--data", str(sample)]) == 0
    assert "top units" in capsys.readouterr().out


def test_report_and_explain_on_a_forecast_run_folder_read_its_own_series(tmp_path, capsys):
    pd = __import__("pytest").importorskip("pandas")
    import torch

    from lstmkit.tasks.forecast import Forecaster, windows

    t = np.arange(36)
    df = pd.concat([pd.DataFrame({"unique_id": f"s{k}", "ds": pd.date_range("2015-01-31", periods=36, freq="ME"),
                                  "y": 100 + 10 * k + 10 * np.sin(2 * np.pi * t / 12)}) for k in range(3)])
    csv = tmp_path / "monthly.csv"
    df.to_csv(csv, index=False)
    run = tmp_path / "run"
    assert main(["forecast", "--csv", str(csv), "--horizon", "3", "--future", "--epochs", "1", "--batches-per-epoch",
                 "1", "--hidden-size", "4", "--out", str(run), "--quiet"]) == 0
    # the window the report reads is the one predict reads: the network on it gives predict's forecast
    fc = Forecaster.load(str(run / "model.safetensors"))
    uid, x = fc.window_input("s1")
    assert uid == "s1" and fc.window_input()[0] == "s0"  # the default: the first series
    L, m = fc.config["members"][0]["input_length"], fc.config["season_length"]
    with torch.no_grad():
        z = fc.models[0](torch.from_numpy(x)[None], torch.zeros(1, 0)).numpy()[0]  # (H, Q)
    y = df[df["unique_id"] == "s1"]["y"].to_numpy()
    level = windows.level(y[None, -L:], m)[0]
    yhat = fc.predict().query("unique_id == 's1'")["yhat"].to_numpy()
    median = np.sort(z, axis=-1)[:, fc._median()]  # predict sorts the quantiles (an untrained net crosses them)
    # the same float32 ops on the same input, but predict runs a batch of 3 (its matmuls may round differently):
    # eps 6e-8 over a few dozen terms through the LSTM and the head leaves well under 1e-5 relative
    np.testing.assert_allclose((median + 1.0) * level, yhat, rtol=1e-5)

    out = tmp_path / "report.html"
    assert main(["report", str(run), "--series", "s1", "--out", str(out)]) == 0
    html = out.read_text()
    assert out.stat().st_size > 10_000 and "series s1" in html
    assert main(["explain", str(run)]) == 0
    assert f"({x.shape[0]} steps)" in capsys.readouterr().out
    assert main(["report", str(run), "--series", "s9", "--out", str(tmp_path / "r9.html")]) == 2
    assert "no series 's9'" in capsys.readouterr().err
    data = tmp_path / "x.npy"
    np.save(data, x)
    assert main(["report", str(run), "--data", str(data), "--out", str(tmp_path / "rd.html")]) == 2
    assert "--series" in capsys.readouterr().err


def test_a_char_lm_with_variant_options_loads_with_them_and_reports(tmp_path, capsys):
    """A task checkpoint records its lstmkit.torch layers' configs (``rnn_configs``): lstmkit.load builds the layer
    with every option — zoneout and recurrent dropout have no tensors, so the weights alone would give the plain
    cell, silently another model in evaluation — and layer norm's gains load too instead of being refused. The
    loaded NumPy layer computes what the trained module computes (eval mode), and report/explain run on it."""
    import torch

    from lstmkit.tasks.generate import CharLM

    text = "the quick brown fox jumps over the lazy dog.\n" * 60
    option_sets = ({"zoneout": (0.5, 0.05), "recurrent_dropout": 0.25}, {"layer_norm": True, "zoneout": (0.2, 0.1)},
                   {"cell": "gru", "zoneout": (0.0, 0.3)})
    for k, options in enumerate(option_sets):
        lm = CharLM(hidden_size=12, embed_dim=8, steps=2, batch_size=4, seq_len=16, eval_every=2, **options)
        lm.fit(text[:2000], text[2000:2400], log=lambda *a: None)
        path = tmp_path / f"lm{k}.safetensors"
        lm.save(str(path))
        layer = lstmkit.load(path)
        rnn = lm.model.rnn
        assert layer.config == type(layer.config)(**{**rnn.config.to_dict(), "batch_first": False})
        x = torch.randn(7, 2, 8)  # (T, B, E): the layer reads sequence-first
        with torch.no_grad():
            want, _ = rnn.eval()(x.transpose(0, 1))
        got, _ = layer.eval()(x.numpy())
        np.testing.assert_allclose(got, want.transpose(0, 1).numpy(), rtol=1e-5, atol=1e-6)
        sample = tmp_path / "sample.txt"
        sample.write_text("lazy fox")
        out = tmp_path / f"report{k}.html"
        assert main(["report", str(path), "--data", str(sample), "--out", str(out)]) == 0
        assert main(["explain", str(path), "--data", str(sample)]) == 0
        assert "top units" in capsys.readouterr().out


def test_a_classify_text_checkpoint_is_traced_through_its_embedding(tmp_path, capsys):
    """lstmkit classify's text models reserve two ids (0 padding, 1 unknown: vocabulary[k] has id k + 2), where
    generate reserves one: the report reads each character's row of the classifier's own table. Once the
    (V + 2, E) table was not recognised and dropped: one-hot characters went into the LSTM silently when V
    happened to equal E, and otherwise an error named a --vocab nobody gave."""
    from lstmkit.tasks.classify import SequenceClassifier

    texts = [("good great fine" if i % 2 else "bad awful poor") + f" {i}" for i in range(40)]
    clf = SequenceClassifier(text=True, hidden_size=6, embed_dim=8, epochs=1).fit(texts, [i % 2 for i in range(40)])
    path = tmp_path / "text.safetensors"
    clf.save(str(path))
    metadata, tensors = read(path)
    vocab, embed = json.loads(metadata["config"])["vocab"], tensors["model.embed.weight"]
    assert embed.shape == (len(vocab) + 2, 8) and len(vocab) != 8
    sample = tmp_path / "sample.txt"
    sample.write_text("fine bad")
    layer = lstmkit.load(path)
    x, text = read_data(sample, layer, model_path=path)
    np.testing.assert_allclose(x[:, 0], embed[[2 + vocab.index(ch) for ch in text]], rtol=1e-12)
    assert main(["explain", str(path), "--data", str(sample)]) == 0
    assert "top units" in capsys.readouterr().out
