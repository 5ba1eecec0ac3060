"""Fuzz lstmkit's native boundary and file loaders with atheris, for a fixed time budget per target.

    pip install 'lstmkit[fuzz]'
    python scripts/fuzz.py [--seconds 60] [engine safetensors onnx keras safetensors_json onnx_sizes keras_file
                                           torch_file]

Each target (tests/fuzz_targets.py) runs in its own process under libFuzzer's driver; a crash, or an
exception other than a clear ValueError/TypeError, ends that run with the input saved as crash-*. The
targets ending in _json, _sizes and _file mutate structure (header JSON, declared sizes, HDF5 datasets,
state_dict keys) rather than bytes. libFuzzer's -rss_limit_mb=3072 makes a size a loader trusts a finding
instead of a machine out of memory.
Prints one line per target: runs executed, and whether it finished clean.
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(HERE, "..", "tests")

CHILD = """
import sys
sys.path.insert(0, {tests!r})
import atheris
with atheris.instrument_imports(include=["lstmkit"]):
    import lstmkit  # noqa: F401  (instrumented for coverage)
from fuzz_targets import TARGETS
atheris.Setup([sys.argv[0], "-max_total_time={seconds}", "-print_final_stats=1", "-rss_limit_mb=3072", {corpus!r}],
              TARGETS[{name!r}])
atheris.Fuzz()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", default=["engine", "safetensors", "onnx", "keras", "safetensors_json",
                                                       "onnx_sizes", "keras_file", "torch_file"])
    parser.add_argument("--seconds", type=int, default=60, help="budget per target")
    parser.add_argument("--corpus", default="fuzz-corpus", help="folder for the corpora (one per target)")
    args = parser.parse_args()
    failed = 0
    for name in args.targets:
        corpus = os.path.join(args.corpus, name)
        os.makedirs(corpus, exist_ok=True)
        code = CHILD.format(tests=TESTS, seconds=args.seconds, corpus=corpus, name=name)
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", run.stderr)
        ok = run.returncode == 0
        failed += not ok
        print(f"{name:12s} {args.seconds:4d}s  {runs[-1] if runs else '?':>8s} runs  "
              f"{'clean' if ok else 'FINDING (exit %d)' % run.returncode}")
        if not ok:
            print(run.stderr[-3000:])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
