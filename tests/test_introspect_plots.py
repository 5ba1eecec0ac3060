"""introspect.plots: every picture is drawn for LSTM and GRU, one and two directions, as a valid PNG."""
import struct

import numpy as np
import pytest

import lstmkit

pytest.importorskip("matplotlib")
from lstmkit.introspect import plots  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) from the IHDR chunk of a PNG file, after checking the signature."""
    data = open(path, "rb").read()
    assert data[:8] == PNG and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("mode,kw", [("LSTM", dict(num_layers=2)), ("LSTM", dict(bidirectional=True, proj_size=2)),
                                     ("GRU", {}), ("GRU", dict(bidirectional=True))])
def test_all_figures_are_written_as_png(tmp_path, mode, kw):
    text = "hello world, hello trace"
    vocab = sorted(set(text))
    x = np.zeros((len(text), 2, len(vocab)))
    x[np.arange(len(text)), 0, [vocab.index(c) for c in text]] = 1
    x[:, 1] = np.random.default_rng(0).standard_normal((len(text), len(vocab)))
    layer = getattr(lstmkit, mode)(len(vocab), 6, seed=0, dtype="float64", **kw)
    tr = layer.trace(x, lengths=[len(text), 10])
    paths = plots.save_all(tr, tmp_path, text=text)
    D, L = layer.config.num_directions, layer.config.num_layers
    assert len(paths) == 2 * D * L + 3  # heatmap + saturation per layer and direction; gradient, pca, text
    for name, path in paths.items():
        w, h = png_size(path)
        assert w > 100 and h > 60, name
    # the heatmap stacks one panel per gate, c and h: an LSTM's is taller than a GRU's
    assert png_size(paths["heatmap_l0"])[1] > (500 if mode == "LSTM" else 400)


def test_text_activation_handles_nan_and_long_text(tmp_path):
    text = "a\tb c\n" * 30
    values = np.linspace(-1, 1, len(text))
    values[-5:] = np.nan
    w, h = png_size(plots.save_png(plots.text_activation(text, values, "t"), tmp_path / "t.png"))
    assert h > 120  # wrapped onto several rows (one row is about 80 px)


def test_text_strip_has_a_colour_legend():
    fig = plots.text_activation("abc", np.array([-1.0, 0.0, 1.0]), "t", label="h of unit 3")
    bars = [ax for ax in fig.axes if ax.get_xlabel().startswith("h of unit 3")]
    assert len(fig.axes) == 2 and len(bars) == 1  # the strip and its colour bar, named
    assert bars[0].get_xlim() == (-1.0, 1.0)  # symmetric around 0: white is h = 0
