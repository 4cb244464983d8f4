"""The one CSV/XLSX reader: delimiters, line numbers, blank lines, spreadsheets, bad files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from common.tables import (
    TableError,
    detect_delimiter,
    read_table,
    read_table_chunks,
    scan_text,
    spreadsheet_safe,
)


def _chunks(path: Path, **options: object) -> list[pd.DataFrame]:
    defaults: dict[str, object] = {"delimiter": None, "sheet": None, "chunk_rows": 2}
    return list(read_table_chunks(path, **{**defaults, **options}))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a,b\n1,2\n", ","), ("a;b\n1;2\n", ";"), ("a\tb\n1\t2\n", "\t"), ("a  b\n1   2\n", r"\s+")],
)
def test_the_delimiter_is_detected(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text)
    assert detect_delimiter(path) == expected


def test_chunks_keep_text_and_name_rows_by_file_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,amount\n007,1.50\n\n8,\n9,3\n")
    chunks = _chunks(path)
    frame = pd.concat(chunks)
    assert list(frame.index) == [2, 4, 5]  # the blank line 3 is dropped, numbers kept
    assert frame.loc[2, "id"] == "007" and frame.loc[4, "amount"] == ""


def test_whitespace_separated_files_are_read(tmp_path: Path) -> None:
    path = tmp_path / "cdnow.txt"
    path.write_text("customer date value\n00001   19970101   11.77\n")
    frame = pd.concat(_chunks(path))
    assert frame.loc[2].tolist() == ["00001", "19970101", "11.77"]


def test_spreadsheets_read_like_csv(tmp_path: Path) -> None:
    path = tmp_path / "t.xlsx"
    pd.DataFrame({"id": ["a", "b", "c"], "n": [1, 2, 3]}).to_excel(path, index=False)
    chunks = _chunks(path)
    assert [len(c) for c in chunks] == [2, 1]
    assert list(pd.concat(chunks).index) == [2, 3, 4]
    assert read_table(path)["n"].tolist() == [1, 2, 3]


def test_a_whole_table_infers_numbers(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id;score\nx;0.5\ny;2\n")
    frame = read_table(path)
    assert frame["score"].dtype.kind == "f" and frame["id"].tolist() == ["x", "y"]


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="file not found"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(TableError, match="file not found"):
        _chunks(tmp_path / "nope.csv")


def test_a_malformed_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('a,b\n1,2\n3,"4\n')  # an unclosed quote
    with pytest.raises(TableError, match="malformed"):
        _chunks(path)


def test_the_header_alone_decides_the_delimiter(tmp_path: Path) -> None:
    """Issue 12, point 13: rows with a missing or extra field made sniffing fall back to
    whitespace ("no column for external_id")."""
    path = tmp_path / "t.csv"
    path.write_text("id,name,plan\nc1,Ann\nc2,Bob,gold,extra,more\nc3,Cy,free\n")
    assert detect_delimiter(path) == ","
    path.write_text('"id;x";name;plan\n1;2\n')  # a quoted delimiter does not count
    assert detect_delimiter(path) == ";"
    path.write_text("id\n1\n")
    assert detect_delimiter(path) == ","


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("latin-1", "cp1252"),
        ("cp1252", "cp1252"),
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("utf-16", "utf-16"),
        ("utf-16-le", "utf-16-le"),
        ("utf-16-be", "utf-16-be"),
    ],
)
def test_latin_1_and_utf_16_files_are_read(tmp_path: Path, encoding: str, expected: str) -> None:
    path = tmp_path / "t.csv"
    text = "id;name\nc1;Zoë Ærøskøbing\nc2;Ñandú\n"
    path.write_bytes(text.encode(encoding))
    assert scan_text(path).encoding == expected
    frame = pd.concat(_chunks(path))
    assert frame["name"].tolist() == ["Zoë Ærøskøbing", "Ñandú"]
    assert list(frame.index) == [2, 3]


def test_bytes_windows_1252_leaves_undefined_are_read_as_latin_1(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"id,name\nc1,caf\xe9\x81\n")  # 0x81 is undefined in Windows-1252
    assert scan_text(path).encoding == "latin-1"
    assert pd.concat(_chunks(path)).loc[2, "name"] == "caf\xe9\x81"


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf", "\n".encode("utf-16")])
def test_an_empty_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(TableError, match="the file is empty"):
        _chunks(path)


def test_lines_with_extra_fields_are_reported_and_the_others_keep_their_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n3,4,5\n6,7\n8,9,10,11\n12,13\n")
    malformed: dict[int, str] = {}
    frame = pd.concat(_chunks(path, on_malformed=malformed.update))
    assert frame["a"].to_dict() == {2: "1", 4: "6", 6: "12"}
    assert malformed == {
        3: "malformed line: expected 2 fields, saw 3 (check the delimiter)",
        5: "malformed line: expected 2 fields, saw 4 (check the delimiter)",
    }
    with pytest.raises(TableError, match="malformed"):
        _chunks(path)  # without a receiver, a malformed line is the file's error


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("\tx", "'\tx"),
        ("\r=1", "'\r=1"),
        ("-4.50", "-4.50"),
        ("+33 6 12 34 56 78", "+33 6 12 34 56 78"),
        ("a=b", "a=b"),
    ],
)
def test_spreadsheet_formulas_are_neutralised(cell: str, written: str) -> None:
    frame = pd.DataFrame({"text": [cell, None], "n": [-1, 2]})
    safe = spreadsheet_safe(frame)
    assert safe.loc[0, "text"] == written and pd.isna(safe.loc[1, "text"])
    assert safe["n"].tolist() == [-1, 2]


def test_a_formula_without_a_saved_result_is_a_malformed_line_not_a_blank(tmp_path: Path) -> None:
    """Issue 12, point 13: a workbook written by a program holds formulas, not their results;
    they were read as blank cells. A formula whose result was saved is read as its value."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in (["id", "amount"], ["a", 5], ["b", "=2*3"], ["c", 7]):
        sheet.append(row)
    path = tmp_path / "t.xlsx"
    book.save(path)
    malformed: dict[int, str] = {}
    frame = pd.concat(_chunks(path, on_malformed=malformed.update))
    assert frame["id"].to_dict() == {2: "a", 4: "c"}
    assert list(malformed) == [3]
    assert malformed[3].startswith("amount: a formula (=2*3) whose result the file does not hold")
    with pytest.raises(TableError, match="line 3: amount: a formula"):
        _chunks(path)
    pd.DataFrame({"id": ["x"], "n": [1]}).to_excel(path, index=False)  # values only
    assert pd.concat(_chunks(path))["n"].tolist() == ["1"]
