"""The CLI ends every user error with one line and a documented exit status, never a traceback (issue 22):
damaged checkpoints for predict and --resume, runs that cannot continue, folders it cannot write, a full
disk, a cross-device rename, Ctrl-C, and CSVs it cannot use. ``--debug`` shows the traceback."""
import contextlib
import errno
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("pandas")
pytest.importorskip("safetensors")

from lstmkit.cli import main  # noqa: E402

SRC = str(Path(__file__).resolve().parent.parent / "src")
FAST = ["--horizon", "4", "--hidden-size", "8", "--baselines", "naive", "--no-progress"]
FUTURE = ["--horizon", "4", "--hidden-size", "8", "--no-progress"]  # --future has no backtest: no --baselines


def _csv(path: Path, rows=None) -> Path:
    """Three short daily series (unique_id, ds, y), or the given text rows after the header."""
    if rows is None:
        t = np.arange(40)
        rows = [f"s{k},{np.datetime64('2020-01-01') + int(i)},{10 + k + np.sin(i / 3):.4f}" for k in range(3)
                for i in t]
    path.write_text("unique_id,ds,y\n" + "".join(r + "\n" for r in rows))
    return path


def _cli(argv, capsys) -> tuple[int, str]:
    """(status, stderr) of the CLI run in-process; asserts stderr's error is one line with no traceback."""
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("lstmkit ")]
    if status:
        assert len(lines) == 1 and lines[0] == err.strip().splitlines()[-1], err
    return status, (lines[-1] if lines else "")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished two-epoch forecast run (checkpoints, model.safetensors), shared read-only by the tests."""
    tmp = tmp_path_factory.mktemp("run")
    out = tmp / "run"
    assert main(["forecast", "--csv", str(_csv(tmp / "tiny.csv")), "--epochs", "2", "--out", str(out), *FAST]) == 0
    return out


def _copy(run_dir, tmp_path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


# ------------------------------------------------------------------------------------- damaged checkpoints

@pytest.mark.parametrize("damage,phrase", [
    ("flip", "content hash mismatch: the tensors are damaged"),
    ("truncate", "truncated safetensors file"),
    ("garbage", "not a safetensors file"),
    ("metadata", "metadata hash mismatch: the metadata was changed"),
])
def test_predict_refuses_a_damaged_model_in_one_line(damage, phrase, run_dir, tmp_path, capsys):
    model = tmp_path / "model.safetensors"
    data = bytearray((run_dir / "model.safetensors").read_bytes())
    if damage == "flip":  # once: a weight became -1.7e37 and predict exited 0 with other answers
        data[-100] ^= 0x40
    elif damage == "truncate":
        data = data[: len(data) // 3]
    elif damage == "garbage":
        data = bytearray(b"\xff" * 8 + b"garbage" * 10)
    else:
        data = data.replace(b"forecast", b"forecasT", 1)  # the task name in the metadata
    model.write_bytes(bytes(data))
    status, line = _cli(["predict", "--model", model, "--csv", _csv(tmp_path / "new.csv")], capsys)
    assert status == 2 and phrase in line


def test_predict_output_in_a_missing_folder_is_named_before_the_work(run_dir, tmp_path, capsys):
    output = tmp_path / "no" / "p.csv"
    status, line = _cli(["predict", "--model", run_dir / "model.safetensors", "--csv", _csv(tmp_path / "new.csv"),
                         "--output", output], capsys)
    assert status == 2 and f"--output {output}: no folder {output.parent}" in line


def test_predict_names_a_forecast_csvs_missing_column_by_flag(run_dir, tmp_path, capsys):
    csv = tmp_path / "renamed.csv"
    csv.write_text(_csv(tmp_path / "new.csv").read_text().replace("unique_id,ds,y", "series,ds,y", 1))
    status, line = _cli(["predict", "--model", run_dir / "model.safetensors", "--csv", csv], capsys)
    assert status == 2 and f"--csv {csv}: no column(s) 'unique_id' (columns: series, ds, y)" in line


def test_generate_names_the_fractions_that_leave_too_little_to_train(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("some words to read. " * 600)  # 12,000 characters
    status, line = _cli(["generate", "--text", text, "--test-fraction", "0.99", "--out", tmp_path / "g"], capsys)
    assert status == 2 and "characters leave 0 to train on after the test (11880)" in line
    assert "--test-fraction 0.99" in line


def test_resume_refuses_a_damaged_last_checkpoint(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path)
    last = run / "member-0" / "last.safetensors"
    good = last.read_bytes()
    last.write_bytes(good.replace(b'\\"epoch\\": 2', b'\\"epoch\\": 9'))  # tampered trainer state
    assert last.read_bytes() != good
    status, line = _cli(["forecast", "--csv", _csv(tmp_path / "tiny.csv"), "--epochs", "3", "--out", run,
                         "--resume", *FAST], capsys)
    assert status == 2 and "metadata hash mismatch" in line


def test_resume_with_another_hidden_size_names_the_difference(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path)
    argv = ["forecast", "--csv", _csv(tmp_path / "tiny.csv"), "--epochs", "3", "--out", run, "--resume", *FAST]
    argv[argv.index("--hidden-size") + 1] = "16"
    status, line = _cli(argv, capsys)
    assert status == 2 and "holds a model of another shape" in line and "hidden_size" in line, line


def test_resume_refuses_another_tasks_folder(tmp_path, capsys):
    import torch

    from lstmkit.tasks import checkpoint

    other = tmp_path / "classify-run"
    other.mkdir()
    checkpoint.save(str(other / "last.safetensors"), task="classify", config={}, model=torch.nn.Linear(2, 2))
    status, line = _cli(["forecast", "--csv", _csv(tmp_path / "tiny.csv"), "--epochs", "1", "--out", other,
                         "--resume", *FAST], capsys)
    assert status == 2 and "holds a classify run" in line and "not a forecast run" in line


# ------------------------------------------------------------------------------------------------- folders

def test_out_under_a_file_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    status, line = _cli(["forecast", "--csv", _csv(tmp_path / "tiny.csv"), "--out", tmp_path / "afile" / "sub",
                         *FAST], capsys)
    assert status == 2 and "afile is a file, not a folder" in line


def test_unwritable_out_is_refused_before_training(tmp_path, capsys):
    """Once a PermissionError after an epoch of training. As root, chattr +i makes the folder unwritable."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode:
            pytest.skip("root without chattr +i: no way to make a folder unwritable")
        unlock = ["chattr", "-i", str(folder)]
    else:
        folder.chmod(0o555)
        unlock = ["chmod", "755", str(folder)]
    try:
        status, line = _cli(["forecast", "--csv", _csv(tmp_path / "tiny.csv"), "--out", folder, "--overwrite",
                             *FAST], capsys)
    finally:
        subprocess.run(unlock, check=True)
    assert status == 3 and f"--out {folder}: cannot write there" in line
    assert "epoch" not in capsys.readouterr().out  # no training ran


def test_disk_full_is_one_line_with_status_3(tmp_path, capsys, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", full)  # the first checkpoint's fsync finds the disk full
    status, line = _cli(["forecast", "--csv", _csv(tmp_path / "tiny.csv"), "--epochs", "1", "--out",
                         tmp_path / "run", *FAST], capsys)
    assert status == 3 and "No space left on device (ENOSPC)" in line and "--resume" in line
    assert not [p for p in (tmp_path / "run").rglob("*.tmp*")], "the temp file of the failed write is removed"


def test_disk_full_inside_safetensors_is_status_3_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    """safetensors reports ENOSPC as its own SafetensorError (checked against /dev/full-like tmpfs: "Error while
    serializing: I/O error: No space left on device (os error 28)"), which ended as an internal error, exit 1."""
    import safetensors.torch as st
    from safetensors import SafetensorError

    from lstmkit.tasks.checkpoint import load

    real, lasts = st.save_file, []

    def fills_up(tensors, filename, metadata=None):
        lasts.extend([filename] if os.path.basename(filename).startswith(".last.safetensors.") else [])
        if len(lasts) < 2:  # epoch 1's checkpoints are written; the disk is full at epoch 2's last.safetensors
            return real(tensors, filename, metadata=metadata)
        Path(filename).write_bytes(b"half a checkpoint")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    monkeypatch.setattr(st, "save_file", fills_up)
    status, line = _cli(["forecast", "--csv", _csv(tmp_path / "tiny.csv"), "--epochs", "2", "--patience", "9",
                         "--out", tmp_path / "run", *FAST], capsys)
    last = tmp_path / "run" / "member-0" / "last.safetensors"
    assert status == 3 and f"No space left on device (ENOSPC): {last}; free some space" in line, line
    assert load(str(last))["trainer"]["epoch"] == 1  # the previous checkpoint, whole
    assert not [p for p in (tmp_path / "run").rglob("*.tmp*")], "the half-written temp file is removed"


def test_disk_full_at_the_first_checkpoint_leaves_no_empty_folders(tmp_path, capsys, monkeypatch):
    """The run made --out and member-0/ inside it, then its first checkpoint found the disk full: with no file
    written, neither folder is left behind (an empty member-0/ was)."""
    import safetensors.torch as st
    from safetensors import SafetensorError

    def full(tensors, filename, metadata=None):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    monkeypatch.setattr(st, "save_file", full)
    status, line = _cli(["forecast", "--csv", _csv(tmp_path / "tiny.csv"), "--epochs", "1", "--out",
                         tmp_path / "run", *FAST], capsys)
    assert status == 3 and "No space left on device (ENOSPC)" in line, line
    assert not (tmp_path / "run").exists(), sorted(str(p) for p in (tmp_path / "run").rglob("*"))


def test_cross_device_rename_is_one_line_with_status_3(tmp_path, capsys, monkeypatch):
    def exdev(src, dst):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), src, None, dst)
    monkeypatch.setattr(os, "replace", exdev)
    status, line = _cli(["forecast", "--csv", _csv(tmp_path / "tiny.csv"), "--epochs", "1", "--out",
                         tmp_path / "run", *FAST], capsys)
    assert status == 3 and "(EXDEV)" in line and "one filesystem" in line


def test_out_symlinked_to_another_filesystem_works(tmp_path, capsys):
    """--out a symlink into /dev/shm (tmpfs): every file lands there, no cross-device rename."""
    if not os.access("/dev/shm", os.W_OK):
        pytest.skip("no writable /dev/shm")
    target = Path("/dev/shm") / f"lstmkit-run-{os.getpid()}"
    target.mkdir()
    link = tmp_path / "run"
    link.symlink_to(target)
    try:
        status, _ = _cli(["forecast", "--csv", _csv(tmp_path / "tiny.csv"), "--epochs", "1", "--out", link,
                          "--overwrite", *FAST], capsys)
        assert status == 0 and (target / "member-0" / "last.safetensors").is_file()
        assert (target / "model.safetensors").is_file()
    finally:
        shutil.rmtree(target)


# ------------------------------------------------------------------------------------------------- Ctrl-C

def test_ctrl_c_says_where_the_run_stands_and_the_printed_command_resumes_it(tmp_path):
    csv = _csv(tmp_path / "tiny.csv")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC}
    # Ctrl-C as a terminal gives it: SIGINT at its default action in the child. A suite started in the
    # background (`nohup .ci/run &`) passes SIGINT on ignored, and Python then installs no handler for it.
    proc = subprocess.Popen([sys.executable, "-m", "lstmkit", "forecast", "--csv", str(csv), "--epochs", "400",
                             "--out", str(out), "--patience", "1000", *FAST], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stdout:  # wait until two epochs are checkpointed
        if line.lstrip().startswith("epoch") and line.split()[1] == "2":
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("lstmkit forecast: interrupted (Ctrl-C); ") and "member-0/last.safetensors holds epoch" \
        in last, last
    command = shlex.split(last.split("continue with: ", 1)[1])
    assert command[0] == "lstmkit" and "--resume" in command and str(out) in command
    epoch = int(last.split("holds epoch ")[1].split(";")[0])
    command[command.index("--epochs") + 1] = str(epoch + 1)  # the printed command, one more epoch
    done = subprocess.run([sys.executable, "-m", "lstmkit", *command[1:]], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resumed from {out}/member-0/last.safetensors after epoch {epoch}" in done.stdout


# --------------------------------------------------------------------------------------------------- CSVs

@pytest.mark.parametrize("rows,phrase", [
    ([], "no rows (only a header)"),
    (["a,2020-01-01,1", "a,notadate,2"], "column ds holds neither dates nor integers"),
    ([f"a,{i},{1e300 if i == 5 else i}" for i in range(30)], "column y, row 7: 1e+300 is outside"),
    ([f"a,{i},{i}" for i in range(30)] + ["a,3,7"], "(unique_id, ds) = (a, 3) appears more than once (row 32)"),
    ([f"a,{i},{'x' if i == 2 else i}" for i in range(30)], "column y, row 4: 'x' is not a number"),
])
def test_unusable_csv_is_one_line_before_training(rows, phrase, tmp_path, capsys):
    status, line = _cli(["forecast", "--csv", _csv(tmp_path / "bad.csv", rows), "--epochs", "1", "--out",
                         tmp_path / "run", *FAST], capsys)
    assert status == 2 and phrase in line, line


# ------------------------------------------------------------------------------------ internal and --debug

def test_an_internal_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    from lstmkit.commands import summary

    def broken(args):
        raise AttributeError("'NoneType' object has no attribute 'x'")
    monkeypatch.setattr(summary, "run", broken)
    assert main(["summary", "--input-size", "3", "--hidden-size", "4"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("lstmkit summary: error: internal error (AttributeError: 'NoneType' object has no "
                           "attribute 'x'); rerun with --debug for the traceback and please report it")
    assert main(["summary", "--input-size", "3", "--hidden-size", "4", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in broken" in err


@pytest.mark.parametrize("argv, flag", [
    (["demo", "--epochs", "0"], "--epochs"), (["demo", "--hidden-size", "-1"], "--hidden-size"),
    (["classify", "--dataset", "digits", "--epochs", "0"], "--epochs"),
    (["forecast", "--dataset", "tourism-quarterly", "--lr", "-1"], "--lr"),
    (["forecast", "--dataset", "tourism-quarterly", "--batch-size", "0"], "--batch-size"),
    (["generate", "--seed", "-3"], "--seed"), (["summary", "--input-size", "0", "--hidden-size", "3"], "--input-size"),
])
def test_numbers_out_of_range_are_usage_errors_naming_the_flag(argv, flag, capsys):
    """Every numeric flag is checked by argparse: --epochs 0 ended `lstmkit demo` in an internal error."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: expected" in err and "Traceback" not in err


def test_sizes_beyond_memory_name_the_flags(tmp_path, capsys):
    """--hidden-size 99999999999 ended in an internal error (torch's allocator raises a RuntimeError), and
    `summary --num-layers 10**19` ran until the memory was gone: summary counts without allocating, a model
    that cannot be allocated is exit 3 naming the size flags. The subprocess has 4 GB, so a regression fails
    instead of filling the machine."""
    import resource

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    summary = subprocess.run([sys.executable, "-m", "lstmkit", "summary", "--input-size", "3", "--hidden-size", "4",
                              "--num-layers", str(10**19)], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PYTHONPATH": SRC}, preexec_fn=limited)
    assert summary.returncode == 0, summary.stderr[-2000:]
    assert "total parameters: 1,599,999,999,999,999,999,984 in torch" in summary.stdout
    status, line = _cli(["forecast", "--csv", _csv(tmp_path / "tiny.csv"), "--epochs", "1", "--out", tmp_path / "run",
                         *FAST, "--hidden-size", "99999999999"], capsys)
    assert status == 3 and line.startswith("lstmkit forecast: error: out of memory (") and \
        "bytes asked for) with --hidden-size 99999999999" in line, line
    assert not (tmp_path / "run").exists()


def test_a_run_that_fails_before_writing_leaves_no_folder(tmp_path, capsys):
    """An option error found once the run folder exists (here --loss-weights without ES-RNN) removes the empty
    folder the run made; a folder the user had made stays."""
    csv = _csv(tmp_path / "s.csv")
    status, err = _cli(["forecast", "--csv", csv, *FAST, "--loss-weights", "mase", "--out", tmp_path / "new"], capsys)
    assert status == 2 and "--loss-weights" in err
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    _cli(["forecast", "--csv", csv, *FAST, "--loss-weights", "mase", "--out", tmp_path / "mine"], capsys)
    assert (tmp_path / "mine").is_dir()


def test_more_bad_input_ends_in_one_line_naming_it(tmp_path, capsys):
    """From a CLI fuzzer: each of these ended in an internal error (or wrote over the input)."""
    import lstmkit

    model = tmp_path / "m.safetensors"
    lstmkit.io.write(lstmkit.LSTM(3, 4), model)
    np.save(tmp_path / "empty.npy", np.zeros(0))
    (tmp_path / "empty.npy").write_bytes(b"")  # a zero-byte .npy: np.load raises EOFError
    np.savez(tmp_path / "two.npy.npz", a=np.zeros(3))
    (tmp_path / "two.npy.npz").rename(tmp_path / "arch.npy")  # an .npz under a .npy name
    for data in ("empty.npy", "arch.npy"):
        status, err = _cli(["explain", model, "--data", tmp_path / data], capsys)
        assert status == 2 and f"--data {tmp_path / data}: " in err
    status, err = _cli(["forecast", "--dataset", "m1-bogus", *FAST, "--out", tmp_path / "o"], capsys)
    assert status == 2 and "--dataset: unknown forecasting set 'm1-bogus'" in err
    before = model.read_bytes()
    status, err = _cli(["convert", model, model, "--overwrite"], capsys)
    assert status == 2 and "is the input file itself" in err and model.read_bytes() == before
    with pytest.raises(SystemExit):
        main(["classify", "--dataset", "digits", "--dropout", "1.5"])
    assert "argument --dropout: expected a number in [0, 1)" in capsys.readouterr().err


def test_report_and_convert_never_damage_what_they_replace(tmp_path, capsys):
    """From the CLI fuzzer: report wrote in place (a full disk left half a page, and the replaced report was
    gone); report --out the model itself turned the model into HTML; --overwrite replaced a FIFO with a file."""
    import lstmkit

    model = tmp_path / "m.safetensors"
    lstmkit.io.write(lstmkit.LSTM(3, 4), model)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((6, 2, 3)))
    before = model.read_bytes()
    status, err = _cli(["report", model, "--data", tmp_path / "x.npy", "--out", model, "--overwrite"], capsys)
    assert status == 2 and "is the model file itself" in err and model.read_bytes() == before
    fifo = tmp_path / "p.onnx"
    os.mkfifo(fifo)
    status, err = _cli(["convert", model, fifo, "--overwrite"], capsys)
    assert status == 2 and "not a regular file" in err and not fifo.is_file()
    old = tmp_path / "old.html"
    old.write_text("the previous report")
    assert _cli(["report", model, "--data", tmp_path / "x.npy", "--out", old, "--overwrite"], capsys)[0] == 0
    assert old.read_text().startswith("<!") and not [p for p in tmp_path.iterdir() if p.name.startswith(".old")]


def test_no_command_writes_over_the_file_it_reads(run_dir, tmp_path, capsys):
    """One check (io.files.check_not_source) for convert, report and write_report: through a symlink, a hard
    link, and a run folder whose model.safetensors is --out (report read it, then replaced it with HTML)."""
    import lstmkit
    from lstmkit.introspect.report import write_report

    model = tmp_path / "m.safetensors"
    lstmkit.io.write(lstmkit.LSTM(3, 4), model)
    before = model.read_bytes()
    (tmp_path / "link.safetensors").symlink_to(model)
    os.link(model, tmp_path / "hard.safetensors")
    for alias in ("link.safetensors", "hard.safetensors"):
        status, err = _cli(["convert", model, tmp_path / alias, "--overwrite"], capsys)
        assert status == 2 and f"output: {tmp_path / alias} is the input file itself" in err
    run = _copy(run_dir, tmp_path)
    saved = (run / "model.safetensors").read_bytes()
    status, err = _cli(["report", run, "--out", run / "model.safetensors", "--overwrite"], capsys)
    assert status == 2 and "--out: " in err and "is the model file itself" in err
    assert (run / "model.safetensors").read_bytes() == saved
    with pytest.raises(ValueError, match="path: .* is the model file itself"):
        write_report(model, np.zeros((2, 1, 3), np.float32), tmp_path / "hard.safetensors", overwrite=True)
    assert model.read_bytes() == before


def test_report_never_writes_over_its_data_or_vocab_and_names_a_missing_folder(tmp_path, capsys):
    """report --out the --data (or --vocab) file with --overwrite replaced the user's input with HTML; an --out in
    a folder that does not exist was named by its temp file (.o.html.x1y2.tmp.html) after the work, and a folder
    given as --out was first "exists; pass --overwrite", then with it "is a directory"."""
    import lstmkit

    model = tmp_path / "m.safetensors"
    lstmkit.io.write(lstmkit.LSTM(3, 4), model)
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).standard_normal((6, 2, 3)))
    before = data.read_bytes()
    status, err = _cli(["report", model, "--data", data, "--out", data, "--overwrite"], capsys)
    assert status == 2 and "--out: " in err and "is the --data file itself" in err and data.read_bytes() == before
    chars = lstmkit.LSTM(3, 4)
    vocab, text = tmp_path / "vocab.txt", tmp_path / "t.txt"
    vocab.write_text("abc")
    text.write_text("abcab")
    lstmkit.io.write(chars, model, overwrite=True)
    status, err = _cli(["report", model, "--data", text, "--vocab", vocab, "--out", vocab, "--overwrite"], capsys)
    assert status == 2 and "is the --vocab file itself" in err and vocab.read_text() == "abc"
    status, err = _cli(["report", model, "--data", data, "--out", tmp_path / "nodir" / "r.html"], capsys)
    assert status == 2 and "the folder" in err and "does not exist" in err and ".tmp" not in err
    (tmp_path / "folder.html").mkdir()
    for extra in ([], ["--overwrite"]):
        status, err = _cli(["report", model, "--data", data, "--out", tmp_path / "folder.html", *extra], capsys)
        assert status == 2 and "is a directory" in err and "pass overwrite" not in err


@contextlib.contextmanager
def _fifo_opened_by_reader(fifo: Path):
    """While the block runs, a reader that opens ``fifo`` gets end-of-file at once instead of blocking forever,
    so the test of a regression fails instead of hanging."""
    done = threading.Event()

    def release():
        while not done.wait(0.05):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO until a reader has it open
            except OSError:
                continue
    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield fifo
    finally:
        done.set()
        thread.join()


@pytest.mark.parametrize("argv, flag", [
    (["generate", "--text", "{fifo}", "--epochs", "1"], "--text"),
    (["forecast", "--csv", "{fifo}", "--epochs", "1", *FAST], "--csv"),
    (["classify", "--ts", "{fifo}", "--epochs", "1"], "--ts"),
    (["explain", "{model}", "--data", "{fifo}"], "--data"),
    (["explain", "{model}", "--data", "{text}", "--vocab", "{fifo}"], "--vocab"),
])
def test_a_fifo_given_as_input_is_refused_by_name(argv, flag, tmp_path, capsys):
    """`generate --text FIFO` blocked forever: every input read whole is checked to be a regular file first."""
    import lstmkit

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    lstmkit.io.write(lstmkit.LSTM(3, 4), tmp_path / "m.safetensors")
    (tmp_path / "t.txt").write_text("abc")
    names = {"fifo": fifo, "model": tmp_path / "m.safetensors", "text": tmp_path / "t.txt"}
    with _fifo_opened_by_reader(fifo):
        status, line = _cli([a.format(**names) for a in argv] + ["--out", tmp_path / "run"] * (argv[0] != "explain"),
                            capsys)
    assert status == 2 and f"{flag} {fifo}: a FIFO, expected a regular" in line, line


@pytest.mark.parametrize("flag, value", [("--temperature", "0"), ("--temperature", "-1"), ("--temperature", "inf"),
                                         ("--temperature", "nan"), ("--dynamic-lr", "-0.1"),
                                         ("--dynamic-lr", "nan")])
def test_generate_checks_its_sampling_flags_before_training(flag, value, tmp_path, capsys):
    """--temperature 0 and --dynamic-lr -0.1 were refused by the model after the whole training run."""
    text = tmp_path / "t.txt"
    text.write_text("".join(f"line {i}: the quick brown fox\n" for i in range(200)))
    with pytest.raises(SystemExit) as e:
        main(["generate", "--text", str(text), "--epochs", "1", "--batches-per-epoch", "1", "--hidden-size", "8",
              "--out", str(tmp_path / "run"), flag, value])
    assert e.value.code == 2 and f"argument {flag}: expected a number" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_predict_honours_output_for_a_char_model_and_refuses_flags_its_model_ignores(run_dir, tmp_path, capsys):
    """predict with a generate model printed its sample whatever --output or --csv said; a forecast model
    ignored --prompt. --output now gets the sample; a flag the model's task does not read is refused by name."""
    from lstmkit.tasks.generate import CharLM

    lm = CharLM(hidden_size=8, embed_dim=4, epochs=1, batches_per_epoch=1, seq_len=8)
    lm.fit("abcdefg" * 40, log=lambda *a: None)
    lm.save(str(tmp_path / "lm.safetensors"))
    status, _ = _cli(["predict", "--model", tmp_path / "lm.safetensors", "--n-chars", "20", "--prompt", "ab",
                      "--output", tmp_path / "sample.txt"], capsys)
    sample = (tmp_path / "sample.txt").read_text()
    assert status == 0 and sample.startswith("ab") and len(sample) == 23  # prompt, 20 characters, newline
    for flag, value, task in [("--csv", _csv(tmp_path / "s.csv"), "generate"), ("--label-col", "y", "generate"),
                              ("--prompt", "ab", "forecast"), ("--text-col", "t", "forecast")]:
        model = tmp_path / "lm.safetensors" if task == "generate" else run_dir / "model.safetensors"
        extra = [] if flag == "--csv" or task == "generate" else ["--csv", _csv(tmp_path / "s.csv")]
        status, line = _cli(["predict", "--model", model, flag, value, *extra], capsys)
        assert status == 2 and line.startswith(f"lstmkit predict: error: {flag}: a {task} model does not read it"), line


@pytest.mark.parametrize("argv, phrase", [
    (["classify", "--dataset", "digits", "--limit", "1", "--epochs", "1"],
     "--limit 1: fewer training cases than the 10 classes"),  # was scikit-learn's "needs samples of 2 classes"
    (["forecast", "--csv", "{csv}", "--season-length", "40", "--epochs", "1", *FAST],
     "--season-length 40 with --horizon 4 and --folds 1: training needs a series of 52 values"),  # "No objects to
    (["forecast", "--csv", "{csv}", "--season-length", "40", "--future", "--epochs", "1", *FUTURE],  # concatenate"
     "--season-length 40 with --horizon 4: training needs a series of 48 values"),
    (["forecast", "--csv", "{csv}", "--season-length", "38", "--model", "esrnn", "--future", "--epochs", "1",
      *FUTURE],
     "--season-length 38 with --horizon 4: training needs a series of 46 values"),  # was "df: 3 series ..."
    (["explain", "{model}", "--data", "{x5}"], "--data {x5}: expected an array (T, B, 3) or (T, 3)"),  # "input:"
    (["explain", "{model}", "--data", "{empty}"], "got shape (0, 2, 3)"),  # "need at least one array to stack"
    (["generate", "--text", "{latin1}", "--epochs", "1"], "--text {latin1}: not UTF-8 text"),  # codec's words
    (["explain", "{model}", "--data", "{latin1}", "--vocab", "abc"], "--data {latin1}: not UTF-8 text"),
    (["summary", "--mode", "gru", "--input-size", "3", "--hidden-size", "4", "--proj-size", "2"],
     "--proj-size: only LSTM supports a projection"),  # was "proj_size:"
])
def test_errors_name_the_flag_and_file_not_the_librarys_argument(argv, phrase, tmp_path, capsys):
    """From the CLI fuzzer: each of these named an argument of the library (input, df, proj_size) or none."""
    import lstmkit

    files = {"csv": _csv(tmp_path / "s.csv"), "model": tmp_path / "m.safetensors", "x5": tmp_path / "x5.npy",
             "empty": tmp_path / "e.npy", "latin1": tmp_path / "latin1.txt"}
    lstmkit.io.write(lstmkit.LSTM(3, 4), files["model"])
    np.save(files["x5"], np.zeros((6, 2, 5)))
    np.save(files["empty"], np.zeros((0, 2, 3)))
    files["latin1"].write_bytes("café crème ".encode("latin-1") * 200)
    out = ["--out", tmp_path / "run"] if argv[0] in ("classify", "forecast", "generate") else []
    status, line = _cli([a.format(**files) for a in argv] + out, capsys)
    assert status == 2 and phrase.format(**files) in line, line
    assert not (tmp_path / "run").exists()


def test_an_unreadable_input_gets_an_input_hint(tmp_path, capsys, monkeypatch):
    """Permission denied on --csv said "choose a folder you can write to", the hint for an output folder."""
    import builtins

    csv = _csv(tmp_path / "s.csv")
    csv.chmod(0)
    if os.geteuid() == 0:  # root reads any file: deny it here as the kernel does for another user
        real_open, real_access = builtins.open, os.access

        def deny(file, *args, **kw):
            if str(file) == str(csv):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
            return real_open(file, *args, **kw)
        monkeypatch.setattr(builtins, "open", deny)
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: str(p) != str(csv) and real_access(p, mode, **kw))
    status, line = _cli(["forecast", "--csv", csv, "--epochs", "1", "--out", tmp_path / "run", *FAST], capsys)
    assert status == 3 and f"Permission denied (EACCES): {csv}; lstmkit may not read it: check its permissions" \
        in line and "write" not in line, line


@pytest.mark.parametrize("argv, phrase", [
    (["convert", "{model}", "{dir}/o.safetensors", "--streaming"], "--streaming: only for an ONNX OUTPUT"),
    (["convert", "{model}", "{dir}/o.onnx", "--mode", "gru"], "--mode: only for a torch (.pt/.pth) INPUT"),
    (["summary", "{model}", "--hidden-size", "8"], "--hidden-size: the model FILE says its sizes, got 8"),
    (["summary", "{model}", "--mode", "gru"], "--mode: only for a .pt/.pth FILE"),
    (["forecast", "--csv", "{csv}", "--future", "--folds", "2", "--out", "{dir}/run", *FUTURE],
     "--folds: only for the backtest, not with --future, got 2"),
    (["forecast", "--csv", "{csv}", "--future", "--out", "{dir}/run", *FAST],
     "--baselines: only for the backtest, not with --future, got ('naive',)"),
    (["classify", "--dataset", "digits", "--id-col", "case", "--out", "{dir}/run"],
     "--id-col: only read from --sequences, not --dataset, got 'case'"),
    (["classify", "--dataset", "digits", "--folds", "3", "--out", "{dir}/run"],
     "--folds: only with --validation kfold, not auto, got 3"),
    (["explain", "{model}", "--data", "{x}", "--vocab", "abc"], "--vocab: only for text --data"),
    (["forecast", "--csv", "{csv}", "--out", "{dir}/run", "--overwrite", "--resume", *FAST],
     "argument --resume: not allowed with argument --overwrite"),
])
def test_flags_that_would_be_ignored_are_refused(argv, phrase, tmp_path, capsys):
    """Each of these flags was silently ignored: it does not apply to the files, mode or source given."""
    import lstmkit

    files = {"model": tmp_path / "m.safetensors", "csv": _csv(tmp_path / "s.csv"), "x": tmp_path / "x.npy",
             "dir": tmp_path}
    lstmkit.io.write(lstmkit.LSTM(3, 4), files["model"])
    np.save(files["x"], np.zeros((4, 1, 3)))
    try:
        status, line = _cli([a.format(**files) for a in argv], capsys)
    except SystemExit as e:  # argparse's own usage error
        status, line = e.code, capsys.readouterr().err
    assert status == 2 and phrase in line, line
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob("o.*"))


def test_a_reader_that_goes_away_stops_the_command_quietly(tmp_path):
    """``lstmkit explain ... | head``: once the reader closes the pipe, the command stops with SIGPIPE's status
    (141) and no "error: Broken pipe" line (nor Python's "Exception ignored" at exit)."""
    import lstmkit

    model = tmp_path / "m.safetensors"
    lstmkit.io.write(lstmkit.LSTM(3, 4), model)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((6, 2, 3)))
    env = dict(os.environ, PYTHONPATH=str(Path(lstmkit.__file__).parents[1]))
    proc = subprocess.Popen([sys.executable, "-m", "lstmkit", "explain", str(model), "--data", str(tmp_path / "x.npy")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err


def test_introspection_and_file_errors_name_the_cause(tmp_path, capsys):
    """From a probe of report/explain/convert/summary: each came out as a message about something else (numpy's
    "All-NaN slice", "SVD did not converge", torch's weights_only advice in ANSI colours, Keras' "File not found"
    for a file that is there, "batch:" for --batch), or was accepted (--reset-threshold nan)."""
    import torch

    import lstmkit

    model = tmp_path / "m.safetensors"
    lstmkit.io.write(lstmkit.LSTM(3, 4), model)
    bad = np.random.default_rng(0).standard_normal((6, 2, 3))
    bad[2, 1, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "x.npy", np.nan_to_num(bad))
    for cmd in (["explain"], ["report", "--out", str(tmp_path / "r.html")]):
        status, err = _cli([cmd[0], model, "--data", tmp_path / "nan.npy", *cmd[1:]], capsys)
        assert status == 2 and "nan.npy: expected finite values, got NaN or inf (first at index (2, 1, 0))" in err
    status, err = _cli(["report", model, "--data", tmp_path / "x.npy", "--out", tmp_path / "r.html", "--batch", "5"],
                       capsys)
    assert status == 2 and "--batch: expected a sequence index in [0, 2), got 5" in err
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error
        main(["explain", str(model), "--data", str(tmp_path / "x.npy"), "--reset-threshold", "nan"])
    assert exit_.value.code == 2 and "--reset-threshold: expected a finite number, got nan" in capsys.readouterr().err
    torch.save(torch.nn.LSTM(3, 4), tmp_path / "module.pt")
    status, err = _cli(["convert", tmp_path / "module.pt", tmp_path / "o.safetensors"], capsys)
    assert status == 2 and "holds a pickled Python object (torch.nn.modules.rnn.LSTM" in err and "\x1b[" not in err
    (tmp_path / "junk.keras").write_bytes(b"junk")
    status, err = _cli(["summary", tmp_path / "junk.keras"], capsys)
    assert status == 2 and "not a zip archive" in err and "File not found" not in err
    lstmkit.io.write(lstmkit.GRU(3, 4, bidirectional=True), model, overwrite=True)
    status, err = _cli(["convert", model, tmp_path / "s.onnx", "--streaming"], capsys)
    assert status == 2 and "without --streaming" in err
