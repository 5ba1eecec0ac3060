"""Every public entry point refuses bad input with a clear error; the table in docs/errors.md is this test's.

Each case names the entry point, the bad input, the exception expected and a phrase the message must
contain (the argument's name). The test checks every case, then checks docs/errors.md is exactly the
table these cases produce; ``LSTMKIT_WRITE_DOCS=1 pytest tests/test_error_table.py`` rewrites it.
"""
import errno
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import lstmkit
import lstmkit.torch as lt
from lstmkit import engine
from lstmkit.errors import ArgumentTypeError, DtypeMismatchError, ShapeError
from lstmkit.io.safetensors import encode, read
from lstmkit.params import RNNConfig

import hostile

DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"
f32 = np.float32


def _file(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def _valid_safetensors(tmp: Path) -> Path:
    return lstmkit.save(lstmkit.LSTM(3, 4, seed=0), tmp / "ok.safetensors", overwrite=True)


def _sizes(text: str) -> str:
    return re.sub(r"\d{1,3}(,\d{3})+|\d{4,}", "…", text)


def _hashes(text: str) -> str:
    return re.sub(r"[0-9a-f]{12}\.\.\.", "…", text)


def _threads(text: str) -> str:
    return re.sub(r"1 to \d+ threads \(4 x the \d+ CPUs", "1 to max_threads() threads (4 x the CPUs", text)


def _without(tmp: Path, key: str) -> Path:
    """A saved model whose metadata lost ``key`` (the rest, hashes included, unchanged)."""
    meta, tensors = read(_valid_safetensors(tmp), verify=False)
    meta.pop(key)
    return _file(tmp, "edited.safetensors", _rebuild(meta, tensors))


def _edited_clip(tmp: Path) -> Path:
    path = lstmkit.save(lstmkit.LSTM(3, 4, clip=3.0, seed=0), tmp / "clip.safetensors", overwrite=True)
    meta, tensors = read(path)
    meta["config"] = meta["config"].replace('"clip": 3.0', '"clip": 1.0')
    return _file(tmp, "edited.safetensors", _rebuild(meta, tensors))


def _rebuild(meta: dict, tensors: dict) -> bytes:
    """safetensors bytes of ``tensors`` with exactly ``meta`` (no hashes recomputed)."""
    blob = encode(tensors, {})
    n = int.from_bytes(blob[:8], "little")
    head = json.loads(blob[8:8 + n])
    head["__metadata__"] = meta
    return hostile.safetensors_bytes(head, blob[8 + n:])


def _flipped_checkpoint(tmp: Path) -> Path:
    from lstmkit.tasks import checkpoint

    path = tmp / "best.safetensors"
    checkpoint.save(str(path), task="forecast", config={}, model=torch.nn.Linear(3, 2))
    data = bytearray(path.read_bytes())
    data[-20] ^= 0x40
    path.write_bytes(bytes(data))
    return path


def checkpoint_load(path):
    from lstmkit.tasks import checkpoint

    return checkpoint.load(str(path))


def _series_csv(tmp: Path, rows=None) -> Path:
    rows = [f"s{k},{i},{10 + k + (i % 4)}" for k in range(3) for i in range(40)] if rows is None else rows
    return _file(tmp, "series.csv", ("unique_id,ds,y\n" + "".join(r + "\n" for r in rows)).encode())


def _npy(tmp: Path, x: np.ndarray) -> Path:
    np.save(tmp / "x.npy", x)
    return tmp / "x.npy"


def _forecast(tmp: Path, *extra) -> list:
    argv = ["forecast", "--horizon", "4", "--hidden-size", "8", "--baselines", "naive", "--epochs", "1",
            "--no-progress"]
    if "--csv" not in extra:
        argv += ["--csv", str(_series_csv(tmp))]
    argv += list(extra)
    return argv


def _afile(tmp: Path) -> Path:
    return _file(tmp, "afile", b"x")


def _classify_run(tmp: Path) -> Path:
    from lstmkit.tasks import checkpoint

    (tmp / "classify-run").mkdir()
    checkpoint.save(str(tmp / "classify-run" / "last.safetensors"), task="classify", config={},
                    model=torch.nn.Linear(2, 2))
    return tmp / "classify-run"


def _finished_run(tmp: Path) -> Path:
    from lstmkit.cli import main

    out = tmp / "finished"
    assert main(_forecast(tmp, "--out", str(out))) == 0
    return out


def _with_oserror(name: str, code: int, call):
    """Run ``call`` with os.<name> raising OSError(code): a full disk or a cross-device rename, simulated."""
    from unittest import mock

    def fail(*args):
        raise OSError(code, os.strerror(code))
    with mock.patch.object(os, name, fail):
        return call()


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
    ("lstmkit.save", "a path ending in .onnx", lambda t: lstmkit.save(lstmkit.LSTM(3, 4), t / "m.onnx"), ValueError,
     "lstmkit.io.write"),
    ("lstmkit.from_torch", "a model holding an LSTM", lambda t: lstmkit.from_torch(torch.nn.Sequential(
        torch.nn.LSTM(3, 4))), TypeError, "module"),
    ("lstmkit.from_onnx", "bytes that are not ONNX", lambda t: lstmkit.from_onnx(_file(t, "x.onnx", b"\x08garbage")),
     ValueError, "x.onnx"),
    ("lstmkit.io.read", "an unknown extension", lambda t: lstmkit.io.read(_file(t, "m.h5", b"")), ValueError,
     "extension"),
    # hostile files and careless callers (issue 22); sizes that depend on zlib/h5py/CPU count are shown as …
    *[("lstmkit.load", f"safetensors header: {name}", lambda t, name=name: lstmkit.load(
        hostile.malformed_header(t, name)), ValueError, "malformed.safetensors: ")
      for name in hostile.MALFORMED_HEADERS],
    ("lstmkit.load", "config num_layers=10**7 (4 tensors)", lambda t: lstmkit.load(hostile.st_declared_layers(t)),
     ValueError, "needs at least"),
    ("lstmkit.io.read", ".pt naming weight_ih_l99999999", lambda t: lstmkit.io.read(hostile.pt_declared_layers(t)),
     ValueError, "not all present"),
    ("lstmkit.io.read", "ONNX metadata num_layers=10**7", lambda t: lstmkit.io.read(hostile.onnx_declared_layers(t)),
     ValueError, "needs at least"),
    ("lstmkit.io.read", ".pt whose deflated record inflates 1000x", lambda t: lstmkit.io.read(
        hostile.pt_deflate_bomb(t, 1 << 26)), ValueError, "inflate to", _sizes),
    ("lstmkit.io.read", ".keras with a 1 GB dataset of unwritten gzip chunks", lambda t: lstmkit.io.read(
        hostile.keras_chunk_bomb(t)), ValueError, "bytes of datasets", _sizes),
    ("lstmkit.io.read", ".keras with 2**20 unwritten one-value gzip chunks", lambda t: lstmkit.io.read(
        hostile.keras_chunk_bomb(t, 1 << 20, 1)), ValueError, "HDF5 chunks", _sizes),
    ("lstmkit.io.read", ".keras config units=10**6", lambda t: lstmkit.io.read(hostile.keras_declared_units(t)),
     ValueError, "declares units=1000000", _sizes),
    ("lstmkit.load", "a FIFO", lambda t: (os.mkfifo(t / "f.safetensors"), lstmkit.load(t / "f.safetensors")),
     ValueError, "a FIFO"),
    ("lstmkit.load", "/dev/zero", lambda t: lstmkit.load("/dev/zero"), ValueError, "character device"),
    ("lstmkit.load", "content_sha256 deleted", lambda t: lstmkit.load(_without(t, "content_sha256")), ValueError,
     "verify=False"),
    ("lstmkit.load", "config edited (clip 3 -> 1)", lambda t: lstmkit.load(_edited_clip(t)), ValueError,
     "metadata hash mismatch", _hashes),
    ("lstmkit.from_onnx", "bytes with external data", lambda t: lstmkit.from_onnx(hostile.onnx_external_bytes(t)[0]),
     ValueError, "external data"),
    ("tasks.checkpoint.load", "a flipped bit in a checkpoint", lambda t: checkpoint_load(_flipped_checkpoint(t)),
     ValueError, "content hash mismatch", _hashes),
    ("lstmkit.set_num_threads", "10**6", lambda t: lstmkit.set_num_threads(10**6), ValueError, "threads",
     _threads),
    ("lstmkit.set_num_threads", "2**63", lambda t: lstmkit.set_num_threads(2**63), ValueError, "threads",
     _threads),
    ("layer.stream", "batch=2**63", lambda t: lstmkit.LSTM(3, 4).stream(2**63), ValueError, "batch"),
    ("lstmkit predict", "a checkpoint with a flipped bit", lambda t: _cli(
        ["predict", "--model", str(_flipped_checkpoint(t)), "--csv", str(_series_csv(t))]), SystemExit,
     "2: lstmkit predict: error", _hashes),
    ("lstmkit forecast", "--out afile/sub", lambda t: _cli(_forecast(t, "--out", str(_afile(t) / "sub"))), SystemExit,
     "is a file"),
    ("lstmkit forecast", "--resume on a classify run's folder", lambda t: _cli(_forecast(
        t, "--out", str(_classify_run(t)), "--resume")), SystemExit, "holds a classify run"),
    ("lstmkit forecast", "--resume with another --hidden-size", lambda t: _cli(_forecast(
        t, "--out", str(_finished_run(t)), "--resume", "--hidden-size", "16")), SystemExit, "another shape"),
    ("lstmkit forecast", "disk full (ENOSPC) at the first checkpoint", lambda t: _with_oserror(
        "fsync", errno.ENOSPC, lambda: _cli(_forecast(t, "--out", str(t / "run")))), SystemExit, "3: "),
    ("lstmkit forecast", "cross-device rename (EXDEV)", lambda t: _with_oserror(
        "replace", errno.EXDEV, lambda: _cli(_forecast(t, "--out", str(t / "run")))), SystemExit, "3: "),
    ("lstmkit forecast", "--hidden-size 99999999999 (terabytes of weights)", lambda t: _cli(_forecast(
        t, "--out", str(t / "run"), "--hidden-size", "99999999999")), SystemExit, "3: "),
    ("lstmkit forecast", "a CSV with only a header", lambda t: _cli(_forecast(t, "--csv", str(_series_csv(t, [])))),
     SystemExit, "no rows"),
    ("lstmkit forecast", "an unparsable ds", lambda t: _cli(_forecast(t, "--csv", str(_series_csv(
        t, ["a,2020-01-01,1", "a,notadate,2"])))), SystemExit, "ds"),
    ("lstmkit forecast", "a value of 1e300", lambda t: _cli(_forecast(t, "--csv", str(_series_csv(
        t, [f"a,{i},{1e300 if i == 5 else i}" for i in range(30)])))), SystemExit, "outside"),
    ("lstmkit forecast", "duplicate (unique_id, ds) rows", lambda t: _cli(_forecast(t, "--csv", str(_series_csv(
        t, [f"a,{i},{i}" for i in range(30)] + ["a,3,7"])))), SystemExit, "more than once"),
    ("lstmkit generate", "a Latin-1 --text", lambda t: _cli(["generate", "--text", str(_file(
        t, "latin1.txt", "café ".encode("latin-1") * 400)), "--out", str(t / "run")]), SystemExit, "--text"),
    ("lstmkit explain", "--data of 5 values per step for input_size 3", lambda t: _cli(
        ["explain", str(_valid_safetensors(t)), "--data", str(_npy(t, np.zeros((6, 2, 5))))]), SystemExit,
     "--data"),
    ("lstmkit summary FILE", "a file that does not exist", lambda t: _cli(["summary", str(t / "none.onnx")]),
     SystemExit, "2: lstmkit summary: error"),
    ("lstmkit convert", "an existing OUT without --overwrite", lambda t: _cli(
        ["convert", str(_valid_safetensors(t)), str(_file(t, "old.onnx", b"kept"))]), SystemExit, "exists"),
    ("lstmkit convert", "OUT the input itself, with --overwrite", lambda t: _cli(
        ["convert", str(_valid_safetensors(t)), str(_valid_safetensors(t)), "--overwrite"]), SystemExit,
     "is the input file itself"),
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
    return "\n".join(lines) + "\n" + NOTES


NOTES = """
## Exit status

The `lstmkit` command ends an error with one line on stderr, `lstmkit <command>: error: <what>`; `--debug`
anywhere on the command line prints the Python traceback as well.

| status | meaning |
| --- | --- |
| 0 | success |
| 1 | internal error: a bug in lstmkit (`internal error (...); rerun with --debug ...`); please report it |
| 2 | bad input: arguments, files, data (argparse's usage errors too) |
| 3 | the system refused: disk full, permission, cross-device folder, memory, a missing optional dependency |
| 130 | Ctrl-C: `interrupted (Ctrl-C); <run>/.../last.safetensors holds epoch N; continue with: lstmkit ... --resume` |

## Bounds and file behaviour

- Loaders check every declared size against the file before building anything: a safetensors header
  against the file's bytes, `num_layers` against the tensors present, ONNX tensor dims against the model's
  bytes, `.pt`/`.keras` zip members may inflate to 8x the file + 16 MB, HDF5 datasets and Keras `units`
  against the values stored. Quoted messages are cut at 600 characters. `tests/test_hostile_files.py`
  asserts < 100 MB added peak RSS and < 20 s for each bomb.
- Every file lstmkit writes carries `content_sha256` (tensors) and `metadata_sha256` (the other metadata),
  task checkpoints included; both are required on load (`verify=False` for a trusted copy another tool
  rewrote). A hash finds damage, not malice: the sizes are checked even when the hashes agree.
- FIFOs, devices and sockets are refused by name before any read.
- Written files get the mode `open()` gives (0666 less the umask). A symlink is written through: its
  target gets the new content and the link stays. Temp files `.<name>.<8 chars>.tmp<suffix>` left by a
  killed writer are removed by the next save to that path once older than the saving process.
- `set_num_threads(n)` takes 1 to `max_threads()` (4 x the CPUs, at least 16); `stream(batch)` takes 1 to
  2**24 rows. A big-endian float32 input is copied to native order, not refused.
"""


def _run(case, tmp: Path) -> str:
    entry, bad, call, error, phrase, *shown = case
    with pytest.raises(error) as info:
        call(tmp)
    message = str(info.value)
    assert phrase in message, f"{entry} / {bad}: {message!r} does not name {phrase!r}"
    assert len(message) < 600, f"{entry} / {bad}: a {len(message)}-character message"
    text = f"exit status {message}" if error is SystemExit else f"{error.__name__}: {message}"
    text = text.replace("|", "\\|").replace(str(tmp), "…").replace("\n", " ")
    return shown[0](text) if shown else text


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_bad_input_gets_a_clear_error(case, tmp_path):
    _run(case, tmp_path)


def test_docs_error_table_is_current(tmp_path_factory):
    rows = [(c[0], c[1], _run(c, tmp_path_factory.mktemp("case"))) for c in CASES]
    table = _table(rows)
    if os.environ.get("LSTMKIT_WRITE_DOCS"):
        DOC.write_text(table)
    assert DOC.read_text() == table, "docs/errors.md is stale: rerun with LSTMKIT_WRITE_DOCS=1"
