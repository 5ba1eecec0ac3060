"""The text job behind ``lstmkit generate``: train a CharLM on a text's head, report bits per character on
its held-out tail next to xz (lzma) and bz2, alone and given the training text first, and print samples.

The LSTM is scored three ways, so a reader sees what each step buys: static (the trained weights), with
dynamic evaluation (it keeps learning from the held-out text after scoring each segment), and that mixed with
a match model (predicts the continuation of the latest earlier occurrence of the last characters). The last
two learn from the text as they score it, as a compressor given the training text does.
"""
from __future__ import annotations

import bz2
import lzma
import os
import time

from . import data as datasets
from .. import devices
from ..distributed import is_main, rank
import numpy as np

from .model import DYNAMIC_SEGMENT, CharLM
from .match import MatchMixer, match_predictions
from ..runio import format_table, write_json


def compressor_bpc(train: str, test: str) -> list[dict]:
    """Bits per character of ``test`` for xz (preset 9e) and bz2 (level 9): alone, and conditional on the
    training text, i.e. 8·(|C(train + test)| − |C(train)|) / len(test)."""
    tr, te = train.encode("utf-8"), test.encode("utf-8")
    codecs = {"xz": lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), "bz2": lambda b: bz2.compress(b, 9)}
    rows = []
    for name, c in codecs.items():
        rows.append({"model": f"{name} (test text alone)", "bpc": 8 * len(c(te)) / len(test)})
        given = 8 * (len(c(tr + te)) - len(c(tr))) / len(test)
        rows.append({"model": f"{name} (given the training text)", "bpc": given})
    return rows


def describe(config: dict) -> str:
    """'2x512 hidden, proj 256, tied, layer norm': the network in a table row's words."""
    c = config
    layers = f"{c['num_layers']}x" if c.get("num_layers", 1) > 1 else ""
    words = [f"{layers}{c['hidden_size']} hidden"]
    if c.get("cell", "lstm") != "lstm":
        words.append(c["cell"].upper())
    if c.get("proj_size"):
        words.append(f"proj {c['proj_size']}")
    if c.get("tie_weights"):
        words.append("tied")
    if c.get("layer_norm"):
        words.append("layer norm")
    if any(c.get("zoneout") or ()):
        words.append("zoneout {:g}/{:g}".format(*c["zoneout"]))
    if c.get("recurrent_dropout"):
        words.append(f"recurrent dropout {c['recurrent_dropout']:g}")
    return ", ".join(words)


def lstm_bpc(lm: CharLM, train: str, val: str, test: str, dynamic_lr: float, min_match: int, *,
             segment: int = DYNAMIC_SEGMENT,
             rms: list | None = None) -> list[dict]:
    """Bits per character of ``test`` for the LSTM: static, with dynamic evaluation, and with dynamic
    evaluation mixed with the match model. The adaptive ones read ``val`` then ``test`` after ``train``
    (the mixture weights are learned over ``val`` and go on learning over ``test``); only ``test`` is scored,
    a character outside the vocabulary at ``CharLM.unknown_bits`` more (``code_bits``), as a compressor pays
    for every character. segment, rms: dynamic evaluation's (``CharLM.next_char_probs``; rms: its RMS-normalised
    rule)."""
    name = f"LSTM char LM ({describe(lm.config)}"
    heldout = val + test
    targets = lm.encode(heldout)
    tail = targets[-len(test):]

    def bpc(probs):
        """Mean bits of the test characters: ``probs`` the distributions before each (n, V), or the probability
        each got (n,) (the match mixture's); the last len(test) rows."""
        return float(lm.code_bits(probs[-len(test):], tail).mean())

    static = lm.next_char_probs(test, train + val)
    rows = [{"model": f"{name}, static)", "bpc": bpc(static)}]
    if dynamic_lr:
        probs = lm.next_char_probs(heldout, train, dynamic_lr=dynamic_lr, segment=segment, rms=rms)
        rule = ("RMS, " if rms is not None else "") + (f"segment {segment}, " if segment != DYNAMIC_SEGMENT else "")
        rows.append({"model": f"{name}, dynamic evaluation {rule}lr {dynamic_lr:g})", "bpc": bpc(probs)})
    else:
        probs = np.concatenate([lm.next_char_probs(val, train), static])
    pointer, length = match_predictions(train, heldout, min_match)
    predicted = np.where(pointer >= 0, lm.encode(train + heldout)[pointer], -1)
    mixed = MatchMixer().mix(probs, targets, predicted, length)
    rows.append({"model": f"{name}{', dynamic' if dynamic_lr else ''}) + match model (min length {min_match})",
                 "bpc": bpc(mixed)})
    return rows


def _chars_read(lm: CharLM, n_train: int) -> int:
    """Training characters the fit read (inputs, seq_len per chunk): steps x batch (stream training), or per
    epoch its batches x batch, one pass over the n_train // (seq_len + 1) chunks without batches_per_epoch."""
    c, h = lm.config, lm.history_
    if "steps" in h:
        return h["steps"] * c["batch_size"] * c["seq_len"]
    per_epoch = (c["batches_per_epoch"] * c["batch_size"] if c["batches_per_epoch"]
                 else n_train // (c["seq_len"] + 1))
    return len(h["history"]) * per_epoch * c["seq_len"]


def _targets(rows: list[dict]) -> dict:
    """Issue 21's two bars, each in words: the static LSTM against bz2 given the training text, dynamic
    evaluation alone (no match model) against xz given the training text."""
    bpc = {r["model"]: r["bpc"] for r in rows}

    def versus(what, value, anchor):
        return (f"{what} {value:.3f} bpc is {'below' if value < bpc[anchor] else 'NOT below'} {anchor} "
                f"({bpc[anchor]:.3f})")

    out = {"static_vs_bz2": versus("static LSTM", rows[0]["bpc"], "bz2 (given the training text)")}
    dynamic = [r for r in rows if "dynamic evaluation" in r["model"]]
    if dynamic:
        out["dynamic_vs_xz"] = versus("dynamic evaluation alone", dynamic[0]["bpc"], "xz (given the training text)")
    return out


def run(*, out: str, text_file: str | None = None, test_fraction: float = 0.05, val_fraction: float = 0.02,
        limit: int | None = None, prompt: str = "", n_chars: int = 300, temperature: float = 0.8,
        top_k: int | None = 20, dynamic_lr: float = 0.1, min_match: int = 5, resume: bool = False, log=print,
        **model_kw) -> dict:
    start = time.perf_counter()
    name, text = datasets.load_text(text_file)
    if limit is not None:
        text = text[:limit]
    n = len(text)
    n_test, n_val = max(int(n * test_fraction), 200), max(int(n * val_fraction), 200)
    if n - n_test - n_val < 1000:
        raise ValueError(f"{name}: {n} characters leave {max(n - n_test - n_val, 0)} to train on after the test "
                         f"({n_test}) and validation ({n_val}) tails (--test-fraction {test_fraction}, --val-fraction "
                         f"{val_fraction}); training needs at least 1000: a longer text or smaller fractions")
    train, val, test = text[:n - n_test - n_val], text[n - n_test - n_val:n - n_test], text[n - n_test:]
    log(f"{name}: {len(train)} training, {len(val)} validation, {len(test)} held-out test characters")
    progress = model_kw.pop("progress", True)  # the job logs its epochs (to its log), with a bar where asked
    lm = CharLM(verbose=2 if progress else 1, **model_kw)
    if note := devices.emulated_bf16_note(lm.config["precision"], lm.device):
        log(note)
    load_before, fit_start = os.getloadavg(), time.perf_counter()
    lm.fit(train, val, ckpt_dir=out, resume=resume, log=log)
    # the machine's load beside the training time: on a shared machine the time says little without it
    training = {"seconds": round(time.perf_counter() - fit_start, 1), "chars_read": _chars_read(lm, len(train)),
                "load_average_before": [round(v, 2) for v in load_before],
                "load_average_after": [round(v, 2) for v in os.getloadavg()]}
    training["chars_per_s"] = round(training["chars_read"] / max(training["seconds"], 1e-9))
    training["precision"] = lm.history_["precision"]
    log(f"training ({training['precision']} products): {training['seconds'] / 60:.1f} min, "
        f"{training['chars_read']:,} characters read "
        f"({training['chars_per_s']:,} chars/s with validations), load average {training['load_average_before']} "
        f"before, {training['load_average_after']} after (1/5/15 min, {os.cpu_count()} CPUs)")
    if not is_main():  # under torchrun only rank 0 evaluates and writes the report
        return {"task": "generate", "rank": rank()}
    lm.save(os.path.join(out, "model.safetensors"))
    eval_start = time.perf_counter()
    rows = lstm_bpc(lm, train, val, test, dynamic_lr, min_match)
    eval_seconds = round(time.perf_counter() - eval_start, 1)
    best = rows[-1]
    rows += compressor_bpc(train + val, test)
    log(format_table(rows, ["model", "bpc"]))
    xz_given = next(r["bpc"] for r in rows if r["model"] == "xz (given the training text)")
    verdict = "below" if best["bpc"] < xz_given else "NOT below"
    log(f"the best LSTM ({best['model']}) is {verdict} xz given the training text ({best['bpc']:.3f} vs "
        f"{xz_given:.3f} bpc); static LSTM {rows[0]['bpc']:.3f}")
    targets = _targets(rows)
    for line in targets.values():
        log(line)
    samples = [lm.sample(prompt, n_chars, temperature, top_k, seed=s) for s in range(2)]
    for s in samples:
        log(f"--- sample (temperature {temperature}, top-k {top_k}) ---\n{s}")
    summary = {"task": "generate", "text": name, "n_train": len(train), "n_val": len(val), "n_test": len(test),
               "config": lm.config, "training": lm.history_, "training_time": training, "table": rows,
               "verdict_vs_xz_given_train": verdict, "targets": targets,
               "evaluation_seconds": eval_seconds,
               "samples": samples, "checkpoint": os.path.join(out, "model.safetensors"),
               "seconds": round(time.perf_counter() - start, 1)}
    write_json(os.path.join(out, "results.json"), summary)
    log(f"wrote {out}/results.json, model.safetensors")
    return summary
