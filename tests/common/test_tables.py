"""The one CSV/XLSX reader: delimiters, line numbers, blank lines, spreadsheets, bad files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from common.tables import TableError, detect_delimiter, read_table, read_table_chunks


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
