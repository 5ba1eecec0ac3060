"""Classification data, loaded from installed packages or the user's files (nothing is downloaded): a list of
(T_i, C) float32 sequences and their labels (``SequenceData``). Bundled: scikit-learn's digits, UEA
JapaneseVowels, every UCR/UEA classification set aeon ships; files: aeon's .ts, long-format numeric
CSV/Parquet, a text CSV.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..._optional import require
from ..tables import need_columns, read_table


@dataclass
class SequenceData:
    """Sequences X[i] (T_i, F) float32 with labels y (N,) (str); ``test`` holds the official test split
    when the set has one (else None and the caller splits)."""

    name: str
    X: list
    y: np.ndarray
    test: "SequenceData | None" = None
    info: dict = field(default_factory=dict)


CLASSIFY_SETS = ("digits", "japanese-vowels")


def load_digits() -> SequenceData:
    """scikit-learn's 8x8 digits read row by row: 1797 sequences of 8 steps x 8 features in [0, 1]."""
    datasets = require("sklearn.datasets", "tasks")
    d = datasets.load_digits()
    X = (d.images.astype(np.float32) / 16.0)  # (N, 8, 8): time = image row
    return SequenceData("digits", list(X), d.target.astype(str), info={"source": "sklearn.datasets.load_digits"})


def load_japanese_vowels() -> SequenceData:
    """UEA JapaneseVowels (bundled with aeon): 12 LPC cepstrum coefficients, 7-29 steps, 9 speakers;
    the archive's split, 270 train / 370 test."""
    aeon = require("aeon.datasets", "tasks")

    def part(split):
        X, y = aeon.load_classification("JapaneseVowels", split=split)
        return aeon_cases(X), np.asarray(y).astype(str)

    Xtr, ytr = part("train")
    Xte, yte = part("test")
    test = SequenceData("japanese-vowels", Xte, yte)
    return SequenceData("japanese-vowels", Xtr, ytr, test=test, info={"source": "aeon.datasets (UEA archive)"})


def _aeon_data_dir() -> str:
    """aeon's bundled data folder, found without importing aeon (which takes seconds: the CLI lists the sets in
    its help)."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("aeon is needed here: pip install 'lstmkit[tasks]'")
    return os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")


def _is_classification_ts(path: str) -> bool:
    """True when a .ts file's header (the lines before @data) declares class labels."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            low = line.strip().lower()
            if low.startswith("@data"):
                return False
            if low.startswith("@classlabel"):
                return low.split()[1:2] == ["true"]
    return False


def aeon_bundled_sets() -> dict:
    """{lower-case name: name} of the UCR/UEA classification sets aeon ships inside its package (a train and a
    test .ts file each, class labels declared): read from disk, never downloaded."""
    import os

    root = _aeon_data_dir()
    out = {}
    for name in sorted(os.listdir(root)):
        train, test = (os.path.join(root, name, f"{name}_{s}.ts") for s in ("TRAIN", "TEST"))
        if os.path.isfile(train) and os.path.isfile(test) and _is_classification_ts(train):
            out[name.lower()] = name
    return out


def aeon_cases(X) -> list:
    """aeon's cases, a 3-D (N, C, T) array or a list of (C, T_i) arrays, as a list of (T_i, C) float32;
    steps that are NaN in every channel (aeon's padding of unequal lengths) are dropped."""
    seqs = [np.asarray(x, np.float32).T for x in X]  # aeon's (C, T) -> lstmkit's (T, C)
    return [s[~np.isnan(s).all(axis=1)] for s in seqs]


def load_ts(path: str, name: str | None = None, with_test: bool = True) -> SequenceData:
    """A classification .ts file (aeon's/the UCR-UEA archive's format). A file named ``*_TRAIN.ts`` with a
    ``*_TEST.ts`` beside it brings that file as the test split (unless ``with_test`` is False)."""
    import os

    from ...io.files import check_regular

    aeon = require("aeon.datasets", "tasks")
    check_regular(path, ".ts file", "--ts")  # a FIFO would block the header's read below
    if not _is_classification_ts(path):
        raise ValueError(f"--ts {path}: the header does not declare class labels (@classLabel true)")

    def part(p):
        X, y = aeon.load_from_ts_file(p)
        return aeon_cases(X), np.asarray(y)

    X, y = part(path)
    name = name or os.path.basename(path).removesuffix(".ts").removesuffix("_TRAIN")
    test_path = path[:-len("_TRAIN.ts")] + "_TEST.ts" if path.endswith("_TRAIN.ts") else None
    test = None
    if with_test and test_path and os.path.isfile(test_path):
        test = SequenceData(name, *part(test_path))
    return SequenceData(name, X, y, test=test, info={"source": path})


def load_classify(name: str) -> SequenceData:
    """digits, japanese-vowels, or any UCR/UEA set bundled with aeon (``aeon_bundled_sets``), by name in any
    case."""
    if name == "digits":
        return load_digits()
    if name.lower() in ("japanese-vowels", "japanesevowels"):
        return load_japanese_vowels()
    bundled = aeon_bundled_sets()
    if name.lower() in bundled:
        import os

        proper = bundled[name.lower()]
        d = load_ts(os.path.join(_aeon_data_dir(), proper, f"{proper}_TRAIN.ts"), name=proper)
        d.info["source"] = "aeon.datasets (bundled UCR/UEA archive files)"
        return d
    raise ValueError(f"--dataset: unknown classification set {name!r}; choose from "
                     f"{', '.join(CLASSIFY_SETS + tuple(bundled.values()))}")


def long_sequences(df, path: str, id_col: str, step_col: str, feature_cols: list | None,
                   label_col: str | None) -> tuple[list, list, np.ndarray | None, list]:
    """Long format (one row per case and step) -> (ids, X list of (T_i, F) float32 in step order,
    labels (N,) or None, feature names). ``feature_cols`` None: every column but id, step and label. Refused,
    naming the column or case: a missing or non-numeric column, NaN, a repeated step, a label that changes
    within a case."""
    pd = require("pandas", "tasks")
    keys = [id_col, step_col] + ([label_col] if label_col else [])
    need_columns(df, keys + list(feature_cols or []), path)
    features = list(feature_cols) if feature_cols else [c for c in df.columns if c not in keys]
    if not features:
        raise ValueError(f"{path}: no feature columns beside {', '.join(keys)}")
    for c in features + [step_col]:
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise ValueError(f"{path}: column {c!r} is not numeric ({df[c].dtype}); a feature or step column "
                             "must hold numbers")
    bad = df[features].isna().any(axis=1)
    if bad.any():
        row = df[bad].iloc[0]
        raise ValueError(f"{path}: missing values in case {row[id_col]!r} at step {row[step_col]} (and "
                         f"{int(bad.sum()) - 1} more rows); fill or drop them first")
    dup = df.duplicated([id_col, step_col])
    if dup.any():
        row = df[dup].iloc[0]
        raise ValueError(f"{path}: case {row[id_col]!r} has step {row[step_col]} more than once")
    ids, X, labels = [], [], []
    for key, g in df.groupby(id_col, sort=False):
        g = g.sort_values(step_col)
        ids.append(key)
        X.append(g[features].to_numpy(np.float32))  # (T_i, F)
        if label_col:
            values = g[label_col].unique()
            if len(values) != 1:
                raise ValueError(f"{path}: case {key!r} has {len(values)} labels in {label_col!r} "
                                 f"({', '.join(map(str, values[:3]))}); one label per case")
            labels.append(values[0])
    return ids, X, (np.asarray(labels) if label_col else None), features


def load_long_sequences(path: str, id_col: str = "id", step_col: str = "step", label_col: str = "label",
                        feature_cols: list | None = None) -> SequenceData:
    """A user's long-format CSV/Parquet of numeric sequences (see ``long_sequences``) as SequenceData;
    ``info['features']`` holds the feature column names in order."""
    import os

    df = read_table(path, "--sequences")
    _, X, y, features = long_sequences(df, path, id_col, step_col, feature_cols, label_col)
    return SequenceData(os.path.basename(path), X, y, info={"source": path, "features": features})


def load_text_csv(path: str, text_col: str = "text", label_col: str = "label"):
    """A user's CSV (or Parquet) of text,label -> (texts list[str], labels ndarray[str]). Cells are read as
    written ("NA" is a label, not a missing one); an empty one is refused, naming its rows."""
    df = read_table(path, "--csv", text=True)
    need_columns(df, [text_col, label_col], path, "--text-col/--label-col")
    texts = text_column(df, text_col, path, "--text-col")
    return texts, np.asarray(text_column(df, label_col, path, "--label-col"))


def text_column(df, col: str, path: str, flag: str) -> list[str]:
    """A column of strings; ValueError naming the file, the column and the rows where a cell is empty (or null
    in a Parquet file): every case needs a text and a label, and dropping those rows would lose them silently."""
    values = df[col].tolist()  # strings from a CSV read with text=True; a Parquet column's own values
    empty = [k for k, v in enumerate(values) if v is None or v == "" or (isinstance(v, float) and v != v)]
    if empty:
        rows = ", ".join(str(k + 1) for k in empty[:5]) + (", ..." if len(empty) > 5 else "")
        raise ValueError(f"{path}: column {col!r} ({flag}) is empty in {len(empty)} row(s) (data rows {rows}; "
                         "1 is the first after the header); give every row a value, or remove the rows")
    return [str(v) for v in values]
