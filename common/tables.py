"""The one reader of CSV and XLSX files, and the one guard on CSV cells we write.

The importers, `churn_train --csv`/`churn_score --csv` and `uplift_csv` all read their files
here, so they accept the same suffixes, encodings and delimiters.

- `read_table`: a whole file, with pandas' type inference (numbers as numbers), for files a
  model is trained on or scored from.
- `read_table_chunks`: chunks of string cells indexed by their line number in the file, for the
  importers (validation wants the text as written and names a bad row by its line).
- `spreadsheet_safe`: cells people open in a spreadsheet (rejects files, CSV exports) with
  formulas neutralised.

A CSV may be gzip-compressed (`.csv.gz`, as public data sets are shipped): every read here
goes through the decompressor, and pandas infers the compression from the suffix.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np
import pandas as pd

EXCEL_SUFFIXES = frozenset({".xlsx", ".xlsm", ".xls"})
DELIMITERS = (",", ";", "\t", "|")
# Byte-order marks, longest first (a UTF-32 LE mark starts with the UTF-16 LE one).
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# 1 MiB blocks: the scan runs at memory speed and holds one block at a time.
SCAN_BLOCK = 1 << 20
_SKIPPED_LINE = re.compile(r"Skipping line (\d+): (.*)")


class TableError(ValueError):
    """The file cannot be read as a table; the message names the file and what is wrong."""


def _open_bytes(path: Path) -> BinaryIO:
    """The file's bytes, decompressed when it is gzip (`.gz`)."""
    if path.suffix.lower() == ".gz":
        return cast(BinaryIO, gzip.open(path, "rb"))
    return path.open("rb")


def is_excel(path: Path) -> bool:
    return path.suffix.lower() in EXCEL_SUFFIXES


@dataclass(frozen=True)
class TextScan:
    """What one pass over a text file's bytes tells before it is parsed."""

    encoding: str
    data_lines: int  # lines after the header (a progress bar's total)
    odd_quotes: bool  # an odd number of '"': maybe a quote left open (checked by parsing)


def scan_text(path: Path) -> TextScan:
    """Encoding (a byte-order mark, else UTF-8 when every byte decodes as UTF-8, else
    Windows-1252, else Latin-1), lines and quote parity, in one pass over the bytes.

    Raises TableError for an empty file."""
    path = _existing(path)
    with _open_bytes(path) as handle:
        head = handle.read(4096)
    encoding = _encoding_from_head(head)
    if encoding.startswith(("utf-16", "utf-32")):
        # Rare (spreadsheets' "Unicode text"): decoded whole rather than scanned byte-wise.
        with _open_bytes(path) as handle:
            text = handle.read().decode(encoding)
        if not text.strip():
            raise TableError(f"{path}: the file is empty")
        return TextScan(encoding, max(text.count("\n") - 1, 0), text.count('"') % 2 == 1)
    lines = quotes = 0
    nonblank = False
    decoder = codecs.getincrementaldecoder("utf-8")() if encoding == "utf-8" else None
    with _open_bytes(path) as handle:
        while block := handle.read(SCAN_BLOCK):
            lines += block.count(b"\n")
            quotes += block.count(b'"')
            nonblank = nonblank or bool(block.strip(codecs.BOM_UTF8 + b" \t\r\n"))
            if decoder is not None:
                try:
                    decoder.decode(block)
                except UnicodeDecodeError:
                    decoder = None
                    encoding = _single_byte_encoding(path)
    if not nonblank:
        raise TableError(f"{path}: the file is empty")
    return TextScan(encoding, max(lines - 1, 0), quotes % 2 == 1)


def _encoding_from_head(head: bytes) -> str:
    for bom, name in BOMS:
        if head.startswith(bom):
            return name
    # UTF-16 without a mark: ASCII text has a NUL in every other byte.
    even, odd = head[0::2], head[1::2]
    if len(head) >= 4 and odd.count(0) > len(odd) * 0.4 and not even.count(0):
        return "utf-16-le"
    if len(head) >= 4 and even.count(0) > len(even) * 0.4 and not odd.count(0):
        return "utf-16-be"
    return "utf-8"


def _single_byte_encoding(path: Path) -> str:
    """Windows-1252 (what spreadsheets save as "CSV" on Windows) when it decodes the file,
    else Latin-1, which decodes any bytes."""
    decoder = codecs.getincrementaldecoder("cp1252")()
    with _open_bytes(path) as handle:
        while block := handle.read(SCAN_BLOCK):
            try:
                decoder.decode(block)
            except UnicodeDecodeError:
                return "latin-1"
    return "cp1252"


def detect_delimiter(path: Path, *, encoding: str | None = None) -> str:
    """The one of ',' ';' tab '|' that splits the header line into the most columns, else runs
    of whitespace (as in CDNOW) when the header has any, else ',' (a one-column file).

    Only the header decides: data rows with a missing or extra field (rejected later, line by
    line) must not change how every other row is split."""
    encoding = encoding or scan_text(path).encoding
    with (
        _open_bytes(path) as raw,
        io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="") as handle,
    ):
        header = handle.readline().lstrip("\ufeff").rstrip("\r\n")
    best, most = ",", 1
    for delimiter in DELIMITERS:
        fields = len(next(csv.reader([header], delimiter=delimiter), []))
        if fields > most:
            best, most = delimiter, fields
    if most == 1 and len(header.split()) > 1:
        return r"\s+"
    return best


def _existing(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise TableError(f"file not found: {path}")
    return path


def read_table(path: Path, *, sheet: str | None = None) -> pd.DataFrame:
    """A whole CSV (encoding and delimiter detected as for the importers) or XLSX sheet,
    types inferred."""
    path = _existing(path)
    try:
        if is_excel(path):
            return pd.read_excel(path, sheet_name=sheet or 0)
        encoding = scan_text(path).encoding
        sep = detect_delimiter(path, encoding=encoding)
        return pd.read_csv(path, sep=sep, encoding=encoding)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TableError(f"{path}: the file is malformed: {exc}") from exc
    except (ValueError, csv.Error) as exc:
        raise TableError(f"{path}: cannot read it as a table: {exc}") from exc


# Called with {line: reason} for the lines of a chunk that could not be split into the
# header's fields (more fields than the header); those lines are left out of the chunk.
OnMalformed = Callable[[dict[int, str]], None]


def read_table_chunks(
    path: Path,
    *,
    delimiter: str | None,
    sheet: str | None,
    chunk_rows: int,
    on_malformed: OnMalformed | None = None,
    scan: TextScan | None = None,
) -> Iterator[pd.DataFrame]:
    """Chunks of string cells indexed by their line number in the file (header = line 1).

    Blank lines are dropped (their line numbers stay unused). A line with more fields than the
    header goes to `on_malformed` (or, without one, makes the file malformed). A file that
    cannot be parsed past some line (a quote left open) raises TableError before the first
    chunk, so a caller writing chunk by chunk writes nothing of it. `scan`: the file's
    `scan_text`, when the caller has it already (one pass over the bytes, not two)."""
    path = _existing(path)
    if is_excel(path):
        frame = pd.read_excel(path, sheet_name=sheet or 0, dtype=str)
        frame.index = pd.RangeIndex(2, len(frame) + 2)
        unsaved = _formulas_without_result(path, sheet, frame)
        if unsaved:
            if on_malformed is None:
                line, reason = next(iter(unsaved.items()))
                raise TableError(f"{path}: line {line}: {reason}")
            on_malformed(unsaved)
            frame = frame.drop(index=list(unsaved))
        for start in range(0, len(frame), chunk_rows):
            yield frame.iloc[start : start + chunk_rows]
        return
    scan = scan or scan_text(path)
    sep = delimiter or detect_delimiter(path, encoding=scan.encoding)
    options = {"sep": sep, "dtype": str, "encoding": scan.encoding, "keep_default_na": False}
    if scan.odd_quotes:
        _check_quotes(path, options, chunk_rows)
    reader = pd.read_csv(
        path,
        **options,  # type: ignore[arg-type]
        skip_blank_lines=False,
        chunksize=chunk_rows,
        on_bad_lines="warn" if on_malformed else "error",
    )
    line = 2
    try:
        while True:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", pd.errors.ParserWarning)
                chunk = next(reader, None)
            malformed = _skipped_lines(caught)
            if malformed and on_malformed is not None:
                on_malformed(malformed)
            if chunk is None:
                return
            chunk.index, line = _line_numbers(line, len(chunk), malformed)
            yield _without_blank_rows(chunk)
    except pd.errors.ParserError as exc:
        raise TableError(f"{path}: the file is malformed: {exc}") from exc


def _formulas_without_result(path: Path, sheet: str | None, frame: pd.DataFrame) -> dict[int, str]:
    """Lines with a formula cell whose result the file does not hold (a workbook written by a
    program, never opened in a spreadsheet): read as blank, it would import as a blank cell."""
    if path.suffix.lower() not in (".xlsx", ".xlsm"):
        return {}
    from openpyxl import load_workbook  # pandas' own XLSX reader, loaded only for XLSX files

    book = load_workbook(path, read_only=True, data_only=False)
    try:
        sheet_ = book[sheet] if sheet else book.worksheets[0]
        unsaved: dict[int, str] = {}
        for row in sheet_.iter_rows(min_row=2):
            for cell in row:
                if getattr(cell, "data_type", None) != "f" or cell.row not in frame.index:
                    continue
                position = int(cell.column) - 1  # type: ignore[arg-type]
                if position < frame.shape[1] and pd.isna(frame.iat[cell.row - 2, position]):
                    formula = str(cell.value)
                    shown = formula if len(formula) <= 40 else formula[:37] + "..."
                    unsaved.setdefault(
                        cell.row,
                        f"{frame.columns[position]}: a formula ({shown}) whose result the file "
                        "does not hold; open and save it in a spreadsheet, or export it as CSV",
                    )
        return unsaved
    finally:
        book.close()


def _check_quotes(path: Path, options: dict[str, object], chunk_rows: int) -> None:
    """Parse the whole file once, keeping nothing: a quote left open swallows every line after
    it, so the file is refused as a whole before anything is imported (a quote inside an
    unquoted field, as in `5" screen`, is fine and also makes the count odd)."""
    try:
        for _chunk in pd.read_csv(
            path,
            **options,  # type: ignore[arg-type]
            usecols=[0],
            chunksize=chunk_rows,
            on_bad_lines="skip",
        ):
            pass
    except pd.errors.ParserError as exc:
        raise TableError(
            f"{path}: the file is malformed (nothing was imported): {exc}; "
            'a field opens a quote (") that is never closed'
        ) from exc


def _skipped_lines(caught: list[warnings.WarningMessage]) -> dict[int, str]:
    malformed: dict[int, str] = {}
    for warning in caught:
        for number, reason in _SKIPPED_LINE.findall(str(warning.message)):
            malformed[int(number)] = f"malformed line: {reason.strip()} (check the delimiter)"
    return malformed


def _line_numbers(first: int, rows: int, skipped: dict[int, str]) -> tuple[pd.Index, int]:
    """The file lines of a chunk's rows (from `first`, skipping the malformed lines), and the
    line the next chunk starts at."""
    if not skipped:
        return pd.RangeIndex(first, first + rows), first + rows
    candidates = np.arange(first, first + rows + len(skipped))
    kept = candidates[~np.isin(candidates, list(skipped))][:rows]
    return pd.Index(kept), int(max(kept[-1] if rows else first - 1, max(skipped))) + 1


def _without_blank_rows(chunk: pd.DataFrame) -> pd.DataFrame:
    # A blank line is all empty cells; most rows fail the first column's test already.
    blank = chunk.iloc[:, 0] == ""
    for position in range(1, chunk.shape[1]):
        if not blank.any():
            break
        blank &= chunk.iloc[:, position] == ""
    return chunk[~blank] if blank.any() else chunk


# OWASP "CSV injection": a cell starting with one of these is run as a formula by Excel,
# LibreOffice and Google Sheets. Plain numbers ("-4", "+33 6 12 34 56 78") stay as they are.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?[\d\s.,]+$")


def spreadsheet_safe_text(value: object) -> object:
    """`value` with a leading ' when a spreadsheet would read it as a formula."""
    if (
        isinstance(value, str)
        and value.startswith(_FORMULA_START)
        and not _PLAIN_NUMBER.match(value)
    ):
        return "'" + value
    return value


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose text cells cannot run as spreadsheet formulas (numbers, dates
    and booleans are left alone: they never start a formula)."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
            out[column] = values.map(spreadsheet_safe_text, na_action="ignore")
    return out
