"""Pick dynamic evaluation's learning rate for a trained char LM on the validation split alone.

    PYTHONPATH=src python benchmarks/generate_dynamic_lr.py RUN_DIR [lr ...]
    PYTHONPATH=src python benchmarks/generate_dynamic_lr.py RUN_DIR --test LR

RUN_DIR: a ``lstmkit generate`` run folder (its model.safetensors and results.json). The split is rebuilt
from results.json's sizes; each lr scores the validation text (after the training text) with dynamic
evaluation, and the test text is not read. ``--test LR``, once an lr has been chosen that way: the test
tail's rows of the run's table (static, dynamic evaluation at LR, + match model) from the saved model, by the
code ``lstmkit generate`` scores with (``job.lstm_bpc``; at the run's own lr they repeat its table).
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from lstmkit.tasks.generate import CharLM
from lstmkit.tasks.generate.data import load_text
from lstmkit.tasks.generate.job import lstm_bpc


def split(res: dict) -> tuple[str, str, str]:
    """(train, validation, test) texts of the run, rebuilt from results.json's sizes."""
    name, text = load_text(None if res["text"] == "pydoc_data.topics" else res["text"])
    n_train, n_val, n_test = res["n_train"], res["n_val"], res["n_test"]
    return text[:n_train], text[n_train:n_train + n_val], text[n_train + n_val:n_train + n_val + n_test]


def score_test(run_dir: str, lr: float) -> None:
    res = json.load(open(os.path.join(run_dir, "results.json")))
    train, val, test = split(res)
    lm = CharLM.load(os.path.join(run_dir, "model.safetensors"))
    min_match = res["config"].get("min_match", 5)  # the CLI's --min-match default (runs do not record it)
    for row in lstm_bpc(lm, train, val, test, lr, min_match):
        print(f"test tail, {row['model']}: {row['bpc']:.3f} bits/char", flush=True)


def main(run_dir: str, lrs: list[float]) -> None:
    res = json.load(open(os.path.join(run_dir, "results.json")))
    train, val, _ = split(res)
    lm = CharLM.load(os.path.join(run_dir, "model.safetensors"))
    ids = lm.encode(val)
    for lr in lrs:
        start = time.perf_counter()
        p = lm.next_char_probs(val, train, dynamic_lr=lr)[np.arange(len(val)), ids]
        bpc = float(-np.log2(np.maximum(p, 1e-300)).mean())
        print(f"dynamic lr {lr:g}: validation {bpc:.4f} bits/char ({time.perf_counter() - start:.0f} s, "
              f"load average {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--test":
        score_test(sys.argv[1], float(sys.argv[3]))
    else:
        main(sys.argv[1], [float(a) for a in sys.argv[2:]] or [0.0, 0.03, 0.1, 0.3])
