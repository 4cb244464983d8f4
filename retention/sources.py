"""The sources file of `retention_cycle`, read once into a frozen `Sources`.

A sources file is JSON; every entry is optional:

    {"imports": [{"kind": "orders", "path": "data/orders.csv", "map": {...}, ...}],
                                               # keys: kind, path, map, date_format, delimiter,
                                               # sheet, create_customers, currency (orders),
                                               # guest_orders (reject|skip, line files)
     "campaigns": "campaigns.json",            # a campaigns file seeded when none exist
     "scoring": {"as_of": "1998-07-01", "train": {...}, "retrain": "if_none"},
     "uplift": {...},                          # options of the uplift stage
     "demo": {"contacts": {"seed": 11, "sms_share": 0.5},  # synthetic contacts (demo/contacts.py)
              "simulate": {"seed": 7, "truth": "tiers"},  # the simulator (demo/simulate.py)
              "dispatch_time": "09:00",  # the demo dispatches on its as-of date (demo/cycle.py)
              "second_cycle": {"budget": "1200"}}}  # the uplift-policy cycle (demo/cycle.py)

Relative paths are relative to the sources file. `sources_load` resolves the file (the
`--sources` option, else the RETENTION_SOURCES setting, else none) and checks it, so every
stage reads typed values instead of parsing the file again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from django.conf import settings

IMPORT_KINDS = ("customers", "orders", "events")
IMPORT_KEYS = frozenset(
    {
        "kind",
        "path",
        "map",
        "date_format",
        "delimiter",
        "sheet",
        "create_customers",
        "currency",
        "guest_orders",
    }
)
GUEST_ORDERS = ("reject", "skip")


class SourcesError(ValueError):
    """The sources file cannot be used; the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class ImportSource:
    """One file of the import stage, with the options of the import commands."""

    kind: str
    path: Path
    map: dict[str, str] | None = None
    date_format: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    create_customers: bool = False
    # Orders only: the currency when the file names none, and what to do with guest lines.
    currency: str | None = None
    guest_orders: str = "reject"


@dataclass(frozen=True)
class Sources:
    path: Path | None = None
    imports: tuple[ImportSource, ...] = ()
    # The campaigns file's content (the "campaigns" entry names it), or None.
    campaigns: dict[str, Any] | None = None
    # The "scoring", "uplift" and "demo" entries as written (read-only views).
    scoring: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    uplift: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    demo: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def as_of(self) -> datetime | None:
        """The cycle's date: the scoring entry's `as_of` (midnight UTC), if the file sets one."""
        value = self.scoring.get("as_of")
        if not value:
            return None
        moment = datetime.fromisoformat(str(value))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def sources_path(explicit: Path | None = None) -> Path | None:
    """The sources file in effect: `explicit` (--sources), else RETENTION_SOURCES, else none."""
    if explicit is not None:
        return Path(explicit)
    return Path(settings.RETENTION_SOURCES) if settings.RETENTION_SOURCES else None


def sources_load(explicit: Path | None = None) -> Sources:
    """Read and check the sources file in effect; an empty `Sources` when there is none."""
    path = sources_path(explicit)
    if path is None:
        return Sources()
    spec = _read_json(path, path)
    if not isinstance(spec, dict):
        raise SourcesError(f"sources file {path}: expected a JSON object")
    imports = spec.get("imports", [])
    if not isinstance(imports, list):
        raise SourcesError(f"sources file {path}: expected an 'imports' list")
    campaigns = None
    if spec.get("campaigns"):
        campaigns = _read_json(path.parent / spec["campaigns"], path)
    return Sources(
        path=path,
        imports=tuple(_import_source(path, index, item) for index, item in enumerate(imports)),
        campaigns=campaigns,
        scoring=_entry(spec, "scoring", path),
        uplift=_entry(spec, "uplift", path),
        demo=_entry(spec, "demo", path),
    )


def _read_json(path: Path, sources: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        where = "" if path == sources else f" (named by {sources})"
        raise SourcesError(f"sources file {path}{where}: {exc}") from exc


def _entry(spec: dict[str, Any], name: str, path: Path) -> MappingProxyType[str, Any]:
    value = spec.get(name) or {}
    if not isinstance(value, dict):
        raise SourcesError(f"sources file {path}: '{name}' must be an object")
    return MappingProxyType(value)


def _import_source(path: Path, index: int, item: Any) -> ImportSource:
    if not isinstance(item, dict):
        raise SourcesError(f"sources file {path}: import #{index} must be an object")
    unknown = set(item) - IMPORT_KEYS
    if unknown or not {"kind", "path"} <= set(item):
        raise SourcesError(
            f"sources file {path}: import #{index} needs kind and path and accepts only "
            f"{', '.join(sorted(IMPORT_KEYS))} (got {', '.join(sorted(item))})"
        )
    if item["kind"] not in IMPORT_KINDS:
        raise SourcesError(
            f"sources file {path}: import #{index}: unknown kind {item['kind']} "
            f"(expected one of {', '.join(IMPORT_KINDS)})"
        )
    if item.get("guest_orders", "reject") not in GUEST_ORDERS:
        raise SourcesError(
            f"sources file {path}: import #{index}: guest_orders is {item['guest_orders']!r} "
            f"(expected one of {', '.join(GUEST_ORDERS)})"
        )
    return ImportSource(**{**item, "path": (path.parent / item["path"]).resolve()})
