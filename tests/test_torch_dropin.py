"""lstmkit.torch behaves like torch.nn where a torch user's program would notice (issue 17, docs/torch_dropin.md).

- Exception types: every bad constructor argument or forward input is given to torch.nn and to lstmkit.torch
  side by side; lstmkit's error must be an instance of the type torch raised (lstmkit.errors' classes are two
  types at once, so lstmkit's own ValueError/TypeError contract holds too) and still name the argument.
- Zero sizes: the cells take hidden_size 0 and input_size 0 as torch.nn's do, with equal outputs and gradients;
  LSTM/GRU refuse them with ValueError as torch.nn does.
- torch.save(model) / torch.load(path) with the default weights_only=True, in fresh processes.

Tolerance (float64, both sides compute the same equations with another summation order): with scale =
max|torch's value|, |ours − torch| <= 1e-10·scale. The float64 rounding of a gate sum of <= 20 terms over a
step or two is below 1e-14·scale; 1e-10 leaves room for the order of summation and stays far below any real
difference (a wrong gate or weight moves values by > 1e-3·scale).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

import lstmkit  # noqa: E402
import lstmkit.torch as lt  # noqa: E402
from lstmkit.errors import ArgumentTypeError, DtypeMismatchError, ShapeError, StateFormError  # noqa: E402

SRC = Path(lstmkit.__file__).resolve().parent.parent


def _r(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


# (name, call(M) with M = torch.nn or lstmkit.torch, words lstmkit's message must contain)
BAD = [
    ("LSTM bias='True'", lambda M: M.LSTM(3, 5, bias="True"), "bias"),
    ("LSTM bias=1", lambda M: M.LSTM(3, 5, bias=1), "bias"),
    ("GRU bias=0", lambda M: M.GRU(3, 5, bias=0), "bias"),
    ("LSTM batch_first=1", lambda M: M.LSTM(3, 5, batch_first=1), "batch_first"),
    ("GRU batch_first='False'", lambda M: M.GRU(3, 5, batch_first="False"), "batch_first"),
    ("LSTM input_size=3.0", lambda M: M.LSTM(3.0, 5), "input_size"),
    ("GRU input_size='10'", lambda M: M.GRU("10", 5), "input_size"),
    ("LSTM hidden_size=5.0", lambda M: M.LSTM(3, 5.0), "hidden_size"),
    ("LSTM num_layers=2.0", lambda M: M.LSTM(3, 5, 2.0), "num_layers"),
    ("LSTM proj_size=2.0", lambda M: M.LSTM(3, 5, proj_size=2.0), "proj_size"),
    ("LSTM input_size=0", lambda M: M.LSTM(0, 5), "input_size"),
    ("GRU hidden_size=0", lambda M: M.GRU(3, 0), "hidden_size"),
    ("LSTM num_layers=0", lambda M: M.LSTM(3, 5, 0), "num_layers"),
    ("LSTM proj_size=-1", lambda M: M.LSTM(3, 5, proj_size=-1), "proj_size"),
    ("LSTM proj_size=hidden_size", lambda M: M.LSTM(3, 5, proj_size=5), "proj_size"),
    ("LSTM dropout=1.5", lambda M: M.LSTM(3, 5, dropout=1.5), "dropout"),
    ("GRU proj_size=10", lambda M: M.GRU(30, 20, 2, proj_size=10), "proj_size"),
    ("GRU proj_size=0 as a keyword", lambda M: M.GRU(30, 20, 2, proj_size=0), "proj_size"),
    ("GRUCell hidden_size=-1", lambda M: M.GRUCell(10, -1), "hidden_size"),
    ("LSTMCell input_size=10.0", lambda M: M.LSTMCell(10.0, 4), "input_size"),
    ("LSTM input of rank 4", lambda M: M.LSTM(3, 5)(_r(1, 2, 3, 3)), "input"),
    ("GRU input of rank 1", lambda M: M.GRU(3, 5)(_r(3)), "input"),
    ("LSTM 7 features for input_size=3", lambda M: M.LSTM(3, 5)(_r(2, 4, 7)), "input"),
    ("GRU packed data with 7 features", lambda M: M.GRU(3, 5)(pack_padded_sequence(_r(4, 2, 7), [4, 2])), "input"),
    ("LSTM float64 input, float32 weights", lambda M: M.LSTM(3, 5)(_r(2, 4, 3, dtype=torch.float64)), "input"),
    ("LSTM float64 h0, float32 weights", lambda M: M.LSTM(3, 5)(
        _r(2, 4, 3), (_r(1, 4, 5, dtype=torch.float64), _r(1, 4, 5))), "h0"),
    ("LSTM h0 of another batch", lambda M: M.LSTM(3, 5)(_r(2, 4, 3), (_r(1, 7, 5), _r(1, 4, 5))), "h0"),
    ("LSTM c0 of another batch", lambda M: M.LSTM(3, 5)(_r(2, 4, 3), (_r(1, 4, 5), _r(1, 7, 5))), "c0"),
    ("LSTM proj h0 of hidden_size", lambda M: M.LSTM(3, 5, proj_size=2)(_r(2, 4, 3), (_r(1, 4, 5), _r(1, 4, 5))),
     "h0"),
    ("LSTM 2-D hx for 3-D input", lambda M: M.LSTM(3, 5)(_r(2, 4, 3), (_r(4, 5), _r(4, 5))), "h0"),
    ("LSTM 3-D hx for unbatched input", lambda M: M.LSTM(3, 5)(_r(2, 3), (_r(1, 1, 5), _r(1, 1, 5))), "h0"),
    ("GRU h0 of another batch", lambda M: M.GRU(3, 5)(_r(2, 4, 3), _r(1, 7, 5)), "h0"),
    ("GRU h0 of another size", lambda M: M.GRU(3, 5)(_r(2, 4, 3), _r(1, 4, 6)), "h0"),
    ("GRU h0 for 2 layers, 1 layer", lambda M: M.GRU(3, 5)(_r(2, 4, 3), _r(2, 4, 5)), "h0"),
    ("GRU packed, h0 of another batch", lambda M: M.GRU(3, 5)(pack_padded_sequence(_r(4, 2, 3), [4, 2]),
                                                              _r(1, 3, 5)), "h0"),
    ("GRUCell 11 features for input_size=10", lambda M: M.GRUCell(10, 20)(_r(3, 11), _r(3, 20)), "input"),
    ("GRUCell h of size 21", lambda M: M.GRUCell(10, 20)(_r(3, 10), _r(3, 21)), "hx"),
    ("GRUCell h of another batch", lambda M: M.GRUCell(10, 20)(_r(3, 10), _r(5, 20)), "hx"),
    ("GRUCell h of rank 4", lambda M: M.GRUCell(10, 20)(_r(3, 10), _r(3, 1, 1, 20)), "hx"),
    ("GRUCell unbatched input, batched h", lambda M: M.GRUCell(10, 20)(_r(10), _r(3, 20)), "hx"),
    ("GRUCell input of rank 3", lambda M: M.GRUCell(10, 20)(_r(1, 3, 10)), "input"),
    ("GRUCell float64 input", lambda M: M.GRUCell(10, 20)(_r(3, 10, dtype=torch.float64)), "input"),
    ("LSTMCell float64 h", lambda M: M.LSTMCell(10, 20)(_r(3, 10), (_r(3, 20, dtype=torch.float64), _r(3, 20))),
     "hx"),
    ("LSTMCell 11 features", lambda M: M.LSTMCell(10, 20)(_r(3, 11), (_r(3, 20), _r(3, 20))), "input"),
    ("LSTMCell h of size 21", lambda M: M.LSTMCell(10, 20)(_r(3, 10), (_r(3, 21), _r(3, 20))), "hx"),
    ("LSTMCell c of size 21", lambda M: M.LSTMCell(10, 20)(_r(3, 10), (_r(3, 20), _r(3, 21))), "hx"),
    ("LSTMCell hx of another batch", lambda M: M.LSTMCell(10, 20)(_r(3, 10), (_r(5, 20), _r(5, 20))), "hx"),
    ("LSTMCell hx of rank 4", lambda M: M.LSTMCell(10, 20)(_r(3, 10), (_r(3, 1, 1, 20), _r(3, 1, 1, 20))), "hx"),
    ("LSTM three states", lambda M: M.LSTM(3, 5)(_r(2, 4, 3), (_r(1, 4, 5),) * 3), "hx"),
    ("LSTMCell unbatched input, one tensor as hx", lambda M: M.LSTMCell(3, 4)(_r(3), _r(4)), "hx"),
]

# Where torch fails by accident (an AttributeError from a NumPy array), lstmkit raises TypeError naming the argument.
ACCIDENTS = [
    ("LSTM NumPy input, batch_first", lambda: lt.LSTM(3, 4, batch_first=True)(np.zeros((2, 5, 3), np.float32)),
     "input"),
    ("GRU NumPy input", lambda: lt.GRU(3, 4)(np.zeros((5, 2, 3), np.float32)), "input"),
    ("LSTM NumPy c0", lambda: lt.LSTM(3, 4)(_r(5, 2, 3), (_r(1, 2, 4), np.zeros((1, 2, 4), np.float32))), "hx"),
    ("GRUCell NumPy h", lambda: lt.GRUCell(3, 4)(_r(2, 3), np.zeros((2, 4), np.float32)), "hx"),
    ("LSTMCell NumPy input", lambda: lt.LSTMCell(3, 4)(np.zeros((2, 3), np.float32)), "input"),
]


def _raised(call):
    try:
        call()
    except Exception as e:  # noqa: BLE001 - the type is what is compared
        return e
    return None


@pytest.mark.parametrize("name, call, words", BAD, ids=[b[0] for b in BAD])
def test_error_is_an_instance_of_what_torch_raises(name, call, words):
    theirs = _raised(lambda: call(nn))
    assert theirs is not None, f"{name}: torch.nn accepted it; the case is wrong"
    ours = _raised(lambda: call(lt))
    assert ours is not None, f"{name}: lstmkit.torch accepted what torch.nn refuses ({type(theirs).__name__})"
    assert isinstance(ours, type(theirs)), (f"{name}: torch raises {type(theirs).__name__}, lstmkit raises "
                                            f"{type(ours).__name__}: {ours}")
    assert words in str(ours), f"{name}: {ours!r} does not name {words!r}"


@pytest.mark.parametrize("name, call, words", ACCIDENTS, ids=[a[0] for a in ACCIDENTS])
def test_numpy_where_torch_fails_by_accident_is_a_named_type_error(name, call, words):
    with pytest.raises(TypeError, match=words):
        call()


@pytest.mark.parametrize("error, bases", [(ShapeError, (ValueError, RuntimeError)),
                                          (ArgumentTypeError, (ValueError, TypeError)),
                                          (DtypeMismatchError, (TypeError, ValueError, RuntimeError)),
                                          (StateFormError, (TypeError, ValueError, RuntimeError))])
def test_error_classes_are_the_old_type_and_torchs(error, bases):
    """``except ValueError`` (lstmkit's documented type) and ``except RuntimeError`` (torch.nn's) both catch them."""
    assert all(issubclass(error, base) for base in bases)
    with pytest.raises(bases[0]):
        raise error("x: expected 1, got 2")


def test_torch_nn_arguments_that_torch_accepts_are_accepted():
    """Where torch.nn takes a value, so does the drop-in: bidirectional=1 and a cell's truthy non-bool bias."""
    assert lt.LSTM(3, 4, bidirectional=1).bidirectional is True
    assert nn.GRUCell(3, 4, bias="relu").bias_ih is not None  # torch's cells test `if bias:`
    assert lt.GRUCell(3, 4, bias="relu").bias_ih is not None


def test_numpy_layers_refuse_non_bool_flags_too():
    """The shared RNNConfig refuses bias="False" for lstmkit.LSTM as well: its truthiness would build biases."""
    with pytest.raises(TypeError, match="bias"):
        lstmkit.LSTM(3, 4, bias="False")
    with pytest.raises(ValueError, match="batch_first"):  # the old contract still holds
        lstmkit.GRU(3, 4, batch_first=1)
    assert lstmkit.LSTM(3, 4, bias=np.False_).config.bias is False  # numpy bools are bools


@pytest.mark.parametrize("cls", ["GRUCell", "LSTMCell"])
@pytest.mark.parametrize("input_size, hidden_size, batch", [(10, 0, 3), (0, 4, 3), (0, 0, 2), (10, 0, 0), (0, 4, 0)])
def test_cells_take_zero_sizes_like_torch(cls, input_size, hidden_size, batch):
    torch.manual_seed(0)
    theirs = getattr(nn, cls)(input_size, hidden_size, dtype=torch.float64)
    ours = getattr(lt, cls)(input_size, hidden_size, dtype=torch.float64)
    ours.load_state_dict(theirs.state_dict())
    x = _r(batch, input_size, dtype=torch.float64).requires_grad_()
    h = _r(batch, hidden_size, dtype=torch.float64).requires_grad_()
    hx = (h, h.detach() * 2) if cls == "LSTMCell" else h
    results = []
    for m in (theirs, ours):
        out = m(x, hx)
        out = out if isinstance(out, tuple) else (out,)
        loss = sum((o * o).sum() for o in out)
        grads = torch.autograd.grad(loss, [x, h, *m.parameters()], allow_unused=True)
        results.append((out, grads))
    for a, b in zip(*[list(r[0]) + list(r[1]) for r in results]):
        assert b is not None and a.shape == b.shape
        scale = max(a.abs().max().item(), 1e-30) if a.numel() else 1.0
        assert torch.allclose(a, b, rtol=0, atol=1e-10 * scale)


def test_sequence_modules_refuse_zero_hidden_size_like_torch():
    """torch.nn.LSTM/GRU refuse hidden_size=0 with ValueError; lstmkit.torch does too, naming it."""
    for M in (nn, lt):
        for cls in (M.LSTM, M.GRU):
            with pytest.raises(ValueError, match="hidden_size"):
                cls(3, 0)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("cls, kwargs", [("LSTM", dict(num_layers=2, bidirectional=True)),
                                         ("GRU", dict(num_layers=3, batch_first=True)),
                                         ("LSTM", dict(num_layers=3, proj_size=2))])
def test_dropout_masks_are_torchs_for_tensor_input(cls, kwargs, dtype, atol):
    """In training mode with dropout, the same seed gives torch.nn's outputs (docs/torch_dropin.md), batch
    after batch: the masks are torch.nn's draws, and each batch leaves the RNG where torch.nn leaves it. A
    dropped value differs from a kept one by O(1), far above float32's rounding (atol relative to the scale)."""
    theirs = getattr(nn, cls)(3, 4, dropout=0.5, dtype=dtype, **kwargs)
    ours = getattr(lt, cls)(3, 4, dropout=0.5, dtype=dtype, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    x = _r(5, 2, 3, dtype=dtype)
    outputs = []
    for m in (theirs, ours):
        torch.manual_seed(7)
        outputs.append([m(x)[0] for _ in range(2)])
    scale = max(o.abs().max().item() for o in outputs[0])
    for a, b in zip(outputs[1], outputs[0]):
        assert torch.allclose(a, b, rtol=0, atol=atol * scale)
    assert not torch.allclose(outputs[0][0], outputs[0][1], rtol=0, atol=atol * scale)  # the batches differ
    torch.manual_seed(8)  # and another seed gives other masks, so the comparison above can fail
    assert not torch.allclose(ours(x)[0], outputs[0][0], rtol=0, atol=atol * scale)


# -- torch.save(model) / torch.load(path) in fresh processes ---------------------------------------------------

USER_MODEL = '''
import torch
from torch import nn
import lstmkit.torch as lt


class Tagger(nn.Module):
    """A user's model: an embedding, a bidirectional lstmkit LSTM with projection, a GRU cell, a linear head."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 6)
        self.lstm = lt.LSTM(6, 8, num_layers=2, bidirectional=True, proj_size=4, batch_first=True)
        self.cell = lt.GRUCell(8, 5)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        out, _ = self.lstm(self.embed(x))           # (B, T, 8)
        return self.head(self.cell(out[:, -1]))     # (B, 2)
'''

SAVE = '''
import sys, torch
from torch import nn
import lstmkit.torch as lt
from user_model import Tagger

torch.manual_seed(0)
x = torch.randn(4, 5, 3)
tagger = Tagger().eval()
seq = nn.Sequential(lt.GRU(3, 7, batch_first=True, layer_norm=True)).eval()
torch.save(tagger, sys.argv[1] + "/tagger.pt")
torch.save(seq, sys.argv[1] + "/seq.pt")
with torch.no_grad():
    torch.save({"x": x, "tagger": tagger(x), "seq": seq(x)[0][0]}, sys.argv[1] + "/expected.pt")
'''

LOAD = '''
import sys, torch
from torch import nn
import lstmkit.torch  # registers lstmkit's modules as safe globals
from user_model import Tagger

# what a torch.nn user allowlists for their own model too; nothing of lstmkit's
torch.serialization.add_safe_globals([Tagger, nn.Sequential, nn.Linear])
tagger = torch.load(sys.argv[1] + "/tagger.pt")        # the default: weights_only=True
seq = torch.load(sys.argv[1] + "/seq.pt")
expected = torch.load(sys.argv[1] + "/expected.pt")
with torch.no_grad():
    assert torch.equal(tagger(expected["x"]), expected["tagger"]), "tagger output differs"
    assert torch.equal(seq(expected["x"])[0][0], expected["seq"]), "sequential output differs"
print("loaded", type(tagger.lstm).__name__, tagger.lstm.config.proj_size, seq[0].config.layer_norm)
'''


def _python(code: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": f"{SRC}:{tmp}", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code, str(tmp)], capture_output=True, text=True, env=env,
                          timeout=300)


def test_torch_save_load_weights_only_in_fresh_processes(tmp_path):
    (tmp_path / "user_model.py").write_text(textwrap.dedent(USER_MODEL))
    saved = _python(SAVE, tmp_path)
    assert saved.returncode == 0, saved.stderr
    loaded = _python(LOAD, tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded LSTM 4 True" in loaded.stdout


@pytest.mark.parametrize("cls", [lt.LSTMCell, lt.GRUCell])
def test_cell_pickled_before_rnn_step_loads(cls, tmp_path):
    """A cell saved without the step config the cells now keep (older lstmkit) loads with weights_only=True and
    computes what a new cell with the same weights does, exactly."""
    cell = cls(3, 4)
    old = cls(3, 4)
    old.load_state_dict(cell.state_dict())
    del old._step_config, old._config_key  # the attributes an older cell lacked
    torch.save(old, tmp_path / "cell.pt")
    loaded = torch.load(tmp_path / "cell.pt")
    x = torch.randn(2, 3)
    got, want = loaded(x), cell(x)
    for a, b in zip(*((g,) if cls is lt.GRUCell else g for g in (got, want))):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_unpickled_config_is_validated(tmp_path):
    """RNNConfig is a safe global, so a file could carry any field values: unpickling re-runs its checks."""
    import pickle

    from lstmkit.params import RNNConfig

    config = RNNConfig("LSTM", 3, 4, proj_size=2)
    data = pickle.dumps(config, protocol=2)  # torch.save's protocol
    assert pickle.loads(data) == config
    assert data.count(b"K\x02") == 1  # BININT1 2: proj_size, the only field that is 2
    forged = data.replace(b"K\x02", b"K\x04")  # proj_size 4 = hidden_size: invalid
    with pytest.raises(ValueError, match="proj_size"):
        pickle.loads(forged)
    torch.save(config, tmp_path / "config.pt")
    (tmp_path / "forged.pt").write_bytes((tmp_path / "config.pt").read_bytes().replace(b"K\x02", b"K\x04"))
    with pytest.raises(Exception, match="proj_size"):  # torch.load wraps the unpickler's error
        torch.load(tmp_path / "forged.pt")


# ---- attributes assigned after construction, activation checkpointing, TorchScript ---------------------------

def _pair(cls="LSTM", **kw):
    torch.manual_seed(0)
    ref = getattr(nn, cls)(3, 5, **kw).double()
    ours = getattr(lt, cls)(3, 5, **kw).double()
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _close(a, b):
    for u, v in zip(torch.utils._pytree.tree_leaves(a), torch.utils._pytree.tree_leaves(b)):
        assert u.shape == v.shape and torch.allclose(u, v, rtol=0, atol=1e-10 * max(1.0, float(u.abs().max()))), \
            (u - v).abs().max()


@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
def test_batch_first_assigned_after_construction_takes_effect(cls):
    """torch.nn reads batch_first at every forward; a square (B == T) input made the old config's silent wrong
    result possible, so both layouts are checked on one, with and without h0."""
    ref, ours = _pair(cls, num_layers=2)
    x = _r(4, 4, 3, dtype=torch.float64)
    for flag in (True, False, True):
        ref.batch_first = ours.batch_first = flag
        assert ours.config.batch_first is flag
        _close(ref(x), ours(x))
        h0 = _r(2, 4, 5, dtype=torch.float64)
        hx = (h0, torch.zeros_like(h0)) if cls == "LSTM" else h0
        _close(ref(x, hx), ours(x, hx))
    assert "batch_first=True" in repr(ours)


def test_dropout_assigned_after_construction_is_validated_and_used():
    ref, ours = _pair(num_layers=2)
    ours.dropout = 0.5
    assert ours.config.dropout == 0.5 and ours.dropout == 0.5
    x = _r(6, 2, 3, dtype=torch.float64)
    torch.manual_seed(1)
    a = ours(x)[0]
    torch.manual_seed(1)
    ref.dropout = 0.5
    _close(ref(x)[0], a)
    with pytest.raises(ValueError, match="dropout"):
        ours.dropout = 1.5
    assert ours.dropout == 0.5  # refused: nothing changed


@pytest.mark.parametrize("name, value", [("hidden_size", 6), ("num_layers", 2), ("bidirectional", True),
                                         ("proj_size", 2), ("input_size", 4), ("bias", False)])
def test_shape_attributes_cannot_change_on_a_built_module(name, value):
    """They fix the parameters' shapes: an assignment is refused by name (torch.nn would run on the old
    weights); assigning the same value is allowed."""
    m = lt.LSTM(3, 5)
    setattr(m, name, getattr(m, name))
    with pytest.raises(AttributeError, match=name):
        setattr(m, name, value)
    cell = lt.GRUCell(3, 5)
    if name in ("hidden_size", "input_size", "bias"):
        with pytest.raises(AttributeError, match=name):
            setattr(cell, name, value)


@pytest.mark.parametrize("cls, shape", [("LSTM", (5, 2, 3)), ("GRU", (5, 2, 3)), ("LSTMCell", (2, 3)),
                                        ("GRUCell", (2, 3))])
@pytest.mark.parametrize("train", [True, False])
def test_activation_checkpointing_without_reentrance(cls, shape, train):
    """torch.utils.checkpoint(use_reentrant=False) unpacks each saved tensor once: the backward reads
    ctx.saved_tensors once; the gradients are torch.nn's."""
    from torch.utils.checkpoint import checkpoint

    ref, ours = _pair(cls)
    grads = []
    for m in (ref, ours):
        m.train(train)
        x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
        out = checkpoint(lambda t, m=m: torch.utils._pytree.tree_leaves(m(t))[0], x, use_reentrant=False)
        (out * torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape)).sum().backward()
        grads.append([x.grad] + [p.grad for p in m.parameters()])
    _close(grads[0], grads[1])


@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
def test_jit_trace_in_training_mode_passes_its_check_and_trains(cls):
    """torch.jit.trace checks a trace by tracing again under no_grad: both traces hold the training op. The
    traced module's gradients are torch.nn's."""
    ref, ours = _pair(cls)
    x = _r(5, 2, 3, dtype=torch.float64).requires_grad_()
    traced = torch.jit.trace(ours, (x,))
    (traced(x)[0] ** 2).sum().backward()
    mine = [x.grad.clone()] + [p.grad for p in ours.parameters()]
    x.grad = None
    (ref(x)[0] ** 2).sum().backward()
    _close([x.grad] + [p.grad for p in ref.parameters()], mine)


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "LSTMCell", "GRUCell"])
def test_jit_script_is_refused_by_name(cls):
    model = nn.Sequential(getattr(lt, cls)(3, 4))  # as a submodule too
    with pytest.raises(RuntimeError, match=f"torch.jit.script: lstmkit.torch.{cls} cannot be scripted"):
        torch.jit.script(model)


@pytest.mark.parametrize("training", [True, False])
def test_a_parametrized_weight_is_computed_once_a_forward(training):
    """A parametrization runs each time its weight is read (spectral_norm's power iteration, a counter here):
    one forward reads each weight once, in training (the native training op) and in evaluation."""
    from torch.nn.utils import parametrize

    class Counted(nn.Module):
        calls = 0

        def forward(self, w):
            Counted.calls += 1
            return w * 0.5

    m = lt.GRU(3, 4, 2).train(training)
    reference = lt.GRU(3, 4, 2).train(training)
    reference.load_state_dict(m.state_dict())
    with torch.no_grad():
        reference.weight_hh_l1.mul_(0.5)
    parametrize.register_parametrization(m, "weight_hh_l1", Counted())
    Counted.calls = 0  # registering runs it once, to check what it returns
    x = torch.randn(5, 2, 3)
    out, _ = m(x)
    assert Counted.calls == 1
    torch.testing.assert_close(out, reference(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "LSTMCell", "GRUCell"])
def test_a_parameter_edited_before_backward_is_refused_never_used(cls):
    """docs/torch_dropin.md: lstmkit's backward keeps every parameter of its call, so an in-place edit between
    forward and backward is refused by autograd's version check, for every parameter (never a gradient computed
    from the edited value); torch.nn.LSTM refuses the same edits."""
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        torch.manual_seed(0)
        module = getattr(lt, cls)(3, 4)
        x = torch.randn(2, 3) if cls.endswith("Cell") else torch.randn(5, 2, 3)
        out = module(x)
        out = out[0] if isinstance(out, tuple) else out
        with torch.no_grad():
            getattr(module, name if cls.endswith("Cell") else name + "_l0").add_(0.1)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            out.sum().backward()
    torch.manual_seed(0)
    reference = nn.LSTM(3, 4)
    out, _ = reference(torch.randn(5, 2, 3))
    with torch.no_grad():
        reference.bias_ih_l0.add_(0.1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "LSTMCell", "GRUCell"])
def test_a_negated_view_is_read_by_its_values(cls):
    """A lazily negated tensor (``torch._neg_view``: memory without the sign) is read as its values by the
    operators, forward and backward, as torch.nn reads it."""
    torch.manual_seed(0)
    module = getattr(lt, cls)(4, 6)
    base = torch.randn(3, 4) if cls.endswith("Cell") else torch.randn(5, 3, 4)
    grads = []
    for make in (torch._neg_view, torch.neg):
        x = base.clone().requires_grad_()
        out = module(make(x))
        out = out[0] if isinstance(out, tuple) else out
        out.square().sum().backward()
        grads.append((out.detach(), x.grad))
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
