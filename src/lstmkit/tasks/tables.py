"""The user's tables: CSV or Parquet read by content, and columns checked by name."""
from __future__ import annotations

from .._optional import require


def read_table(path: str, flag: str = "--csv", text: bool = False):
    """A CSV or Parquet file as a DataFrame. Parquet is recognised by its first bytes (PAR1) whatever the file
    is called; it needs pyarrow (the ``tasks`` extra). ``text``: a CSV's cells stay strings as written, so
    words pandas would read as missing ("NA", "null", "None", "nan") stay texts and labels; an empty cell is "".
    """
    from ..io.files import check_regular

    pd = require("pandas", "tasks")
    check_regular(path, "CSV or Parquet file", flag)  # a FIFO would block the read below
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        require("pyarrow", "tasks")
        return pd.read_parquet(path)
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False) if text else pd.read_csv(path)
    except UnicodeDecodeError as e:
        raise ValueError(f"{flag} {path}: not a UTF-8 CSV file (nor a Parquet file): {e.reason} at byte "
                         f"{e.start}") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{flag} {path}: the file is empty") from None
    except pd.errors.ParserError as e:
        raise ValueError(f"{flag} {path}: not a well-formed CSV file: {e}") from None


def need_columns(df, cols: list, path: str, flags: str = "--id-col/--step-col/--label-col/--feature-cols",
                 hint: str | None = None) -> None:
    """A ValueError naming the file, the missing columns, the ones present and the flags that name them (or
    ``hint`` in their place, where no flag names them)."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: no column(s) {', '.join(map(repr, missing))} (columns: "
                         f"{', '.join(map(str, df.columns))}); {hint or f'name them with {flags}'}")
