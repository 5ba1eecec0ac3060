"""Forward-mode AD (torch.autograd.forward_ad): lstmkit's operators have no forward derivative, so inside a
dual level the modules compute in torch ops (lstmkit.torch.devices.forward_ad), and a dual input's tangent comes
out as the directional derivative. Before, the inference path dropped it silently (tangent None); torch.nn.LSTM
itself refuses on the CPU (mkldnn_rnn_layer has no forward derivative)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.autograd.forward_ad as fwAD  # noqa: E402

import lstmkit.torch as lt  # noqa: E402

D = torch.float64
CASES = {
    "LSTM": lambda: (lt.LSTM(3, 4, num_layers=2, dtype=D), (5, 2, 3)),
    "GRU bidirectional": lambda: (lt.GRU(3, 4, bidirectional=True, dtype=D), (5, 2, 3)),
    "LSTM peephole layer_norm proj": lambda: (lt.LSTM(3, 4, peephole=True, layer_norm=True, proj_size=2, dtype=D),
                                              (5, 2, 3)),
    "LSTMCell": lambda: (lt.LSTMCell(3, 4, dtype=D), (2, 3)),
    "GRUCell": lambda: (lt.GRUCell(3, 4, dtype=D), (2, 3)),
}


def _first(out):
    while isinstance(out, tuple):
        out = out[0]
    return out


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("grad", [False, True])
def test_tangent_is_the_directional_derivative(name, grad):
    torch.manual_seed(0)
    module, shape = CASES[name]()
    module.eval()
    x, t = torch.randn(shape, dtype=D), torch.randn(shape, dtype=D)
    with torch.set_grad_enabled(grad), fwAD.dual_level():
        out = _first(module(fwAD.make_dual(x, t)))
        primal, tangent = fwAD.unpack_dual(out)
    assert tangent is not None
    eps = 1e-6
    with torch.no_grad():
        want = (_first(module(x + eps * t)) - _first(module(x - eps * t))) / (2 * eps)
        torch.testing.assert_close(primal, _first(module(x)), rtol=1e-12, atol=1e-12)
    # central differences in float64: error ~eps² · f''' + 1e-16 / eps ~ 1e-10
    torch.testing.assert_close(tangent, want, rtol=1e-7, atol=1e-8)


def test_outside_a_dual_level_the_operators_run_again():
    module = lt.LSTMCell(3, 4)
    from lstmkit.torch import devices, ops

    with fwAD.dual_level():
        assert devices.forward_ad() and not ops._plain_eager([torch.zeros(1)])
    assert not devices.forward_ad() and ops._plain_eager([torch.zeros(1)])
    module(torch.randn(2, 3))
