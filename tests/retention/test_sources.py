"""The sources file is read once into a typed object; a bad one is a clear error that names
the file and the entry."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from retention.sources import Sources, SourcesError, sources_load

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, spec: Any) -> Path:
    path = tmp_path / "sources.json"
    path.write_text(json.dumps(spec))
    return path


def test_the_telco_example_sources_file_is_read_into_typed_values() -> None:
    sources = sources_load(REPO / "demo" / "telco.json")
    kinds = [item.kind for item in sources.imports]
    assert kinds == ["customers", "customers", "orders", "customers"]
    orders = sources.imports[2]
    assert orders.path == (REPO / "demo" / "data" / "CDNOW_master.txt").resolve()
    assert orders.create_customers and orders.date_format == "%Y%m%d"
    assert sources.campaigns is not None and sources.campaigns["campaigns"][0]["name"]
    assert sources.as_of == datetime(1998, 7, 1, tzinfo=UTC)
    assert sources.scoring["train"]["horizon_days"] == 180


def test_no_file_means_empty_sources(settings: Any) -> None:
    settings.RETENTION_SOURCES = ""
    assert sources_load(None) == Sources()


def test_the_setting_names_the_file_when_no_option_does(settings: Any, tmp_path: Path) -> None:
    settings.RETENTION_SOURCES = str(_write(tmp_path, {"scoring": {"as_of": "2024-01-31"}}))
    assert sources_load(None).as_of == datetime(2024, 1, 31, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"imports": {"kind": "orders"}}, "expected an 'imports' list"),
        ({"imports": [{"kind": "orders"}]}, "import #0 needs kind and path"),
        ({"imports": [{"kind": "refunds", "path": "x"}]}, "unknown kind refunds"),
        ({"imports": [{"kind": "orders", "path": "x", "sep": ","}]}, "accepts only"),
        ({"scoring": "1998-07-01"}, "'scoring' must be an object"),
        (
            {"imports": [{"kind": "orders", "path": "x", "guest_orders": "drop"}]},
            "guest_orders is 'drop'",
        ),
        ({"campaigns": "missing.json"}, "missing.json (named by"),
    ],
)
def test_a_bad_sources_file_names_the_entry(tmp_path: Path, spec: Any, message: str) -> None:
    with pytest.raises(SourcesError, match=message.replace("(", r"\(")):
        sources_load(_write(tmp_path, spec))


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "sources.json"
    path.write_text("{not json")
    with pytest.raises(SourcesError, match=r"sources file .*sources\.json"):
        sources_load(path)
