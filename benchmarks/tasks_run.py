"""Full runs of the task commands; writes one markdown table per job to benchmarks/tasks_results.md.

    PYTHONPATH=src python benchmarks/tasks_run.py [job ...]
    # jobs: quarterly quarterly-default monthly digits vowels text text-steps text-bf16

text: the char LM trained for a 15-minute wall-clock budget (issue 21's bar) on whatever share of the CPUs
the machine gives it; text-steps: the same model for the fixed number of steps that 15 quiet minutes on 2 cores
reach (QUIET_STEPS, measured at a low load average), so the result of a full 15 minutes is known on a shared
machine too; text-bf16: 15 minutes of a wider model trained with bfloat16 products where the CPU multiplies bfloat16
natively (AVX512_BF16 or AMX; float32 elsewhere, `--precision auto`).

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

# the char LM (issue 21), chosen on the validation split at equal wall time (docs/generate.md): layer norm
# and a tied 256-wide embedding, AdamW at 1e-2 with warm-up and cosine decay, state carried across chunks
TEXT_MODEL = ["--hidden-size", "256", "--embed-dim", "256", "--tie-weights", "--layer-norm", "--batch-size", "32",
              "--seq-len", "128", "--lr", "1e-2", "--warmup", "20", "--eval-every", "250"]
# the steps 15 quiet minutes on 2 cores reach with TEXT_MODEL: 5.9 steps/s (validations included) measured on a
# quiet stretch of the machine (load average ~3.8), x 900 s. The partial run in tasks_results.md used 3700, the
# earlier estimate from CPU time under load.
QUIET_STEPS = 5300
# with bfloat16 products (docs/mixed_precision.md: 1.6-1.7x the float32 rate end to end), a model twice as wide:
# LSTM 512 with a tied 512-wide embedding, no layer norm (its cell has no bf16 products), lr 5e-3, chosen on the
# validation split (benchmarks/generate_precision.py: 1.456-1.469 bits/char after 600 steps, where TEXT_MODEL's
# best was 1.560, 1.482 with dropout); dropout 0.65, embedding 0.25 against overfitting, chosen on the validation
# split in 15-minute runs (best validation 1.462 at 0.25 / 0.1, 1.436 at 0.5 / 0.2, 1.391 at 0.65 / 0.25; two layers
# at 0.25 / 0.1: 1.460, overfitting from step 800; benchmarks/tasks_results.md), and dynamic evaluation at lr 0.5
# for that model (benchmarks/generate_dynamic_lr.py on the validation split: 0.1 1.326, 0.3 1.289, 0.5 1.284, 0.7 1.305)
# --precision auto, not bfloat16: where the CPU has no bf16 instructions, emulated bf16 products trained at half the
# float32 rate (4,300 against 8,600 chars/s on a Zen 3, docs/generate.md), so there the job trains in float32.
TEXT_MODEL_BF16 = ["--hidden-size", "512", "--embed-dim", "512", "--tie-weights", "--batch-size", "32", "--seq-len",
                   "128", "--lr", "5e-3", "--warmup", "20", "--eval-every", "100", "--dropout", "0.65",
                   "--embed-dropout", "0.25", "--precision", "auto", "--dynamic-lr", "0.5"]
JOBS = {
    "quarterly": ["forecast", "--dataset", "tourism-quarterly", "--epochs", "20", "--ensemble", "3"],
    "quarterly-default": ["forecast", "--dataset", "tourism-quarterly"],
    "monthly": ["forecast", "--dataset", "tourism-monthly", "--epochs", "15", "--ensemble", "2"],
    "digits": ["classify", "--dataset", "digits"],
    "vowels": ["classify", "--dataset", "japanese-vowels"],
    "text": ["generate", "--time-budget", "15"] + TEXT_MODEL,
    "text-steps": ["generate", "--steps", str(QUIET_STEPS)] + TEXT_MODEL,
    "text-bf16": ["generate", "--time-budget", "15"] + TEXT_MODEL_BF16,
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
    if res["task"] == "generate":
        extra = "\n\n" + training_line(res)
    return head + markdown_table(res["table"], COLUMNS[res["task"]], "{:.3f}") + extra + "\n"


def training_line(res: dict) -> str:
    """Training minutes, steps, chars/s and the load average beside them (the machine is shared)."""
    t, h = res["training_time"], res["training"]
    steps = f"{h['steps']} steps (stopped by {h['stopped_by']}, best validation at step {h['best_step']}), " \
        if "steps" in h else ""
    lines = [f"Training {t['seconds'] / 60:.1f} min: {steps}{t['chars_read']:,} characters read, "
             f"{t['chars_per_s']:,} chars/s (validations included), load average (1/5/15 min) "
             f"{t['load_average_before']} before and {t['load_average_after']} after, {os.cpu_count()} CPUs; "
             f"scoring {res['evaluation_seconds']:.0f} s."]
    lines += [f"- {v}" for v in res.get("targets", {}).values()]
    return "\n".join(lines)


if __name__ == "__main__":
    jobs = sys.argv[1:] or list(JOBS)
    for job in jobs:
        text = run(job)
        with open(os.path.join("benchmarks", "tasks_results.md"), "a") as f:
            f.write(text + "\n")
        print(text, flush=True)
