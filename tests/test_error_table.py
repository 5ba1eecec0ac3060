"""Every public entry point refuses bad input with a clear error; the table in docs/errors.md is this test's.

Each case names the entry point, the bad input, the exception expected and a phrase the message must
contain (the argument's name). The test checks every case, then checks docs/errors.md is exactly the
table these cases produce; ``LSTMKIT_WRITE_DOCS=1 pytest tests/test_error_table.py`` rewrites it.
"""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import lstmkit
import lstmkit.torch as lt
from lstmkit import engine
from lstmkit.errors import ArgumentTypeError, DtypeMismatchError, ShapeError
from lstmkit.params import RNNConfig

DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"
f32 = np.float32


def _file(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def _valid_safetensors(tmp: Path) -> Path:
    return lstmkit.save(lstmkit.LSTM(3, 4, seed=0), tmp / "ok.safetensors", overwrite=True)


CASES = [
    # (entry point, bad input, call(tmp), exception, phrase in the message)
    ("lstmkit.LSTM(...)", "input_size=0", lambda t: lstmkit.LSTM(0, 4), ValueError, "input_size"),
    ("lstmkit.LSTM(...)", "proj_size >= hidden_size", lambda t: lstmkit.LSTM(3, 4, proj_size=4), ValueError,
     "proj_size"),
    ("lstmkit.LSTM(...)", "dropout=1.5", lambda t: lstmkit.LSTM(3, 4, dropout=1.5), ValueError, "dropout"),
    ("lstmkit.LSTM(...)", "dtype='int8'", lambda t: lstmkit.LSTM(3, 4, dtype="int8"), TypeError, "dtype"),
    ("lstmkit.LSTM(...)", "dtype='bfloat16'", lambda t: lstmkit.LSTM(3, 4, dtype="bfloat16"), TypeError,
     "lstmkit.quantize"),
    ("lstmkit.GRU(...)", "proj_size on a GRU", lambda t: lstmkit.GRU(3, 4, proj_size=2), ValueError, "proj_size"),
    ("layer(x)", "x of rank 4", lambda t: lstmkit.LSTM(3, 4)(np.zeros((1, 2, 3, 3), f32)), ValueError, "input"),
    ("layer(x)", "5 features for input_size=3", lambda t: lstmkit.LSTM(3, 4)(np.zeros((2, 1, 5), f32)), ValueError,
     "input"),
    ("layer(x)", "float64 x for a float32 layer", lambda t: lstmkit.LSTM(3, 4)(np.zeros((2, 1, 3))), TypeError,
     "input"),
    ("layer(x)", "a list instead of an array", lambda t: lstmkit.LSTM(3, 4)([[0.0] * 3]), TypeError, "input"),
    ("layer(x, hx)", "h0 of the wrong shape", lambda t: lstmkit.GRU(3, 4)(np.zeros((2, 1, 3), f32),
                                                                         np.zeros((1, 2, 4), f32)), ValueError, "h0"),
    ("layer(x, hx)", "an LSTM given one array", lambda t: lstmkit.LSTM(3, 4)(np.zeros((2, 1, 3), f32),
                                                                            np.zeros((1, 1, 4), f32)), TypeError, "hx"),
    ("layer(x, lengths)", "a length above T", lambda t: lstmkit.LSTM(3, 4)(np.zeros((2, 2, 3), f32), lengths=[1, 3]),
     ValueError, "lengths"),
    ("layer(x, lengths)", "B - 1 lengths", lambda t: lstmkit.LSTM(3, 4)(np.zeros((2, 2, 3), f32), lengths=[1]),
     ValueError, "lengths"),
    ("layer(x, lengths)", "fractional lengths", lambda t: lstmkit.LSTM(3, 4)(np.zeros((2, 2, 3), f32),
                                                                            lengths=[1.5, 2]), TypeError, "lengths"),
    ("layer.load_state_dict", "a NaN weight", lambda t: lstmkit.LSTM(3, 4).load_state_dict(
        {**lstmkit.LSTM(3, 4).state_dict(), "weight_ih_l0": np.full((16, 3), np.nan)}), ValueError, "weight_ih_l0"),
    ("layer.load_state_dict", "a missing key", lambda t: lstmkit.LSTM(3, 4).load_state_dict({}), ValueError,
     "missing"),
    ("layer.backward", "before any forward", lambda t: lstmkit.LSTM(3, 4).backward(np.zeros((1, 1, 4))),
     RuntimeError, "backward"),
    ("LSTMCell(x)", "x of rank 3", lambda t: lstmkit.LSTMCell(3, 4)(np.zeros((1, 1, 3), f32)), ValueError, "input"),
    ("lstmkit.torch.LSTM", "x of rank 1", lambda t: lt.LSTM(3, 4)(torch.zeros(3)), ValueError, "input"),
    ("lstmkit.torch.LSTM", "float64 x for float32 weights", lambda t: lt.LSTM(3, 4)(torch.zeros(2, 1, 3,
                                                                                           dtype=torch.float64)),
     DtypeMismatchError, "input"),
    ("lstmkit.torch.GRU", "h0 of the wrong batch", lambda t: lt.GRU(3, 4)(torch.zeros(2, 2, 3), torch.zeros(1, 1, 4)),
     ShapeError, "h0"),
    ("lstmkit.torch.LSTM(...)", "bias='True'", lambda t: lt.LSTM(3, 4, bias="True"), ArgumentTypeError, "bias"),
    ("lstmkit.torch.LSTM", "lengths=[0, 9] for T=2", lambda t: lt.LSTM(3, 4)(torch.zeros(2, 2, 3),
                                                                            lengths=torch.tensor([0, 9])),
     ValueError, "lengths"),
    ("engine.forward", "params of float64 with x float32", lambda t: engine.forward(
        RNNConfig("LSTM", 3, 4), lstmkit.LSTM(3, 4, dtype="float64").params, np.zeros((2, 1, 3), f32)), TypeError,
     "weight_ih_l0"),
    ("engine.forward", "x of rank 2", lambda t: engine.forward(RNNConfig("GRU", 3, 4), lstmkit.GRU(3, 4).params,
                                                               np.zeros((2, 3), f32)), ValueError, "x"),
    ("engine.cell_forward", "state (h,) for an LSTM", lambda t: engine.cell_forward(
        "LSTM", np.zeros((1, 3), f32), (np.zeros((1, 4), f32),), lstmkit.LSTMCell(3, 4).params), TypeError, "state"),
    ("lstmkit.load", "an empty file", lambda t: lstmkit.load(_file(t, "e.safetensors", b"")), ValueError,
     "truncated"),
    ("lstmkit.load", "a truncated file", lambda t: lstmkit.load(_file(
        t, "t.safetensors", _valid_safetensors(t).read_bytes()[:-7])), ValueError, "truncated"),
    ("lstmkit.load", "a flipped bit in a tensor", lambda t: lstmkit.load(_file(
        t, "f.safetensors", (lambda b: b[:-3] + bytes([b[-3] ^ 1]) + b[-2:])(_valid_safetensors(t).read_bytes()))),
     ValueError, "content hash"),
    ("lstmkit.load", "a JSON file", lambda t: lstmkit.load(_file(t, "j.safetensors", b"\x02\0\0\0\0\0\0\0{}")),
     ValueError, "no lstmkit metadata"),
    ("lstmkit.save", "an existing path", lambda t: lstmkit.save(lstmkit.LSTM(3, 4), _valid_safetensors(t)),
     FileExistsError, "overwrite"),
    ("lstmkit.from_onnx", "bytes that are not ONNX", lambda t: lstmkit.from_onnx(_file(t, "x.onnx", b"\x08garbage")),
     ValueError, "x.onnx"),
    ("lstmkit.io.read", "an unknown extension", lambda t: lstmkit.io.read(_file(t, "m.h5", b"")), ValueError,
     "extension"),
    ("lstmkit summary FILE", "a file that does not exist", lambda t: _cli(["summary", str(t / "none.onnx")]),
     SystemExit, "2: lstmkit summary: error"),
    ("lstmkit convert", "an existing OUT without --overwrite", lambda t: _cli(
        ["convert", str(_valid_safetensors(t)), str(_valid_safetensors(t))]), SystemExit, "overwrite"),
]


def _cli(argv):
    """Run the CLI; SystemExit carries "status: what it printed to stderr"."""
    import contextlib
    import io

    from lstmkit.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(argv)
    raise SystemExit(f"{status}: {err.getvalue().strip()}")


def _table(rows) -> str:
    lines = ["# Bad input and the error it gets", "",
             "Generated by `tests/test_error_table.py` (`LSTMKIT_WRITE_DOCS=1 pytest tests/test_error_table.py`);",
             "every row is checked in CI. The CLI rows give the exit status; the message goes to stderr.",
             "ShapeError, DtypeMismatchError and ArgumentTypeError (`lstmkit.errors`) are each the ValueError or",
             "TypeError lstmkit documents and the type torch.nn raises for the same input (docs/torch_dropin.md).", "",
             "| entry point | bad input | error |", "| --- | --- | --- |"]
    lines += [f"| `{entry}` | {bad} | {err} |" for entry, bad, err in rows]
    return "\n".join(lines) + "\n"


def _run(case, tmp: Path) -> str:
    entry, bad, call, error, phrase = case
    with pytest.raises(error) as info:
        call(tmp)
    message = str(info.value)
    assert phrase in message, f"{entry} / {bad}: {message!r} does not name {phrase!r}"
    text = f"exit status {message}" if error is SystemExit else f"{error.__name__}: {message}"
    return text.replace("|", "\\|").replace(str(tmp), "…").replace("\n", " ")


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_bad_input_gets_a_clear_error(case, tmp_path):
    _run(case, tmp_path)


def test_docs_error_table_is_current(tmp_path_factory):
    rows = [(c[0], c[1], _run(c, tmp_path_factory.mktemp("case"))) for c in CASES]
    table = _table(rows)
    if os.environ.get("LSTMKIT_WRITE_DOCS"):
        DOC.write_text(table)
    assert DOC.read_text() == table, "docs/errors.md is stale: rerun with LSTMKIT_WRITE_DOCS=1"
