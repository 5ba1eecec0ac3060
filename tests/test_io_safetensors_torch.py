"""safetensors and torch legs: lossless round trips, inferred architectures, refused bad files, torch-free load."""
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

import lstmkit
from lstmkit import io
from lstmkit.io.safetensors import metadata_hash

CONFIGS = [
    dict(mode="LSTM", num_layers=1, bidirectional=False, proj_size=0, bias=True),
    dict(mode="LSTM", num_layers=2, bidirectional=True, proj_size=3, bias=True),
    dict(mode="LSTM", num_layers=2, bidirectional=False, proj_size=0, bias=False),
    dict(mode="GRU", num_layers=2, bidirectional=True, proj_size=0, bias=True),
    dict(mode="GRU", num_layers=1, bidirectional=False, proj_size=0, bias=False),
]


def torch_module(mode, num_layers, bidirectional, proj_size, bias, batch_first=False, seed=0):
    torch.manual_seed(seed)
    extra = {"proj_size": proj_size} if mode == "LSTM" else {}
    return getattr(torch.nn, mode)(4, 6, num_layers, bias, batch_first, 0.0, bidirectional, **extra).eval()


def run_torch(module, x):
    with torch.no_grad():
        out, state = module(torch.from_numpy(x))
    return out.numpy(), state


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        np.testing.assert_array_equal(np.asarray(sa[k]), np.asarray(sb[k]), err_msg=k)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("batch_first", [False, True])
def test_torch_to_lstmkit_and_back(cfg, batch_first):
    module = torch_module(**cfg, batch_first=batch_first)
    layer = lstmkit.from_torch(module)
    assert layer.config.batch_first == batch_first
    x = np.random.default_rng(1).standard_normal((3, 5, 4) if batch_first else (5, 3, 4)).astype(np.float32)
    expected, _ = run_torch(module, x)
    got, _ = layer(x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    back = lstmkit.to_torch(layer)
    assert type(back) is type(module)
    assert_same_weights(back, module)


def test_to_torch_builds_lstmkit_torch_modules():
    layer = lstmkit.LSTM(4, 6, 2, proj_size=2, seed=0)
    module = io.to_torch(layer, impl="lstmkit")
    assert type(module).__module__.startswith("lstmkit.torch")
    assert_same_weights(module, layer)
    assert_same_weights(io.from_torch(module), layer)


@pytest.mark.parametrize("cls", ["LSTMCell", "GRUCell"])
def test_cells_round_trip_through_torch_and_safetensors(cls, tmp_path):
    torch.manual_seed(0)
    module = getattr(torch.nn, cls)(4, 6)
    cell = io.from_torch(module)
    assert type(cell).__name__ == cls
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x))
    expected = (expected[0] if cls == "LSTMCell" else expected).numpy()
    got = cell(x)
    np.testing.assert_allclose(got[0] if cls == "LSTMCell" else got, expected, rtol=1e-5, atol=1e-6)
    lstmkit.save(cell, tmp_path / "c.safetensors")
    assert_same_weights(lstmkit.load(tmp_path / "c.safetensors"), module)
    torch.save(module.state_dict(), tmp_path / "c.pt")
    assert type(io.read(tmp_path / "c.pt")).__name__ == cls


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_pt_state_dict_architecture_is_inferred(cfg, tmp_path):
    module = torch_module(**cfg)
    torch.save(module.state_dict(), tmp_path / "m.pt")
    layer = io.read(tmp_path / "m.pt")
    c = layer.config
    assert (c.mode, c.input_size, c.hidden_size, c.num_layers, c.bidirectional, c.proj_size, c.bias) == (
        cfg["mode"], 4, 6, cfg["num_layers"], cfg["bidirectional"], cfg["proj_size"], cfg["bias"])
    assert_same_weights(layer, module)


def test_pt_prefix_mode_and_batch_first_options(tmp_path):
    seq = torch.nn.Sequential()
    seq.add_module("rnn", torch.nn.GRU(4, 6))
    seq.add_module("head", torch.nn.Linear(6, 1))
    torch.save(seq.state_dict(), tmp_path / "m.pth")
    layer = io.torch.load(tmp_path / "m.pth", batch_first=True)
    assert layer.config.mode == "GRU" and layer.config.batch_first
    with pytest.raises(ValueError, match="mode: LSTM was given"):
        io.torch.load(tmp_path / "m.pth", mode="lstm")
    two = {**{"a." + k: v for k, v in torch.nn.GRU(4, 6).state_dict().items()},
           **{"b." + k: v for k, v in torch.nn.LSTM(4, 6).state_dict().items()}}
    with pytest.raises(ValueError, match="several RNNs"):
        io.torch.from_state_dict(two)
    assert io.torch.from_state_dict(two, prefix="b.").config.mode == "LSTM"


@pytest.mark.parametrize("options", [dict(peephole=True), dict(layer_norm=True), dict(clip=0.5),
                                     dict(zoneout=(0.3, 0.2)), dict(input_forget=True)], ids=str)
def test_pt_refuses_what_a_state_dict_cannot_hold(options, tmp_path):
    """A .pt state_dict records the plain architecture in its shapes only: a variant model read back would be the
    plain cell (a silent wrong output), so writing one is refused by name and nothing is written; a state_dict
    holding variant tensors (lstmkit.torch's, saved by torch.save) is refused when read. safetensors keeps them."""
    layer = lstmkit.LSTM(3, 5, seed=0, **options)
    with pytest.raises(ValueError, match=f"state_dict.*{next(iter(options))}.*safetensors"):
        io.write(layer, tmp_path / "m.pt")
    assert not list(tmp_path.iterdir())
    module = io.to_torch(layer, impl="lstmkit")
    if any(k.startswith(("peephole", "ln_")) for k in module.state_dict()):
        torch.save(module.state_dict(), tmp_path / "v.pt")
        with pytest.raises(ValueError, match="variant options.*safetensors"):
            io.read(tmp_path / "v.pt")
    io.write(layer, tmp_path / "m.safetensors")
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(io.read(tmp_path / "m.safetensors").eval()(x)[0], layer.eval()(x)[0])


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_safetensors_round_trip_is_bit_exact_and_readable_by_safetensors(cfg, tmp_path):
    from safetensors.numpy import load_file, save_file

    layer = lstmkit.from_torch(torch_module(**cfg, batch_first=True))
    path = lstmkit.save(layer, tmp_path / "m.safetensors")
    back = lstmkit.load(path)
    assert back.config == layer.config
    assert_same_weights(back, layer)
    tensors = load_file(str(path))  # the reference reader agrees
    assert_same_weights(type("M", (), {"state_dict": lambda self: tensors})(), layer)
    module = torch_module(**cfg)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
    # and a file written by the safetensors package with our metadata reads back
    meta = io.safetensors.read(path)[0]
    save_file(layer.state_dict(), str(tmp_path / "other.safetensors"), metadata=meta)
    assert_same_weights(lstmkit.load(tmp_path / "other.safetensors"), layer)


def test_save_never_overwrites_unless_asked(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"precious")
    layer = lstmkit.GRU(2, 3, seed=0)
    with pytest.raises(FileExistsError, match="overwrite"):
        lstmkit.save(layer, path)
    assert path.read_bytes() == b"precious"
    lstmkit.save(layer, path, overwrite=True)
    assert lstmkit.load(path).config == layer.config
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind


def test_saving_a_torch_module_directly(tmp_path):
    module = torch.nn.LSTM(4, 6, 2)
    lstmkit.save(module, tmp_path / "m.safetensors")
    assert_same_weights(lstmkit.load(tmp_path / "m.safetensors"), module)


@pytest.mark.parametrize("ext", [".onnx", ".keras", ".pt", ".pth"])
def test_save_and_load_refuse_another_formats_extension(ext, tmp_path):
    """lstmkit.save/load handle safetensors: a path named for another format would get safetensors bytes under
    that name (or be misread), so both refuse it and name lstmkit.io's call, which goes by the extension."""
    layer = lstmkit.GRU(2, 3, seed=0)
    path = tmp_path / f"m{ext}"
    with pytest.raises(ValueError, match=r"lstmkit\.save handles safetensors only; use lstmkit\.io\.write"):
        lstmkit.save(layer, path)
    assert not path.exists()
    if ext == ".onnx":  # a real file of that format, as lstmkit.io writes it
        io.write(layer, path)
        with pytest.raises(ValueError, match=r"lstmkit\.load handles safetensors only; use lstmkit\.io\.read"):
            lstmkit.load(path)
        np.testing.assert_array_equal(io.read(path).params["weight_hh_l0"], layer.params["weight_hh_l0"])


def test_safetensors_keep_the_mode(tmp_path):
    """Saved in eval mode, a model with dropout between layers loads ready for inference, as torch.save(module)
    keeps a module's mode; saved while training, it loads training."""
    layer = lstmkit.LSTM(3, 4, 2, dropout=0.5, seed=0).eval()
    x = np.ones((5, 2, 3), np.float32)
    loaded = lstmkit.load(lstmkit.save(layer, tmp_path / "eval.safetensors"))
    assert not loaded.training
    np.testing.assert_array_equal(loaded(x)[0], layer(x)[0])
    assert lstmkit.load(lstmkit.save(layer.train(), tmp_path / "train.safetensors")).training


class _ModelNamedLikeAnLSTM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(3, 4)


def test_from_torch_goes_by_class_not_by_name():
    with pytest.raises(TypeError, match="got _ModelNamedLikeAnLSTM; for a model holding one, pass that submodule"):
        io.from_torch(_ModelNamedLikeAnLSTM())
    with pytest.raises(TypeError, match="got RNN"):
        io.from_torch(torch.nn.RNN(3, 4))
    assert io.from_torch(_ModelNamedLikeAnLSTM().rnn).config.mode == "LSTM"


def test_from_torch_refuses_a_quantized_module_by_name():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        quantized = torch.ao.quantization.quantize_dynamic(_ModelNamedLikeAnLSTM(), {torch.nn.LSTM}, torch.qint8)
    with pytest.raises(TypeError, match="is a quantized torch module"):
        io.from_torch(quantized.rnn)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_from_torch_reads_half_precision_weights_as_float32(dtype):
    """NumPy has no bfloat16: its weights become float32, which holds them exactly, as float16's do."""
    module = torch.nn.LSTM(3, 4, 2).to(dtype)
    layer = io.from_torch(module)
    assert layer.dtype == np.float32
    for name, value in module.state_dict().items():
        np.testing.assert_array_equal(layer.params[name], value.float().numpy())
    assert lstmkit.quantize(module, "int8").config == layer.config  # quantize reads it through the same call


def test_from_torch_keeps_the_modules_mode():
    """An eval-mode torch module gives an eval-mode layer, so its inter-layer dropout is off as torch's is; a
    training-mode one a training-mode layer (the torch default both sides)."""
    module = torch.nn.GRU(3, 5, 2, dropout=0.5).eval()
    layer = io.from_torch(module)
    assert not layer.training
    x = torch.randn(6, 2, 3)
    np.testing.assert_allclose(layer(x.numpy())[0], module(x)[0].detach().numpy(), atol=1e-6)
    assert io.from_torch(module.train()).training
    assert not io.from_torch(torch.nn.LSTMCell(3, 4).eval()).training


@pytest.mark.parametrize("options", [
    dict(zoneout=(0.5, 0.05), recurrent_dropout=0.25),  # no tensors: the weights alone would say "plain cell"
    dict(layer_norm=True, clip=0.5),  # gains the weights' names used to be refused for
    dict(mode="GRU", zoneout=(0.0, 0.3), linear_before_reset=False),
])
def test_a_task_checkpoint_gives_its_layer_with_every_option(options, tmp_path):
    """lstmkit.tasks checkpoints record their lstmkit.torch layers' configs (``rnn_configs``), and lstmkit.load
    builds the recurrent layer from it: the NumPy layer computes what the module computes in eval mode. Read off
    the weights alone, zoneout's layer would be the plain cell, off by ~0.1 here (zoneout mixes by its expectation
    in evaluation): a silent wrong result."""
    import lstmkit.torch as lt
    from lstmkit.tasks import checkpoint

    mode = options.pop("mode", "LSTM")
    torch.manual_seed(0)
    model = torch.nn.Module()
    model.embed = torch.nn.Embedding(10, 5)
    model.rnn = getattr(lt, mode)(5, 7, batch_first=True, **options)
    with torch.no_grad():  # gains and biases away from their 1/0 start, so a dropped option shows
        for p in model.rnn.parameters():
            p.add_(0.3 * torch.randn_like(p))
    path = tmp_path / "task.safetensors"
    checkpoint.save(str(path), task="generate", config={}, model=model)
    layer = lstmkit.load(path)
    assert layer.config == type(layer.config)(**{**model.rnn.config.to_dict(), "batch_first": False})
    x = torch.randn(6, 2, 5)
    with torch.no_grad():
        want, _ = model.rnn.eval()(x.transpose(0, 1))
    got, _ = layer.eval()(x.numpy())
    np.testing.assert_allclose(got, want.transpose(0, 1).numpy(), rtol=1e-5, atol=1e-6)


def test_a_task_checkpoint_holding_a_cell_still_gives_the_cell(tmp_path):
    """A cell's weights (no _l0 suffix) say all a cell has: read off them as before the recorded configs."""
    import lstmkit.torch as lt
    from lstmkit.tasks import checkpoint

    model = torch.nn.Module()
    model.cell = lt.GRUCell(3, 5)
    checkpoint.save(str(tmp_path / "c.safetensors"), task="generate", config={}, model=model)
    cell = lstmkit.load(tmp_path / "c.safetensors")
    assert isinstance(cell, lstmkit.GRUCell) and cell.config.hidden_size == 5
    x, h = torch.randn(2, 3), torch.randn(2, 5)
    with torch.no_grad():
        want = model.cell(x, h)
    np.testing.assert_allclose(cell(x.numpy(), h.numpy()), want.numpy(), rtol=1e-5, atol=1e-6)


def _rewrite_header(path, edit):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    edit(header)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n:])


def test_bad_safetensors_files_are_refused_clearly(tmp_path):
    layer = lstmkit.LSTM(3, 4, 2, seed=0)
    good = lstmkit.save(layer, tmp_path / "good.safetensors")
    data = good.read_bytes()

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[:-10])
    with pytest.raises(ValueError, match="truncated"):
        lstmkit.load(truncated)
    truncated.write_bytes(data[:5])
    with pytest.raises(ValueError, match="truncated"):
        lstmkit.load(truncated)

    no_meta = tmp_path / "no_meta.safetensors"
    no_meta.write_bytes(data)
    _rewrite_header(no_meta, lambda h: h.pop("__metadata__"))
    with pytest.raises(ValueError, match="no lstmkit metadata"):
        lstmkit.load(no_meta)

    wrong_shape = tmp_path / "wrong_shape.safetensors"
    wrong_shape.write_bytes(data)

    def lie(h):  # the metadata now claims hidden_size 5 while the tensors are for 4
        config = json.loads(h["__metadata__"]["config"])
        h["__metadata__"]["config"] = json.dumps({**config, "hidden_size": 5})
    _rewrite_header(wrong_shape, lie)
    with pytest.raises(ValueError, match="metadata hash mismatch: the metadata was changed"):
        lstmkit.load(wrong_shape)

    def rehash(h):  # the same lie with its hash recomputed (a hash is no signature): the shapes still say no
        h["__metadata__"]["metadata_sha256"] = metadata_hash(h["__metadata__"])
    _rewrite_header(wrong_shape, rehash)
    with pytest.raises(ValueError, match="disagree with the metadata"):
        lstmkit.load(wrong_shape)

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(ValueError, match="not a safetensors file"):
        lstmkit.load(garbage)


def test_bad_pt_files_are_refused_clearly(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable torch weights file"):
        io.read(bad)
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "fc.pt")
    with pytest.raises(ValueError, match="no LSTM/GRU weights"):
        io.read(tmp_path / "fc.pt")
    state = torch.nn.LSTM(3, 4).state_dict()
    state["weight_hh_l0"] = torch.zeros(16, 5)
    torch.save(state, tmp_path / "shapes.pt")
    with pytest.raises(ValueError, match="weight_hh_l0"):
        io.read(tmp_path / "shapes.pt")


TORCH_FREE = """
import sys
sys.modules["torch"] = None  # any 'import torch' now raises ImportError
import numpy as np
import lstmkit
layer = lstmkit.load(sys.argv[1])
assert not {"onnx", "onnxruntime", "keras", "safetensors"} & set(sys.modules), "lstmkit.load imported a framework"
out, _ = layer(np.ones((5, 2, 3), np.float32))
np.save(sys.argv[2], out)
print(layer.backend)
"""


def test_saved_model_deploys_without_torch(tmp_path):
    module = torch.nn.LSTM(3, 4, 2, bidirectional=True)
    lstmkit.save(module, tmp_path / "m.safetensors")
    run = subprocess.run([sys.executable, "-c", TORCH_FREE, str(tmp_path / "m.safetensors"), str(tmp_path / "o.npy")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    with torch.no_grad():
        expected = module(torch.ones(5, 2, 3))[0].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), expected, rtol=1e-5, atol=1e-6)
