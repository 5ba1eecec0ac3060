"""Worst relative error per conversion leg, as a Markdown table: runs tests/test_io_roundtrip.py's sweep.

    PYTHONPATH=src python benchmarks/interop_errors.py [OUT.md]

The sweep (LSTM/GRU, 1-2 layers, bidirectional, proj_size, batch_first; float32) and the error measure
(max|a - b| / max|b|, tolerance 1e-5) are defined in the test module; this script only collects and writes.
"""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def main(argv) -> int:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    code = pytest.main(["-q", "-p", "no:warnings", "-p", "no:cacheprovider", str(ROOT / "tests/test_io_roundtrip.py")])
    worst = sys.modules["test_io_roundtrip"].WORST
    table = "\n".join(["| leg | worst relative error |", "| --- | --- |"]
                      + [f"| {leg} | {err:.2e} |" for leg, err in worst.items()])
    print(table)
    if argv:
        Path(argv[0]).write_text(table + "\n")
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
