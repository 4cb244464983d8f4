"""`manage.py uplift_csv`: uplift of a treated-vs-control file, checked on Hillstrom."""

from __future__ import annotations

import json
import os
from io import StringIO
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

HILLSTROM_FILE = "Kevin_Hillstrom_MineThatData_E-MailAnalytics_DataMiningChallenge_2008.03.20.csv"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _hillstrom_path() -> Path:
    candidates = [
        Path(os.environ["HILLSTROM_CSV"]) if os.environ.get("HILLSTROM_CSV") else None,
        REPO_ROOT.parent / "shared" / "data" / HILLSTROM_FILE,
        REPO_ROOT / "demo" / "data" / HILLSTROM_FILE,
    ]
    for path in candidates:
        if path is not None and path.is_file():
            return path
    pytest.skip(f"{HILLSTROM_FILE} not found (set HILLSTROM_CSV); see shared/data/SOURCES.md §4")


def _run(*args: str) -> str:
    out = StringIO()
    call_command("uplift_csv", *args, stdout=out)
    return out.getvalue()


def _run_json(path: Path | str, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(_run(str(path), *args, "--json"))
    return result


def _hillstrom_args(treatment: str, outcome: str) -> list[str]:
    return [
        "--arm-column",
        "segment",
        "--treatment",
        treatment,
        "--control",
        "No E-Mail",
        "--outcome",
        outcome,
        "--interval",
        "normal",
    ]


@pytest.mark.parametrize(
    ("treatment", "outcome", "expected"),
    [
        # shared/data/SOURCES.md section 4: treated, control, difference, CI low, CI high
        ("Mens E-Mail", "visit", (0.182757, 0.106167, 0.076590, 0.069953, 0.083226)),
        ("Womens E-Mail", "conversion", (0.008837, 0.005726, 0.003111, 0.001499, 0.004724)),
        ("Womens E-Mail", "spend", (1.077202, 0.652789, 0.424412, 0.168960, 0.679865)),
    ],
)
def test_json_output_reproduces_hillstrom_reference_table(
    treatment: str, outcome: str, expected: tuple[float, ...]
) -> None:
    payload = _run_json(_hillstrom_path(), *_hillstrom_args(treatment, outcome))
    assert set(payload) == {
        "treatment",
        "control",
        "difference",
        "ci_low",
        "ci_high",
        "p_value",
        "relative_lift",
        "method",
    }
    assert set(payload["treatment"]) == set(payload["control"]) == {"n", "mean"}
    assert payload["control"]["n"] == 21306
    got = (
        payload["treatment"]["mean"],
        payload["control"]["mean"],
        payload["difference"],
        payload["ci_low"],
        payload["ci_high"],
    )
    assert [round(value, 4) for value in got] == [round(value, 4) for value in expected]
    assert payload["p_value"] < 0.01
    expected_method = "Welch difference in means" if outcome == "spend" else "proportions"
    assert expected_method in payload["method"]


def test_text_report_shows_arms_difference_p_value_and_lift() -> None:
    args = _hillstrom_args("Mens E-Mail", "visit")[:-2]  # default interval: Newcombe
    report = _run(str(_hillstrom_path()), *args)
    assert "n=   21,307" in report and "rate=0.182757" in report
    assert "difference +0.076590" in report
    assert "p-value" in report and "relative lift +72.14%" in report
    assert "Newcombe" in report


def test_reads_semicolon_csv_and_xlsx(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"group": ["T", "C"] * 30, "retained": [1, 0, 1, 1, 0, 0] * 10, "x": range(60)}
    )
    semicolon = tmp_path / "small.csv"
    frame.to_csv(semicolon, sep=";", index=False)
    workbook = tmp_path / "small.xlsx"
    frame.to_excel(workbook, index=False)
    args = ["--arm-column", "group", "--treatment", "T", "--control", "C", "--outcome", "retained"]
    from_csv = _run_json(semicolon, *args)
    from_xlsx = _run_json(workbook, *args)
    assert from_csv == from_xlsx
    assert from_csv["treatment"]["n"] == 30 and from_csv["control"]["n"] == 30


def test_missing_column_is_named_with_available_columns() -> None:
    args = _hillstrom_args("Mens E-Mail", "visits")
    with pytest.raises(CommandError, match=r"'visits'.*available: recency, .*spend"):
        _run(str(_hillstrom_path()), *args)


def test_unknown_arm_value_lists_values_found() -> None:
    args = _hillstrom_args("Men", "visit")
    with pytest.raises(CommandError, match=r"'Men' not found.*'Mens E-Mail', 'No E-Mail'"):
        _run(str(_hillstrom_path()), *args)


def test_non_numeric_outcome_is_refused() -> None:
    args = _hillstrom_args("Mens E-Mail", "channel")
    with pytest.raises(CommandError, match="not numeric"):
        _run(str(_hillstrom_path()), *args)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    args = _hillstrom_args("Mens E-Mail", "visit")
    with pytest.raises(CommandError, match="file not found"):
        _run(str(tmp_path / "absent.csv"), *args)
