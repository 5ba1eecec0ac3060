"""The classification job behind ``lstmkit classify``: data, the LSTM, baselines in the same run, the
report (terminal table, results.json, confusion-matrix PNG).
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import data as datasets
from .estimator import SequenceClassifier
from ..distributed import is_main, rank
from ..runio import format_table, pyplot, write_json

# The archives' benchmark classifiers, run in the same job on the same split instead of figures quoted from
# papers: 1-NN DTW (full window; dependent DTW over all channels for multivariate data, Bagnall et al. 2018,
# arXiv:1811.00075) and MiniRocket (Dempster, Schmidt & Webb 2021), both from aeon.
BASELINES = ("logistic", "dtw", "minirocket")
MINIROCKET_MIN_LENGTH = 9  # MiniRocket's kernels have length 9: shorter input is refused by aeon
# baselines='auto' skips 1-NN DTW (and says so) past this many DTW cells (N_train x N_test x T_train x T_test):
# about 1e10 cells is a minute of aeon's DTW on this machine
DTW_AUTO_CELLS = 5e10


def sequence_features(X) -> np.ndarray:
    """Simple per-sequence features for the logistic-regression baseline: for every input feature its
    mean, std, min, max, first and last value, plus the length. (N, 6F + 1)."""
    rows = []
    for s in X:
        s = np.asarray(s, np.float32).reshape(len(s), -1)
        rows.append(np.concatenate([s.mean(0), s.std(0), s.min(0), s.max(0), s[0], s[-1], [len(s)]]))
    return np.asarray(rows)


def baselines_of(Xtr, ytr, Xte, text: bool, seed: int = 0) -> dict:
    """{'majority class': preds, 'logistic regression (...)': preds} on the test inputs."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    values, counts = np.unique(ytr, return_counts=True)
    out = {"majority class": np.full(len(Xte), values[counts.argmax()])}
    if text:
        from sklearn.feature_extraction.text import TfidfVectorizer

        pipe = make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(1, 3), max_features=50000),
                             LogisticRegression(max_iter=2000))
        name = "logistic regression (char 1-3-gram tf-idf)"
        pipe.fit(Xtr, ytr)
    else:
        pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
        name = "logistic regression (mean/std/min/max/first/last)"
        pipe.fit(sequence_features(Xtr), ytr)
        Xte = sequence_features(Xte)
    out[name] = pipe.predict(Xte)
    return out


def _channels_first(X) -> list:
    """lstmkit's (T_i, C) cases -> aeon's (C, T_i) float64."""
    return [np.asarray(x, np.float64).reshape(len(x), -1).T for x in X]


def nearest_neighbour_dtw(Xtr, ytr, Xte) -> np.ndarray:
    """1-NN with dependent DTW over all channels (aeon; full warping window), on the data as given (the
    archives' convention), variable lengths allowed: predictions (N_test,)."""
    from ..._optional import require

    knn = require("aeon.classification.distance_based", "tasks")
    clf = knn.KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw")
    return clf.fit(_channels_first(Xtr), np.asarray(ytr)).predict(_channels_first(Xte))


def dtw_cells(Xtr, Xte) -> float:
    """The DTW cost matrix cells 1-NN DTW fills: sum over train/test pairs of T_train x T_test."""
    return float(sum(len(x) for x in Xtr)) * float(sum(len(x) for x in Xte))


def equal_length(Xtr, Xte) -> tuple[np.ndarray, np.ndarray, int]:
    """(train (N, C, L), test (M, C, L), L) for classifiers that need one length: every case linearly
    resampled to L = the longest training case (at least MINIROCKET_MIN_LENGTH); equal-length data at
    L >= 9 passes unchanged."""
    L = max(max(len(x) for x in Xtr), MINIROCKET_MIN_LENGTH)

    def resized(X):
        out = []
        for x in _channels_first(X):  # (C, T_i)
            grid = np.linspace(0, x.shape[1] - 1, L)
            out.append(np.stack([np.interp(grid, np.arange(x.shape[1]), row) for row in x]))
        return np.stack(out)  # (N, C, L)

    return resized(Xtr), resized(Xte), L


def minirocket(Xtr, ytr, Xte, seed: int = 0) -> np.ndarray:
    """MiniRocket (aeon's MiniRocketClassifier: 10,000 kernels, ridge regression with built-in CV) on the
    cases resampled to one length (``equal_length``): predictions (N_test,)."""
    from ..._optional import require

    conv = require("aeon.classification.convolution_based", "tasks")
    tr, te, _ = equal_length(Xtr, Xte)
    clf = conv.MiniRocketClassifier(random_state=seed)
    return clf.fit(tr, np.asarray(ytr)).predict(te)


def timed(fn, *args, **kw) -> tuple:
    """(fn's result, seconds it took)."""
    start = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - start


def check_baselines(baselines) -> tuple:
    """'auto', 'none', or a comma-separated subset of BASELINES -> the tuple ('auto' kept as is)."""
    if baselines in ("auto", "none"):
        return (baselines,)
    names = tuple(b.strip() for b in str(baselines).split(",") if b.strip())
    bad = [b for b in names if b not in BASELINES]
    if bad or not names:
        raise ValueError(f"--baselines: expected 'auto', 'none' or a comma-separated list of {', '.join(BASELINES)}, "
                         f"got {baselines!r}")
    return names


def sequence_baselines(Xtr, ytr, Xte, text: bool, seed: int, baselines, log) -> dict:
    """{name: (predictions, seconds)} for the baselines asked for ('auto': logistic regression, MiniRocket
    and 1-NN DTW on numeric data, DTW skipped with a log line when it would fill more than DTW_AUTO_CELLS;
    logistic regression alone on text)."""
    names = check_baselines(baselines)
    if names == ("none",):
        return {}
    auto = names == ("auto",)
    if auto:
        names = ("logistic",) if text else BASELINES
    elif text and set(names) - {"logistic"}:
        raise ValueError(f"--baselines: {', '.join(sorted(set(names) - {'logistic'}))} need numeric sequences, "
                         "not text")
    out = {}
    if "logistic" in names:
        (found, seconds) = timed(baselines_of, Xtr, ytr, Xte, text, seed)
        for name, pred in found.items():  # the majority class costs nothing: the time is the regression's
            out[name] = (pred, 0.0 if name == "majority class" else seconds)
    if "dtw" in names:
        cells = dtw_cells(Xtr, Xte)
        if auto and cells > DTW_AUTO_CELLS:
            log(f"1-NN DTW skipped: {cells:.1e} DTW cells (> {DTW_AUTO_CELLS:.0e}); --baselines dtw runs it anyway")
        else:
            out["1-NN DTW (aeon, full window)"] = timed(nearest_neighbour_dtw, Xtr, ytr, Xte)
    if "minirocket" in names:
        out["MiniRocket (aeon)"] = timed(minirocket, Xtr, ytr, Xte, seed)
    return out


def report(y_true, y_pred, classes) -> dict:
    """Accuracy, per-class precision/recall/support, confusion matrix (rows true, columns predicted)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    p, r, _, s = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    return {"accuracy": float(np.mean(y_true == y_pred)),
            "per_class": [{"class": c, "precision": float(pi), "recall": float(ri), "support": int(si)}
                          for c, pi, ri, si in zip(classes, p, r, s)],
            "confusion": confusion_matrix(y_true, y_pred, labels=classes).tolist()}


def plot_confusion(confusion, classes, path: str, title: str) -> None:
    plt = pyplot()
    cm = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * len(classes), 0.8 + 0.5 * len(classes)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=90 if len(classes) > 12 else 0)
    ax.set_yticks(range(len(classes)), classes)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                        color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def split(d: datasets.SequenceData, test_size: float, seed: int, limit: int | None):
    """(Xtr, ytr, Xte, yte): the set's own test split when it has one, else a stratified split.
    ``limit`` keeps a stratified subset of that many training (and proportionally test) cases."""
    from sklearn.model_selection import train_test_split

    def subset(X, y, n):
        if n is None or n >= len(y):
            return X, y
        idx, _ = train_test_split(np.arange(len(y)), train_size=n, random_state=seed, stratify=None)
        return [X[i] for i in idx], y[idx]

    if d.test is not None:
        Xtr, ytr, Xte, yte = d.X, d.y, d.test.X, d.test.y
    else:
        idx_tr, idx_te = train_test_split(np.arange(len(d.y)), test_size=test_size, random_state=seed, stratify=d.y)
        Xtr, ytr, Xte, yte = [d.X[i] for i in idx_tr], d.y[idx_tr], [d.X[i] for i in idx_te], d.y[idx_te]
    if limit is not None:
        check_limit(limit, ytr)
        Xtr, ytr = subset(Xtr, ytr, limit)
        Xte, yte = subset(Xte, yte, max(limit // 3, 10))
        if len(set(ytr)) < 2:  # else scikit-learn's "This solver needs samples of at least 2 classes"
            raise ValueError(f"--limit {limit}: the training cases kept hold one class ({ytr[0]}); a classifier "
                             "needs two or more: raise --limit")
    return Xtr, ytr, Xte, yte


def check_limit(limit: int, ytr) -> None:
    """--limit below the number of classes leaves classes never trained on; with a tiny limit no test case
    kept may be of a class the model knows, which scikit-learn's metrics refuse in their own words."""
    classes = len(set(ytr))
    if limit < classes:
        raise ValueError(f"--limit {limit}: fewer training cases than the {classes} classes; give --limit {classes} "
                         "or more")


def load_source(dataset: str | None = None, csv: str | None = None, ts: str | None = None,
                sequences: str | None = None, text_col: str = "text", label_col: str = "label", id_col: str = "id",
                step_col: str = "step", feature_cols: list | None = None) -> tuple[datasets.SequenceData, bool]:
    """(data, is_text) from exactly one source: a bundled set, a text CSV, a .ts file or a long-format table
    of numeric sequences."""
    given = [name for name, v in (("--dataset", dataset), ("--csv", csv), ("--ts", ts), ("--sequences", sequences))
             if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one data source (--dataset, --csv, --ts or --sequences), got "
                         f"{', '.join(given) or 'none'}")
    if csv is not None:
        texts, labels = datasets.load_text_csv(csv, text_col, label_col)
        return datasets.SequenceData(os.path.basename(csv), texts, labels), True
    if ts is not None:
        return datasets.load_ts(ts), False
    if sequences is not None:
        return datasets.load_long_sequences(sequences, id_col, step_col, label_col, feature_cols), False
    return datasets.load_classify(dataset), False


def model_name(c: dict) -> str:
    """The table's name for the fitted model described by config ``c``."""
    arch = "LSTM-FCN" if c.get("arch") == "lstm-fcn" else "LSTM"
    k = c.get("ensemble", 1)
    return (f"{arch} ({c['cell']}{', bidirectional' if c['bidirectional'] else ''}, {c['hidden_size']} hidden"
            f"{', shift-augmented' if c.get('augment') else ''}"
            f"{', per-case z-norm' if c.get('normalize') == 'case' else ''}, validation {c.get('validation_used')}"
            f"{f', ensemble of {k}' if k > 1 else ''}"
            f"{', bfloat16 convolutions' if c.get('precision_used') == 'bfloat16' else ''})")


def run(*, out: str, dataset: str | None = None, csv: str | None = None, ts: str | None = None,
        sequences: str | None = None, text_col: str = "text", label_col: str = "label", id_col: str = "id",
        step_col: str = "step", feature_cols: list | None = None, limit: int | None = None,
        test_size: float = 0.25, resume: bool = False, log=print, baselines: str = "auto", **model_kw) -> dict:
    """Train, compare with the baselines, write results.json + confusion.png + checkpoints into ``out``."""
    start = time.perf_counter()
    seed = model_kw.get("seed", 0)
    d, text = load_source(dataset, csv, ts, sequences, text_col, label_col, id_col, step_col, feature_cols)
    check_baselines(baselines)  # a bad --baselines fails before training
    Xtr, ytr, Xte, yte = split(d, test_size, seed, limit)
    log(f"{d.name}: {len(Xtr)} train / {len(Xte)} test sequences, {len(set(ytr))} classes")
    progress = model_kw.pop("progress", True)
    clf = SequenceClassifier(text=text, verbose=2 if progress else 1, **model_kw)
    _, fit_seconds = timed(clf.fit, Xtr, ytr, ckpt_dir=out, resume=resume, log=log,
                           feature_names=d.info.get("features"))
    if not is_main():  # under torchrun only rank 0 evaluates and writes the report
        return {"task": "classify", "rank": rank()}
    classes = clf.classes_.tolist()
    rows, results = [], {}
    pred, predict_seconds = timed(clf.predict, Xte)
    preds = {model_name(clf.config_): (pred, fit_seconds + predict_seconds)}  # its seconds: fit and predict
    members = [float(np.mean(yte == p)) for p in clf.predict_members(Xte)] if clf.config_.get("ensemble", 1) > 1 \
        else None
    if members:
        log(f"ensemble members' own test accuracies (seeds {seed}..{seed + len(members) - 1}): "
            f"{', '.join(f'{a:.4f}' for a in members)}")
    preds.update(sequence_baselines(Xtr, ytr, Xte, text, seed, baselines, log))
    for name, (yp, seconds) in preds.items():
        results[name] = report(yte, yp, classes)
        rows.append({"model": name, "test accuracy": results[name]["accuracy"], "seconds": round(seconds, 2)})
    lstm_name = next(iter(preds))
    log(format_table(rows, ["model", "test accuracy", "seconds"], "{:.4f}"))
    if len(rows) > 1:
        best_base = max(rows[1:], key=lambda r: r["test accuracy"])
        verdict = "beats" if rows[0]["test accuracy"] > best_base["test accuracy"] else "does NOT beat"
        log(f"the {rows[0]['model'].split(' (')[0]} {verdict} the best baseline ({best_base['model']}: "
            f"{best_base['test accuracy']:.4f})")
    log("per-class (LSTM):")
    log(format_table(results[lstm_name]["per_class"], ["class", "precision", "recall", "support"]))
    plot_confusion(results[lstm_name]["confusion"], classes, os.path.join(out, "confusion.png"),
                   f"{d.name}: {lstm_name}")
    summary = {"task": "classify", "dataset": d.name, "source": d.info.get("source"),
               "n_train": len(Xtr), "n_test": len(Xte), "classes": classes,
               "config": clf.config_, "training": clf.history_, "results": results, "table": rows,
               "member_accuracies": members,
               "checkpoint": os.path.join(out, "model.safetensors"), "seconds": round(time.perf_counter() - start, 1)}
    write_json(os.path.join(out, "results.json"), summary)
    clf.save(os.path.join(out, "model.safetensors"))  # the name every task's model has (best.safetensors: the same)
    log(f"wrote {out}/results.json, confusion.png, model.safetensors (predict with: lstmkit predict --model "
        f"{out}/model.safetensors ...)")
    return summary
