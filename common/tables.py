"""The one reader of CSV and XLSX files: the importers, `churn_train --csv`/`churn_score --csv`
and `uplift_csv` all read their files here, so they accept the same suffixes and delimiters.

- `read_table`: a whole file, with pandas' type inference (numbers as numbers), for files a
  model is trained on or scored from.
- `read_table_chunks`: chunks of string cells indexed by their line number in the file, for the
  importers (validation wants the text as written and names a bad row by its line).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

EXCEL_SUFFIXES = frozenset({".xlsx", ".xlsm", ".xls"})


class TableError(ValueError):
    """The file cannot be read as a table; the message names the file and what is wrong."""


def is_excel(path: Path) -> bool:
    return path.suffix.lower() in EXCEL_SUFFIXES


def detect_delimiter(path: Path) -> str:
    """',' ';' tab or '|' when the header uses one, else runs of whitespace (as in CDNOW)."""
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        sample = "".join(handle.readline() for _ in range(5))
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return r"\s+"


def count_data_lines(path: Path) -> int:
    """Lines after the header (for a progress bar's total), counted without parsing."""
    lines = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
    return max(lines - 1, 0)


def _existing(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise TableError(f"file not found: {path}")
    return path


def read_table(path: Path, *, sheet: str | None = None) -> pd.DataFrame:
    """A whole CSV (delimiter sniffed by Python's csv module) or XLSX sheet, types inferred."""
    path = _existing(path)
    try:
        if is_excel(path):
            return pd.read_excel(path, sheet_name=sheet or 0)
        return pd.read_csv(path, sep=None, engine="python")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TableError(f"{path}: the file is malformed: {exc}") from exc
    except (ValueError, csv.Error) as exc:
        raise TableError(f"{path}: cannot read it as a table: {exc}") from exc


def read_table_chunks(
    path: Path, *, delimiter: str | None, sheet: str | None, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    """Chunks of string cells indexed by their line number in the file (header = line 1).

    Blank lines are dropped (their line numbers stay unused)."""
    path = _existing(path)
    if is_excel(path):
        frame = pd.read_excel(path, sheet_name=sheet or 0, dtype=str)
        frame.index = pd.RangeIndex(2, len(frame) + 2)
        for start in range(0, len(frame), chunk_rows):
            yield frame.iloc[start : start + chunk_rows]
        return
    sep = delimiter or detect_delimiter(path)
    reader = pd.read_csv(
        path,
        sep=sep,
        dtype=str,
        keep_default_na=False,
        skip_blank_lines=False,
        chunksize=chunk_rows,
        encoding="utf-8-sig",
    )
    line = 2
    try:
        for chunk in reader:
            chunk.index = pd.RangeIndex(line, line + len(chunk))
            line += len(chunk)
            # A blank line is all empty cells; most rows fail the first column's test already.
            blank = chunk.iloc[:, 0] == ""
            for position in range(1, chunk.shape[1]):
                if not blank.any():
                    break
                blank &= chunk.iloc[:, position] == ""
            yield chunk[~blank] if blank.any() else chunk
    except pd.errors.ParserError as exc:
        raise TableError(f"{path}: the file is malformed: {exc}") from exc
