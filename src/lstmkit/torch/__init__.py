"""PyTorch frontend: torch.nn-compatible LSTM, GRU, LSTMCell and GRUCell backed by lstmkit's custom operators.

Importing this package registers ``torch.ops.lstmkit.rnn``, ``rnn_train``, ``rnn_backward`` and ``rnn_step``
(``lstmkit.torch.ops``: plain and variant cells alike, the configuration an argument), and the TorchScript
ONNX exporter's translations of them (``lstmkit.torch.onnx_export``). ``lstmkit.torch.equations`` is the same
RNN in torch ops (double backward, non-CPU devices: ``lstmkit.torch.devices``). ``import lstmkit`` alone never
imports torch.
"""
from .._optional import require

require("torch", "torch")  # without torch: an ImportError that names the extra to install

import torch  # noqa: E402

from ..params import RNNConfig  # noqa: E402
from . import equations, onnx_export, ops  # noqa: E402
from .modules import GRU, LSTM, GRUCell, LSTMCell  # noqa: E402

from .. import engine as _engine  # noqa: E402

if _engine.available() and torch.get_num_threads() > 1:
    # torch's OpenMP threads run the engine's parallel work: one set of threads for the whole program instead of
    # two competing for the cores (engine.share_openmp_team; lstmkit's training calls ran at half speed beside
    # torch's spinning workers). Not where torch runs one thread: there is no team to share, and a DataLoader
    # worker (torch sets 1 thread there) forked after the parent's OpenMP ran has a team whose threads are gone,
    # on which the engine's first parallel call hung.
    _engine.share_openmp_team(True)
onnx_export.register_symbolics()  # torch.onnx.export(dynamo=False) translates the operators to LSTM/GRU nodes
# torch.load's default (weights_only=True) unpickles only allowlisted classes. A user allowlists their own model
# (and torch.nn containers such as nn.Sequential, as for any torch.nn model); the lstmkit modules inside it and
# the RNNConfig they carry (pickled as a validating constructor call) are allowlisted here, on import.
torch.serialization.add_safe_globals([LSTM, GRU, LSTMCell, GRUCell, RNNConfig])

__all__ = ["LSTM", "GRU", "LSTMCell", "GRUCell", "ops", "equations"]
