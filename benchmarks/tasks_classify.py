"""LSTM-FCN and the plain LSTM against 1-NN DTW and MiniRocket on aeon's bundled UCR/UEA sets (issue 21); appends
one markdown table to benchmarks/tasks_results.md.

    PYTHONPATH=src python benchmarks/tasks_classify.py [--sets JapaneseVowels,ACSF1] [--seeds 0,1,2] [--archs lstm-fcn]

Every run is the CLI itself (``lstmkit classify``) into benchmarks/runs/classify-<set>-<arch>-s<seed>/; a run whose
results.json is already there is read back instead of rerun (delete the folder to rerun it). 1-NN DTW is
deterministic and runs once per set (beside the LSTM-FCN of the first seed); MiniRocket runs once per seed (its
kernels' biases are drawn). aeon's numba functions are compiled before the first timed run, so the seconds are
work, not compilation; torch and the engine run one thread (see main_). The archive's test split is scored only
after training; no setting was chosen on it. A run of an ensemble (a preset with ensemble=K > 1) adds a row of its
members' own accuracies: one network each, at seeds seed..seed+K-1. The table gives the epochs each network
trained (the lstm-fcn preset's plateau schedule stops itself, at most at its cap).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

import numpy as np

from lstmkit.cli import main
from lstmkit.tasks.runio import markdown_table

SETS = ("JapaneseVowels", "PickupGestureWiimoteZ", "OSULeaf", "ACSF1")  # cheapest first
ARCHS = ("lstm-fcn", "lstm")
DTW, MINIROCKET = "1-NN DTW (aeon, full window)", "MiniRocket (aeon)"
RESULTS = os.path.join("benchmarks", "tasks_results.md")


def argv_for(name: str, arch: str, seed: int, first_seed: bool) -> list:
    """The lstmkit classify arguments of one run (no --out)."""
    baselines = ("dtw,minirocket" if first_seed else "minirocket") if arch == "lstm-fcn" else "none"
    return ["classify", "--dataset", name, "--arch", arch, "--seed", str(seed), "--baselines", baselines]


def run_one(name: str, arch: str, seed: int, first_seed: bool) -> dict:
    """results.json of one run (rerun only when absent)."""
    out = os.path.join("benchmarks", "runs", f"classify-{name}-{arch}-s{seed}")
    path = os.path.join(out, "results.json")
    if not os.path.isfile(path):
        argv = argv_for(name, arch, seed, first_seed) + ["--out", out, "--overwrite", "--no-progress", "--quiet"]
        rc = main(argv)
        if rc != 0:
            raise SystemExit(f"lstmkit {' '.join(argv)} exited with {rc}")
    with open(path) as f:
        return json.load(f)


def warm_up() -> None:
    """Compile aeon's numba kernels (DTW, MiniRocket) on a tiny set, outside every timing."""
    from lstmkit.tasks.classify.job import minirocket, nearest_neighbour_dtw

    rng = np.random.default_rng(0)
    X = [rng.standard_normal((12, 1)).astype(np.float32) for _ in range(6)]
    y = np.array(["a", "b"] * 3)
    nearest_neighbour_dtw(X, y, X)
    minirocket(X, y, X)


def model_label(arch: str) -> str:
    return {"lstm-fcn": "LSTM-FCN", "lstm": "LSTM"}[arch]


def epochs_trained(res: dict) -> list:
    """The epochs each network of one run trained (an ensemble: each member's), from results.json's history; a
    schedule that stops itself (lr_schedule='plateau') trains fewer than its cap."""
    training = res.get("training") or {}
    return [len(h["history"]) for h in training.get("members", [training])] if training else []


def collect(name: str, seeds: list, archs=ARCHS) -> dict:
    """{method: {'acc': [per seed], 'seconds': [per seed], 'epochs': [per network]}} for one set; an ensemble's
    members add a row of their own accuracies (one network each, seeds seed..seed+K-1; no seconds of their
    own)."""
    methods: dict = {}
    for k, seed in enumerate(seeds):
        for arch in archs:
            res = run_one(name, arch, seed, k == 0)
            c = res["config"]
            members = c.get("ensemble", 1)
            for row in res["table"]:
                model = row["model"]
                key = (f"{model.split(' (')[0]} ({c['cell']}, {c['hidden_size']} hidden"
                       f"{f', ensemble of {members}' if members > 1 else ''})" if model.startswith("LSTM") else model)
                m = methods.setdefault(key, {"acc": [], "seconds": [], "epochs": []})
                m["acc"].append(row["test accuracy"])
                m["seconds"].append(row["seconds"])
                if model.startswith("LSTM"):
                    m["epochs"] += epochs_trained(res)
            if res.get("member_accuracies"):
                m = methods.setdefault(f"{model_label(arch)} one network (the ensemble's members)",
                                       {"acc": [], "seconds": [], "epochs": []})
                m["acc"] += res["member_accuracies"]
    return methods


def summary_rows(name: str, methods: dict) -> list:
    rows = []
    for method, m in methods.items():
        acc = np.asarray(m["acc"])
        rows.append({"set": name, "method": method, "runs": len(acc),
                     "accuracy mean ± sd": f"{acc.mean():.3f} ± {acc.std():.3f}",
                     "min–max": f"{acc.min():.3f}–{acc.max():.3f}",
                     "seconds per run": float(np.mean(m["seconds"])) if m["seconds"] else "(in the ensemble's)",
                     "epochs per network": ", ".join(map(str, m["epochs"])) or "-"})
    return rows


def verdict(per_set: dict) -> list:
    """Lines on the issue's targets: LSTM-FCN >= 1-NN DTW on each set; within 2 points of MiniRocket on the mean
    over the sets."""
    lines, fcn_means, mr_means = [], [], []
    for name, methods in per_set.items():
        fcn = next(v for k, v in methods.items() if k.startswith("LSTM-FCN ("))  # the model, not its members
        f, d = np.mean(fcn["acc"]), np.mean(methods[DTW]["acc"])
        fcn_means.append(f)
        mr_means.append(np.mean(methods[MINIROCKET]["acc"]))
        lines.append(f"- {name}: LSTM-FCN {f:.3f} vs 1-NN DTW {d:.3f}: {'met' if f >= d else 'MISSED'}")
    gap = np.mean(mr_means) - np.mean(fcn_means)
    lines.append(f"- mean over the sets: LSTM-FCN {np.mean(fcn_means):.3f} vs MiniRocket {np.mean(mr_means):.3f} "
                 f"({100 * gap:.1f} points {'behind' if gap > 0 else 'ahead'}): {'met' if gap <= 0.02 else 'MISSED'}")
    return lines


def main_(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sets", default=",".join(SETS), help="comma-separated aeon set names (default: %(default)s)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    p.add_argument("--archs", default=",".join(ARCHS), help="comma-separated of lstm-fcn, lstm (default: %(default)s)")
    args = p.parse_args(argv)
    sets, seeds, archs = args.sets.split(","), [int(s) for s in args.seeds.split(",")], args.archs.split(",")
    if not archs or set(archs) - set(ARCHS) or "lstm-fcn" not in archs:
        raise SystemExit(f"--archs: expected a comma-separated list of {', '.join(ARCHS)} holding lstm-fcn (the "
                         f"baselines run beside it), got {args.archs!r}")
    start = time.perf_counter()
    load_start = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    # one thread: on a shared machine (load ~7 on 2 cores) two OpenMP threads spend their time waiting for each
    # other; one made an LSTM-FCN step on JapaneseVowels 14x and on ACSF1 2.5x faster there
    import torch

    import lstmkit.engine

    torch.set_num_threads(1)
    if lstmkit.engine.available():
        lstmkit.engine.set_num_threads(1)
    warm_up()
    per_set, rows = {}, []
    for name in sets:
        per_set[name] = collect(name, seeds, archs)
        rows += summary_rows(name, per_set[name])
        print(markdown_table(rows[-len(per_set[name]):], list(rows[-1]), "{:.1f}"), flush=True)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    commands = sorted({" ".join(["lstmkit"] + argv_for(n, a, s, k == 0))
                       for n in sets for k, s in enumerate(seeds) for a in archs})
    text = (f"### classify (issue 21): {' vs '.join(map(model_label, archs))} vs 1-NN DTW vs MiniRocket, "
            f"seeds {args.seeds} "
            f"({time.perf_counter() - start:.0f}s; load average at the start {load_start}; `uptime` at the end: "
            f"{load})\n\n"
            + markdown_table(rows, list(rows[0]), "{:.1f}") + "\n\nTargets:\n" + "\n".join(verdict(per_set))
            + "\n\nCommands (`PYTHONPATH=src python benchmarks/tasks_classify.py` runs them all):\n\n"
            + "\n".join(f"    {c}" for c in commands) + "\n")
    with open(RESULTS, "a") as f:
        f.write("\n" + text + "\n")  # a blank line first: the file may end right after a paragraph
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main_())
