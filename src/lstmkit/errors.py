"""Exception classes that are two standard types at once, so lstmkit and torch.nn callers both catch them.

lstmkit has always raised ValueError for a bad shape or size and TypeError for a dtype mismatch; torch.nn
raises RuntimeError for most of the same cases (and TypeError for a constructor flag or size of the wrong
type). Each class below derives from both, so ``except ValueError`` in lstmkit code and ``except
RuntimeError`` in code written for torch.nn catch the same error, and the message still names the argument,
what was expected and what came. Plain Python, no torch import: the NumPy layers raise them too.
"""
from __future__ import annotations

__all__ = ["ShapeError", "ArgumentTypeError", "DtypeMismatchError", "StateFormError"]


class ShapeError(ValueError, RuntimeError):
    """An input or state of the wrong shape (or a size that makes a negative shape).

    ValueError, as lstmkit has always raised; RuntimeError, as torch.nn raises for a wrong hx shape, an
    input's last dimension or a cell's batch mismatch (torch raises ValueError for a wrong rank, which this
    class also is).
    """


class ArgumentTypeError(ValueError, TypeError):
    """A constructor argument of the wrong type: ``bias="True"``, ``batch_first=1``, ``input_size=3.0``.

    ValueError, as lstmkit has always raised for a bad size; TypeError, as torch.nn.LSTM/GRU raise.
    """


class DtypeMismatchError(TypeError, ValueError, RuntimeError):
    """An input or state whose dtype differs from the layer's.

    TypeError, as lstmkit has always raised; ValueError, as torch.nn.LSTM/GRU raise for the input
    ("RNN input dtype ... does not match weight dtype"); RuntimeError, as torch raises from ATen for a state
    of another dtype and for the cells.
    """


class StateFormError(TypeError, ValueError, RuntimeError):
    """An initial state of the wrong form: an LSTM's hx not a pair (h, c), a GRU's a tuple, a part not an array.

    TypeError, as lstmkit has always raised; RuntimeError, as torch.nn.LSTM raises for a tuple of three states
    ("lstm expects two hidden states"); ValueError, as torch.nn's cells raise for an unbatched input with one
    tensor as an LSTMCell's hx.
    """
