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
