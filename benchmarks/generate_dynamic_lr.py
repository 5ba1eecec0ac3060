"""Pick dynamic evaluation's learning rate for a trained char LM on the validation split alone.

    PYTHONPATH=src python benchmarks/generate_dynamic_lr.py RUN_DIR [lr ...]
    PYTHONPATH=src python benchmarks/generate_dynamic_lr.py RUN_DIR --rms [--decay D ...] [lr ...]
    PYTHONPATH=src python benchmarks/generate_dynamic_lr.py RUN_DIR [--segment N] [--rms] --test LR

RUN_DIR: a ``lstmkit generate`` run folder (its model.safetensors and results.json). The split is rebuilt
from results.json's sizes; each lr scores the validation text (after the training text) with dynamic
evaluation, and the test text is not read. ``--test LR``, once an lr has been chosen that way: the test
tail's rows of the run's table (static, dynamic evaluation at LR, + match model) from the saved model, by the
code ``lstmkit generate`` scores with (``job.lstm_bpc``; at the run's own lr they repeat its table).

``--rms``: the paper's RMS-normalised rule with decay instead of SGD (``RmsDynamicEval``), its normaliser the
gradients' root mean square over the last ``--rms-chars`` characters of the training text, every lr × decay.
``--segment``: characters scored between two updates (the CLI's, 64, by default).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from lstmkit.tasks.generate import CharLM
from lstmkit.tasks.generate.model import DYNAMIC_SEGMENT
from lstmkit.tasks.generate.data import load_text
from lstmkit.tasks.generate.job import lstm_bpc


def split(res: dict) -> tuple[str, str, str]:
    """(train, validation, test) texts of the run, rebuilt from results.json's sizes."""
    name, text = load_text(None if res["text"] == "pydoc_data.topics" else res["text"])
    n_train, n_val, n_test = res["n_train"], res["n_val"], res["n_test"]
    return text[:n_train], text[n_train:n_train + n_val], text[n_train + n_val:n_train + n_val + n_test]


def load_run(run_dir: str) -> tuple[dict, tuple[str, str, str], CharLM]:
    """(results.json, (train, validation, test) texts, the saved model) of a ``lstmkit generate`` run."""
    res = json.load(open(os.path.join(run_dir, "results.json")))
    return res, split(res), CharLM.load(os.path.join(run_dir, "model.safetensors"))


def score_test(run_dir: str, lr: float, segment: int = DYNAMIC_SEGMENT, rms_chars: int = 0) -> None:
    res, (train, val, test), lm = load_run(run_dir)
    min_match = res["config"].get("min_match", 5)  # the CLI's --min-match default (runs do not record it)
    rms = lm.gradient_rms(train[-rms_chars:], segment) if rms_chars else None
    for row in lstm_bpc(lm, train, val, test, lr, min_match, segment=segment, rms=rms):
        print(f"test tail, {row['model']}: {row['bpc']:.3f} bits/char", flush=True)


def main(run_dir: str, lrs: list[float], segment: int = DYNAMIC_SEGMENT, rms_chars: int = 0,
         decays: tuple = (0.0,)) -> None:
    _, (train, val, _), lm = load_run(run_dir)
    ids = lm.encode(val)
    rms = None
    if rms_chars:
        start = time.perf_counter()
        rms = lm.gradient_rms(train[-rms_chars:], segment)
        print(f"gradient RMS over the last {rms_chars} training characters ({time.perf_counter() - start:.0f} s)")
    for lr in lrs:
        for decay in decays if rms is not None else (0.0,):
            start = time.perf_counter()
            p = lm.next_char_probs(val, train, dynamic_lr=lr, segment=segment, rms=rms, decay=decay)
            bpc = float(-np.log2(np.maximum(p[np.arange(len(val)), ids], 1e-300)).mean())
            rule = f"RMS, decay {decay:g}, " if rms is not None else ""
            print(f"dynamic {rule}segment {segment}, lr {lr:g}: validation {bpc:.4f} bits/char "
                  f"({time.perf_counter() - start:.0f} s, load average {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("lrs", nargs="*", type=float)
    parser.add_argument("--test", type=float, help="score the test tail at this lr, once chosen on validation")
    parser.add_argument("--segment", type=int, default=DYNAMIC_SEGMENT, help="characters scored between two updates")
    parser.add_argument("--rms", action="store_true", help="the RMS-normalised rule (with decay: validation only)")
    parser.add_argument("--rms-chars", type=int, default=65536)
    parser.add_argument("--decay", type=float, nargs="+", default=[0.0])
    args = parser.parse_intermixed_args()  # lrs may follow the options
    rms_chars = args.rms_chars if args.rms else 0
    if args.test is not None:
        score_test(args.run_dir, args.test, args.segment, rms_chars)
    else:
        main(args.run_dir, args.lrs or ([1e-4, 3e-4, 1e-3] if args.rms else [0.0, 0.03, 0.1, 0.3]), args.segment,
             rms_chars, tuple(args.decay))
