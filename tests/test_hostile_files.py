"""Hostile files and careless callers (issue 22): every loader is bounded by the bytes it is given, every file
lstmkit writes is hashed and verified, special files are refused by name, and writes behave like open().

The bombs (tests/hostile.py) load in a subprocess under an address-space cap, so a regression fails with a
MemoryError in the child instead of eating the machine; the child reports its peak RSS above what its
imports took, and the time.
"""
import importlib.util
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import hostile
import lstmkit
from lstmkit.io import files
from lstmkit.io.safetensors import content_hash, metadata_hash, read

HERE = Path(__file__).resolve().parent
CAP = 3 << 30  # address space of the child: torch + keras imports take ~1 GB of it
RSS_BOUND_MB = 100  # what a load may add to the child's peak RSS; the bombs took 1.2-2.9 GB before
SECONDS_BOUND = 20  # what a load may take; the bombs took 13-45 s (or never ended) before

CHILD = textwrap.dedent("""
    import json, os, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import torch, onnx, h5py, keras  # imported before the baseline: their memory is not the load's
    import lstmkit
    for path in sys.argv[1:]:  # one forked process a bomb: its peak RSS starts at this one's current RSS
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            start = time.perf_counter()
            try:
                lstmkit.io.read(path)
                outcome = "loaded"
            except BaseException as e:
                outcome = f"{{type(e).__name__}}: {{e}}"
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            report = {{"outcome": outcome, "seconds": time.perf_counter() - start, "added_mb": (peak - base) / 1024}}
            os.write(write_end, json.dumps(report).encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            report = pipe.read()
        _, status = os.waitpid(pid, 0)
        print(json.dumps({{"path": path, "status": status, **(json.loads(report) if report else {{}})}}))
""")

BOMBS = {
    ".pt naming weight_ih_l99999999": (hostile.pt_declared_layers, "layer suffixes _l0.._l99999999"),
    "safetensors config num_layers=10**7": (hostile.st_declared_layers, "num_layers=10000000 needs at least"),
    "ONNX metadata num_layers=10**7": (hostile.onnx_declared_layers, "num_layers=10000000 needs at least"),
    ".pt deflated 256 MB record": (lambda t: hostile.pt_deflate_bomb(t, 1 << 28), "zip members inflate to"),
    ".keras gzip-chunk dataset of 1 GB": (hostile.keras_chunk_bomb, "declares 1,073,742,144 bytes of datasets"),
    ".keras config units=10**6": (hostile.keras_declared_units, "config.json declares units=1000000"),
    ".keras Embedding(input_dim=10**9)": (hostile.keras_embedding, "config.json: layer 'Embedding'"),
    ".keras 2**20 one-value chunks (4 MB)": (lambda t: hostile.keras_chunk_bomb(t, 1 << 20, 1),
                                             "declares 1,048,576 HDF5 chunks"),
}


@pytest.fixture(scope="module")
def bomb_reports(tmp_path_factory) -> dict:
    """Every bomb loaded by one capped child process (the imports, ~5 s, paid once), each in a fork of its own:
    {name: {"outcome", "seconds", "added_mb", "status"}}."""
    if importlib.util.find_spec("keras") is None or importlib.util.find_spec("h5py") is None:
        pytest.skip("keras (lstmkit[keras]) is not installed")
    paths = {name: build(tmp_path_factory.mktemp("bomb")) for name, (build, _) in BOMBS.items()}
    child = subprocess.run([sys.executable, "-c", CHILD.format(cap=CAP), *map(str, paths.values())],
                           capture_output=True, text=True, timeout=600,
                           env={**os.environ, "PYTHONPATH": str(HERE.parent / "src")})
    assert child.returncode == 0, child.stderr[-2000:]
    by_path = {r["path"]: r for r in map(json.loads, child.stdout.strip().splitlines()[-len(paths):])}
    return {name: {"size": path.stat().st_size, **by_path[str(path)]} for name, path in paths.items()}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bomb_is_refused_within_bounded_memory_and_time(name, bomb_reports):
    report = bomb_reports[name]
    assert report["size"] < 2 << 20, "the bombs are small files"
    assert report["status"] == 0 and "outcome" in report, report  # the fork ended normally and reported
    assert report["outcome"].startswith("ValueError: ") and BOMBS[name][1] in report["outcome"], report
    assert len(report["outcome"]) < 400, "error messages are capped"
    assert report["added_mb"] < RSS_BOUND_MB, report
    assert report["seconds"] < SECONDS_BOUND, report


@pytest.mark.parametrize("name", sorted(hostile.MALFORMED_HEADERS))
def test_malformed_safetensors_header_gets_one_value_error(name, tmp_path):
    path = hostile.malformed_header(tmp_path, name)
    with pytest.raises(ValueError, match="malformed.safetensors: ") as info:
        lstmkit.load(path)
    assert len(str(info.value)) < 300


def test_declared_layers_error_is_short_even_at_10_to_6(tmp_path):
    """The 10**6-layer config once built an 80 MB message listing every missing name."""
    with pytest.raises(ValueError, match="num_layers=1000000 needs at least 2000000 weight tensors, but 4") as info:
        lstmkit.load(hostile.st_declared_layers(tmp_path, 10**6))
    assert len(str(info.value)) < 300


def test_long_key_lists_in_errors_are_capped(tmp_path):
    layer = lstmkit.LSTM(3, 4, seed=0)
    state = {**layer.state_dict(), **{f"extra_{k:06d}": np.zeros(1, np.float32) for k in range(20_000)}}
    with pytest.raises(ValueError, match="more characters") as info:
        lstmkit.io.model.build(layer.config, state)
    assert len(str(info.value)) < 1000


# ------------------------------------------------------------------------------------------- special files

def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "m.safetensors"
    os.mkfifo(fifo)

    def unblock():  # if load() ever opens the FIFO, this writer lets it return (and the test fail) in 5 s
        time.sleep(5)
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return
        os.close(fd)

    threading.Thread(target=unblock, daemon=True).start()
    start = time.perf_counter()
    readers = (lstmkit.load, lambda p: lstmkit.io.read(p, "onnx"), lambda p: lstmkit.io.read(p, "torch"))
    for load in readers:
        with pytest.raises(ValueError, match="a FIFO, expected a regular"):
            load(fifo)
    assert time.perf_counter() - start < 4


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_character_device_is_refused_unread():
    with pytest.raises(ValueError, match="/dev/zero: a character device, expected a regular safetensors file"):
        lstmkit.load("/dev/zero")


# ------------------------------------------------------------------------------------------------- hashes

def _resave(path: Path, edit) -> None:
    """Rewrite a safetensors file's metadata through ``edit(meta)`` (tensors unchanged, no rehash)."""
    meta, tensors = read(path, verify=False)
    edit(meta)
    from lstmkit.io.safetensors import encode

    blob = encode(tensors, dict(meta))  # encode adds fresh hashes; put the edited ones back
    head = json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])
    head["__metadata__"] = meta
    path.write_bytes(hostile.safetensors_bytes(json.dumps(head), blob[8 + int.from_bytes(blob[:8], "little"):]))


@pytest.mark.parametrize("key", ["content_sha256", "metadata_sha256"])
def test_a_model_file_without_its_hash_is_refused_unless_verify_false(key, tmp_path):
    path = lstmkit.save(lstmkit.GRU(3, 4, seed=0), tmp_path / "m.safetensors")
    _resave(path, lambda meta: meta.pop(key))
    with pytest.raises(ValueError, match=f"no {key} in a file lstmkit wrote"):
        lstmkit.load(path)
    loaded = lstmkit.load(path, verify=False)
    assert all(np.array_equal(v, lstmkit.GRU(3, 4, seed=0).state_dict()[k]) for k, v in loaded.state_dict().items())


def test_changed_metadata_is_refused(tmp_path):
    """clip=3 -> clip=1 keeps every shape: without the metadata hash it would load and compute other numbers."""
    path = lstmkit.save(lstmkit.LSTM(3, 4, clip=3.0, seed=0), tmp_path / "m.safetensors")

    def edit(meta):
        meta["config"] = meta["config"].replace('"clip": 3.0', '"clip": 1.0')
    _resave(path, edit)
    with pytest.raises(ValueError, match="metadata hash mismatch: the metadata was changed"):
        lstmkit.load(path)


def test_foreign_file_without_hashes_still_loads_as_a_state_dict(tmp_path):
    """A file lstmkit did not write (no lstmkit metadata) needs no hash: read() returns it."""
    st = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "foreign.safetensors"
    st.save_file({"w": np.ones((2, 3), np.float32)}, str(path))
    meta, tensors = read(path)
    assert meta == {} and np.array_equal(tensors["w"], np.ones((2, 3)))


def _checkpoint(tmp_path) -> Path:
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from lstmkit.tasks import checkpoint

    model = torch.nn.LSTM(3, 4)
    opt = torch.optim.Adam(model.parameters())
    model(torch.zeros(2, 1, 3))[0].sum().backward()
    opt.step()
    path = tmp_path / "last.safetensors"
    checkpoint.save(str(path), task="forecast", config={"hidden_size": 4}, model=model, optimizer=opt,
                    trainer={"epoch": 1}, loader_generator=torch.Generator())
    return path


def test_checkpoint_hashes_cover_tensors_and_trainer_state(tmp_path):
    from lstmkit.tasks import checkpoint

    path = _checkpoint(tmp_path)
    meta, tensors = read(path)
    assert meta["content_sha256"] == content_hash(tensors) and meta["metadata_sha256"] == metadata_hash(meta)
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~files._umask())  # not mkstemp's 0600
    good = path.read_bytes()
    flipped = bytearray(good)
    flipped[-40] ^= 0x10  # one bit of the last tensor
    path.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="content hash mismatch: the tensors are damaged"):
        checkpoint.load(str(path))
    path.write_bytes(good.replace(b'\\"epoch\\": 1', b'\\"epoch\\": 7'))  # the trainer's counter, same length
    assert path.read_bytes() != good
    with pytest.raises(ValueError, match="metadata hash mismatch"):
        checkpoint.load(str(path))
    path.write_bytes(good[:len(good) // 2])
    with pytest.raises(ValueError, match="truncated safetensors file"):
        checkpoint.load(str(path))


def test_format_1_checkpoint_needs_verify_false(tmp_path):
    from lstmkit.tasks import checkpoint

    path = _checkpoint(tmp_path)

    def old(meta):
        meta["lstmkit"] = "1"
        meta.pop("content_sha256")
        meta.pop("metadata_sha256")
    _resave(path, old)
    with pytest.raises(ValueError, match="format-1 checkpoint .* has no content hash; load it with verify=False"):
        checkpoint.load(str(path))
    assert checkpoint.load(str(path), verify=False)["trainer"] == {"epoch": 1}


# ---------------------------------------------------------------------------------------------- ONNX, input

def test_from_onnx_bytes_never_reads_external_data_from_the_current_folder(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    data, name = hostile.onnx_external_bytes(tmp_path)
    monkeypatch.chdir(tmp_path)  # the external file sits in the current folder
    with pytest.raises(ValueError, match="external data; lstmkit reads it only when the model is loaded from a "
                                         "path"):
        lstmkit.from_onnx(data)
    model = tmp_path / "m.onnx"
    model.write_bytes(data)
    assert lstmkit.io.read(model).state_dict().keys() == lstmkit.LSTM(3, 4).state_dict().keys()  # beside the file


def test_big_endian_input_is_copied_not_refused():
    layer = lstmkit.LSTM(3, 4, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    out, (h, c) = layer(x.astype(">f4"))
    ref, (h_ref, c_ref) = layer(x)
    assert out.dtype == np.float32 and np.array_equal(out, ref) and np.array_equal(h, h_ref)  # same bits: a copy


# -------------------------------------------------------------------------------------------------- writing

@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_take_the_umask_mode(umask, tmp_path):
    old = os.umask(umask)
    try:
        path = lstmkit.save(lstmkit.LSTM(3, 4), tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_overwriting_a_symlink_writes_through_to_its_target(tmp_path):
    """Documented choice (lstmkit.io.files): like open(path, "w"), the link stays and its target changes; the
    temp file sits beside the target, so a target on another filesystem (/dev/shm) needs no cross-device rename."""
    other = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else tmp_path / "elsewhere"
    target = other / f"lstmkit-target-{os.getpid()}.safetensors"
    target.write_bytes(b"old")
    link = tmp_path / "m.safetensors"
    link.symlink_to(target)
    try:
        lstmkit.save(lstmkit.LSTM(3, 4, seed=1), link, overwrite=True)
        assert link.is_symlink() and os.readlink(link) == str(target)
        assert lstmkit.load(target).state_dict()["weight_ih_l0"].shape == (16, 3)
        assert not [p for p in other.iterdir() if p.name.startswith(f".{target.name}.")]
    finally:
        target.unlink()


def test_stale_temp_files_of_a_killed_writer_are_removed_by_the_next_save(tmp_path):
    path = tmp_path / "m.safetensors"
    stale = tmp_path / ".m.safetensors.k1ll3d9x.tmp.safetensors"  # the pattern atomic_write's mkstemp makes
    stale.write_bytes(b"x" * 1000)
    os.utime(stale, (1, 1))  # written long before this process started
    live = tmp_path / ".m.safetensors.w0rk1ng_.tmp.safetensors"  # another writer, still at it
    live.write_bytes(b"y")
    other = tmp_path / ".m.safetensors.notours.tmp.safetensors"  # not our pattern (7 characters)
    other.write_bytes(b"z")
    os.utime(other, (1, 1))
    lstmkit.save(lstmkit.LSTM(3, 4), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, live.name, other.name])


def test_write_into_a_path_under_a_file_names_the_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match="afile is a file, not a folder"):
        lstmkit.save(lstmkit.LSTM(3, 4), tmp_path / "afile" / "m.safetensors")
