"""Which parameters get no gradient (``.grad`` None) agrees with torch.nn.LSTM: with a projection, a loss on c_n alone
over one step never reaches the last layer's weight_hr (torch computes the projection with torch ops, so autograd
finds no path), and its .grad stays None; every parameter the loss reaches gets a tensor, zero or not."""
import warnings

import pytest

torch = pytest.importorskip("torch")

import lstmkit.torch as lt  # noqa: E402

LOSSES = {
    "c_n": lambda out, h, c: c.sum(),
    "h_n": lambda out, h, c: h.sum(),
    "output": lambda out, h, c: out.sum(),
    "c_n + 0 * output": lambda out, h, c: c.sum() + 0 * out.sum(),  # reached, numerically zero: a tensor
    "c_n + h_n[0]": lambda out, h, c: c.sum() + h[0].sum(),  # h_n read (its first layer): reached
}


class _NoOpMode(torch.overrides.TorchFunctionMode):
    """A torch-function mode that changes nothing: the module's call goes through the registered operator and its
    autograd formula instead of the eager autograd.Function."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def _grads(module, loss_name, T, mode=None):
    torch.manual_seed(1)
    x = torch.randn(T, 2, 3)
    with mode or _NoMode():
        out, (h, c) = module(x)
        LOSSES[loss_name](out, h, c).backward()
    return {name: p.grad for name, p in module.named_parameters()}


class _NoMode:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("via", ["eager", "operator"])
@pytest.mark.parametrize("T", [1, 2])
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, False), (1, True)])
@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_unreached_parameters_have_no_gradient_as_in_torch(loss_name, layers, bidirectional, T, via):
    kw = dict(input_size=3, hidden_size=4, proj_size=2, num_layers=layers, bidirectional=bidirectional)
    torch.manual_seed(0)
    ref = torch.nn.LSTM(**kw)
    ours = lt.LSTM(**kw)
    ours.load_state_dict(ref.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: "LSTM with projections is not supported with oneDNN"
        want = _grads(ref, loss_name, T)
    got = _grads(ours, loss_name, T, _NoOpMode() if via == "operator" else None)
    assert [n for n, g in got.items() if g is None] == [n for n, g in want.items() if g is None]
    for name, g in want.items():
        if g is not None:
            torch.testing.assert_close(got[name], g, rtol=1e-4, atol=1e-5, msg=name)
