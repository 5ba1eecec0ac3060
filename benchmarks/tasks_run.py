"""Full runs of the task commands; writes one markdown table per job to benchmarks/tasks_results.md.

    PYTHONPATH=src python benchmarks/tasks_run.py [job ...]
    # jobs: quarterly quarterly-default monthly digits vowels text

Each job is the CLI itself (lstmkit forecast / classify / generate) into a fresh folder under
benchmarks/runs/; the tables are read back from its results.json.
"""
from __future__ import annotations

import json
import os
import sys
import time

from lstmkit.cli import main
from lstmkit.tasks.runio import markdown_table

JOBS = {
    "quarterly": ["forecast", "--dataset", "tourism-quarterly", "--epochs", "20", "--ensemble", "3"],
    "quarterly-default": ["forecast", "--dataset", "tourism-quarterly"],
    "monthly": ["forecast", "--dataset", "tourism-monthly", "--epochs", "15", "--ensemble", "2"],
    "digits": ["classify", "--dataset", "digits"],
    "vowels": ["classify", "--dataset", "japanese-vowels"],
    "text": ["generate", "--hidden-size", "512", "--seq-len", "128", "--epochs", "11", "--batches-per-epoch", "50",
             "--lr", "3e-3", "--dropout", "0.1"],
}
COLUMNS = {"forecast": ["method", "MASE", "sMAPE", "MAE", "RMSE", "seconds"], "classify": ["model", "test accuracy"],
           "generate": ["model", "bpc"]}


def run(job: str) -> str:
    out = os.path.join("benchmarks", "runs", f"{job}-{time.strftime('%Y%m%d-%H%M%S')}")
    argv = JOBS[job] + ["--out", out, "--no-progress"]
    start = time.perf_counter()
    rc = main(argv)
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    head = f"### {job}: `lstmkit {' '.join(JOBS[job])}` (rc {rc}, {time.perf_counter() - start:.0f}s)\n\n"
    extra = ""
    if res["task"] == "forecast":
        extra = f"\n\nLSTM 80% interval coverage: {res['interval']['coverage']:.1%}"
    return head + markdown_table(res["table"], COLUMNS[res["task"]], "{:.3f}") + extra + "\n"


if __name__ == "__main__":
    jobs = sys.argv[1:] or list(JOBS)
    for job in jobs:
        text = run(job)
        with open(os.path.join("benchmarks", "tasks_results.md"), "a") as f:
            f.write(text + "\n")
        print(text, flush=True)
