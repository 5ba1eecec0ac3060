"""The HTML report is one self-contained file holding the data; the report and explain commands work."""
import json
import re

import numpy as np
import pytest

import lstmkit
from lstmkit.cli import main

pytest.importorskip("matplotlib")
from lstmkit.introspect.report import one_hot, write_report  # noqa: E402

TEXT = "abba cab, abc. "


def embedded(page):
    return json.loads(re.search(r'<script type="application/json" id="trace-data">(.*?)</script>', page, re.S)
                      .group(1).replace("<\\/", "</"))


@pytest.mark.parametrize("mode,kw", [("LSTM", dict(num_layers=2)), ("GRU", dict(bidirectional=True))])
def test_report_is_self_contained_and_holds_the_trace(tmp_path, mode, kw):
    vocab = sorted(set(TEXT))
    layer = getattr(lstmkit, mode)(len(vocab), 5, seed=0, dtype="float64", **kw)
    x = one_hot(TEXT, vocab)
    path = write_report(layer, x, tmp_path / "r.html", text=TEXT)
    page = path.read_text()
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="(?!data:)', page)  # nothing loaded from elsewhere
    figures = 2 * layer.config.num_layers * layer.config.num_directions + 3
    assert page.count('src="data:image/png;base64,') == figures
    data = embedded(page)
    tr = layer.trace(x)
    assert data["text"] == TEXT and len(data["directions"]) == len(tr.layers) * len(tr.layers[0])
    gate = "f" if mode == "LSTM" else "z"
    got = np.array(data["directions"][-1]["quantities"][gate])
    want = tr.layers[-1][-1].gates[gate][:, 0]
    np.testing.assert_allclose(got, want, atol=5e-5)  # stored to 4 decimals
    assert str(lstmkit.summary(layer)).splitlines()[0] in page
    # the selector picks a layer and a direction, and says so; its options name both
    assert '<label>layer / direction <select id="direction">' in page
    assert [d["label"].split()[:2] for d in data["directions"]][0] == ["layer", "0"]


def test_report_never_overwrites_without_asking(tmp_path):
    layer = lstmkit.GRU(2, 3, seed=0, dtype="float64")
    x = np.random.default_rng(0).standard_normal((4, 2, 2))
    path = tmp_path / "r.html"
    path.write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_report(layer, x, path)
    assert path.read_text() == "keep me"
    write_report(layer, x, path, lengths=[4, 2], batch=1, overwrite=True)
    assert embedded(path.read_text())["length"] == 2


def test_report_and_explain_commands(tmp_path, capsys):
    vocab = sorted(set(TEXT))
    layer = lstmkit.LSTM(len(vocab), 6, seed=1)
    model = lstmkit.save(layer, tmp_path / "m.safetensors")
    (tmp_path / "in.txt").write_text(TEXT)
    out = tmp_path / "r.html"
    args = ["report", str(model), "--data", str(tmp_path / "in.txt"), "--vocab", "".join(vocab), "--out", str(out)]
    assert main(args) == 0
    assert embedded(out.read_text())["text"] == TEXT
    capsys.readouterr()
    assert main(args) == 2 and "exists" in capsys.readouterr().err  # no clobbering
    assert main(args + ["--overwrite"]) == 0

    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((7, 2, len(vocab))))
    assert main(["explain", str(model), "--data", str(tmp_path / "x.npy"), "--batch", "1"]) == 0
    shown = capsys.readouterr().out
    assert "top units" in shown and "resets" in shown and "saturation" in shown
    assert main(["explain", str(model), "--data", str(tmp_path / "in.txt")]) == 2  # text without a vocabulary
    assert "--vocab" in capsys.readouterr().err
    assert main(["explain", str(model), "--data", str(tmp_path / "in.txt"), "--vocab", "abc"]) == 2
    assert "input_size" in capsys.readouterr().err
