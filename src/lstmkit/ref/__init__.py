"""The NumPy reference: the spec and the test oracle for every other backend.

``lstm`` and ``gru`` hold the cell equations (one step, forward and backward); ``rnn`` runs them over
time, directions and layers, with variable lengths, and back through time.
"""
from . import gru, lstm, rnn
from .rnn import backward, forward, zero_state

__all__ = ["lstm", "gru", "rnn", "forward", "backward", "zero_state"]
