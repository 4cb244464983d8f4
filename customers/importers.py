"""File import of customers, orders and events (CSV with any delimiter, or XLSX).

Reads in chunks, validates each chunk at once (customers.validation), resolves customers,
and writes each chunk in one transaction through customers.services. Bad rows are reported
with line, column and reason and written to a rejects file; `strict` rejects the whole file.

A bad line never stops a non-strict import half-way: a line with more fields than the header
and a value out of its column's range (an amount of 1e15) are rejects like any other, and the
valid rows around them are imported. A file that cannot be parsed at all (a quote never
closed, an empty file) is refused by common.tables before its first chunk is written.

Rejects files and messages carry no personal data unless asked (`rejects_full_rows`): the
columns mapped to name, email and phone are left out of the rejected rows, and reasons about
those fields do not quote the value.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import DatabaseError, transaction
from tqdm import tqdm

from common.db.bulk import UpsertCounts
from common.tables import (
    TableError,
    TextScan,
    is_excel,
    read_table_chunks,
    scan_text,
    spreadsheet_safe,
)
from customers import services
from customers.validation import (
    SPECS,
    MappingError,
    RecordSpec,
    ValidationResult,
    derive_keys,
    join_reasons,
    map_columns,
    validate_records,
)

# 50,000 rows per chunk: large enough that COPY and the upsert dominate per-chunk overhead,
# small enough that a chunk's frames stay well under 100 MB and one transaction stays short.
CHUNK_ROWS = 50_000

# Fields whose values identify a person: kept out of rejects files and reasons by default.
# Extra columns (attributes) are the file's own and are kept: name them with --map to hide one.
PERSONAL_FIELDS = frozenset({"name", "email", "phone"})


class ImportError_(Exception):
    """The file cannot be imported as a whole (unreadable, unmapped, or rejected in strict mode)."""


class StrictRejection(ImportError_):
    def __init__(self, rejects: pd.DataFrame) -> None:
        self.rejects = rejects
        lines = [
            f"line {line}: {reason}"
            for line, reason in zip(rejects["line"], rejects["reason"], strict=True)
        ]
        shown = "\n  ".join(lines[:20])
        more = f"\n  … and {len(lines) - 20} more" if len(lines) > 20 else ""
        super().__init__(
            f"{len(lines)} bad row(s); --strict: nothing was imported.\n  {shown}{more}"
        )


@dataclass
class ImportSummary:
    kind: str
    path: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    customers_created: int = 0
    seconds: float = 0.0
    rejects_path: str | None = None
    derived_ids: bool = False
    first_rejects: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows_per_second"] = round(self.rows_per_second, 1)
        data["seconds"] = round(self.seconds, 3)
        return data


def parse_mapping(pairs: list[str] | None) -> dict[str, str]:
    """['customer_id=external_id', …] → {'customer_id': 'external_id', …}."""
    mapping: dict[str, str] = {}
    for pair in pairs or []:
        source, sep, target = pair.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise MappingError(f"--map expects SOURCE=FIELD, got '{pair}'")
        mapping[source.strip()] = target.strip()
    return mapping


class RejectsWriter:
    def __init__(self, path: Path, *, full_rows: bool) -> None:
        self.path = path
        self.full_rows = full_rows
        # Source columns left out of the rejected rows (set once the header is mapped).
        self.hidden_columns: list[str] = []
        self.count = 0
        self.first: list[dict[str, Any]] = []
        self._frames: list[pd.DataFrame] = []

    def add(self, raw: pd.DataFrame, reasons: pd.Series) -> None:
        if reasons.empty:
            return
        rows = raw.loc[reasons.index].drop(columns=self.hidden_columns, errors="ignore")
        rows.insert(0, "reason", reasons)
        rows.insert(0, "line", reasons.index)
        self.count += len(rows)
        if len(self.first) < 20:
            self.first += rows[["line", "reason"]].head(20 - len(self.first)).to_dict("records")
        self._frames.append(rows)

    def add_malformed(self, reasons: dict[int, str]) -> None:
        """Lines that could not be split into the header's fields (no cells to keep)."""
        self.add(pd.DataFrame(index=list(reasons)), pd.Series(reasons, dtype=object))

    def frame(self) -> pd.DataFrame:
        if not self._frames:
            return pd.DataFrame(columns=["line", "reason"])
        return pd.concat(self._frames).sort_values("line", kind="stable")

    def write(self) -> Path | None:
        if not self.count:
            return None
        target = self.path
        # People open rejects files in a spreadsheet: no cell may run as a formula there.
        frame = spreadsheet_safe(self.frame())
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(target, index=False)
        except OSError:
            # The input's folder may be read-only (shared data): fall back to var/rejects/.
            target = Path(settings.VAR_DIR) / "rejects" / self.path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(target, index=False)
        return target


def import_file(
    *,
    kind: str,
    path: Path,
    mapping: dict[str, str] | None = None,
    date_format: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    strict: bool = False,
    create_customers: bool = False,
    rejects_path: Path | None = None,
    rejects_full_rows: bool = False,
    defaults: dict[str, Any] | None = None,
    progress: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    line_level: bool = True,
    guest_orders: Literal["reject", "skip"] = "reject",
) -> ImportSummary:
    """Import one file of `kind` (customers, orders or events); see the module docstring.

    An orders file whose columns map to order lines (an order, a product, a unit price) is
    imported line by line (customers.line_import; `guest_orders`: reject or skip the lines
    without a customer id); `line_level=False` keeps the order-level reading.

    `rejects_full_rows` keeps the personal columns (name, email, phone) and their values in
    the rejects file and reasons; by default they are left out."""
    spec = SPECS[kind]
    path = Path(path)
    if not path.exists():
        raise ImportError_(f"{path}: no such file")
    if kind == "orders" and line_level:
        # Imported here, not at the top: customers.line_import builds on this module.
        from customers import line_import

        if line_import.file_is_line_level(path, mapping=mapping, delimiter=delimiter, sheet=sheet):
            return line_import.import_order_lines(
                path=path,
                mapping=mapping,
                date_format=date_format,
                delimiter=delimiter,
                sheet=sheet,
                strict=strict,
                create_customers=create_customers,
                rejects_path=rejects_path,
                rejects_full_rows=rejects_full_rows,
                currency=(defaults or {}).get("currency", "USD"),
                guest_orders=guest_orders,
                progress=progress,
                chunk_rows=chunk_rows,
            )
    started = time.perf_counter()
    summary = ImportSummary(kind=kind, path=str(path))
    rejects = RejectsWriter(
        rejects_path or path.with_name(path.name + ".rejects.csv"), full_rows=rejects_full_rows
    )
    seen_keys: dict[str, int] = {}
    key_lines: dict[str, int] = {}
    scan, bar = scan_with_progress_bar(path, kind=kind, progress=progress)
    counts = UpsertCounts()
    outer = transaction.atomic() if strict else nullcontext()

    try:
        with outer:
            chunks = _validated_chunks(
                path,
                spec,
                summary,
                rejects,
                scan=scan,
                mapping=mapping,
                date_format=date_format,
                delimiter=delimiter,
                sheet=sheet,
                defaults=defaults,
                chunk_rows=chunk_rows,
            )
            for raw, result in chunks:
                chunk_counts, created_customers, reasons = _write_chunk(
                    result,
                    spec,
                    seen_keys=seen_keys,
                    key_lines=key_lines,
                    create_customers=create_customers,
                    dry=strict and rejects.count > 0,
                )
                rejects.add(raw, reasons)
                counts += chunk_counts
                summary.customers_created += created_customers
                summary.rows += len(raw)
                bar.update(len(raw))
            if strict and rejects.count:
                raise StrictRejection(rejects.frame())
    except TableError as exc:
        raise ImportError_(str(exc)) from exc
    except DatabaseError as exc:
        # Validation keeps every value within its column, so this is a bug or a schema drift;
        # the database's own text is left out: it quotes the row's values (personal data).
        kept = "nothing was imported" if strict else f"{summary.rows:,} rows before it were kept"
        raise ImportError_(
            f"{path}: the database refused a chunk ({type(exc).__name__}); {kept}"
        ) from exc
    finally:
        bar.close()
    return summary_finish(summary, counts, rejects, started)


def summary_finish(
    summary: ImportSummary, counts: UpsertCounts, rejects: RejectsWriter, started: float
) -> ImportSummary:
    """The counts the database reported, the rejects (written to their file) and the time."""
    summary.created, summary.updated, summary.unchanged = (
        counts.created,
        counts.updated,
        counts.unchanged,
    )
    summary.rejected = rejects.count
    summary.first_rejects = rejects.first
    written = rejects.write()
    summary.rejects_path = str(written) if written else None
    summary.seconds = time.perf_counter() - started
    return summary


def scan_with_progress_bar(path: Path, *, kind: str, progress: bool) -> tuple[TextScan | None, Any]:
    """A CSV's one pass over its bytes (encoding, line count; an empty file is refused here),
    and the progress bar that count sizes."""
    try:
        scan = None if is_excel(path) else scan_text(path)
    except TableError as exc:
        raise ImportError_(str(exc)) from exc
    bar = tqdm(
        total=scan.data_lines if scan else None,
        unit="rows",
        desc=f"import {kind}",
        disable=not progress,
        file=sys.stderr,
    )
    return scan, bar


def _validated_chunks(
    path: Path,
    spec: RecordSpec,
    summary: ImportSummary,
    rejects: RejectsWriter,
    *,
    scan: TextScan | None,
    mapping: dict[str, str] | None,
    date_format: str | None,
    delimiter: str | None,
    sheet: str | None,
    defaults: dict[str, Any] | None,
    chunk_rows: int,
) -> Iterator[tuple[pd.DataFrame, ValidationResult]]:
    """Each chunk of the file as read (text, for the rejects file) and validated; the first
    chunk's header decides the column mapping (and whether ids are derived)."""
    renames: dict[str, str] | None = None
    chunks = read_table_chunks(
        path,
        delimiter=delimiter,
        sheet=sheet,
        chunk_rows=chunk_rows,
        on_malformed=rejects.add_malformed,
        scan=scan,
    )
    for raw in chunks:
        if renames is None:
            try:
                renames = map_columns(list(raw.columns), spec, mapping)
            except MappingError as exc:
                raise ImportError_(f"{path}: {exc}") from exc
            summary.derived_ids = "external_id" not in renames.values()
            if not rejects.full_rows:
                rejects.hidden_columns = [c for c, f in renames.items() if f in PERSONAL_FIELDS]
        result = validate_records(
            raw.rename(columns=renames), spec, date_format=date_format, defaults=defaults
        )
        yield raw, result if rejects.full_rows else _without_personal_values(result)


def _without_personal_values(result: ValidationResult) -> ValidationResult:
    """The result with reasons about personal fields no longer quoting the value
    ("email: expected an email address", not "…, got 'ann@example'")."""
    errors = result.errors
    personal = errors["field"].isin(PERSONAL_FIELDS)
    if not personal.any():
        return result
    errors = errors.copy()
    errors.loc[personal, "reason"] = errors.loc[personal, "reason"].str.replace(
        r", got '.*'$", "", regex=True
    )
    return ValidationResult(valid=result.valid, errors=errors)


def _write_chunk(
    result: ValidationResult,
    spec: RecordSpec,
    *,
    seen_keys: dict[str, int],
    key_lines: dict[str, int],
    create_customers: bool,
    dry: bool,
) -> tuple[UpsertCounts, int, pd.Series]:
    """Key, de-duplicate, link and write one validated chunk in one transaction.

    Returns the counts, customers created, and a reason per rejected line.
    """
    reasons = result.reasons_by_position()
    records = result.valid
    if records.empty:  # every row of the chunk was rejected: nothing to key or write
        return UpsertCounts(), 0, reasons.sort_index()
    extra_reasons: list[pd.Series] = []
    if spec.derive_key_from:
        missing = (
            records["external_id"].isna()
            if "external_id" in records.columns
            else pd.Series(True, index=records.index)
        )
        if missing.any():
            derived = derive_keys(records[missing], spec, seen_keys)
            if "external_id" not in records.columns:
                records = records.assign(external_id=derived)
            else:
                records.loc[missing, "external_id"] = derived
    records = records.assign(external_id=records["external_id"].astype(str))
    keys = records["external_id"].to_numpy(dtype=object)
    # Keys seen in earlier chunks: one C-level set test in the usual case (none), and a
    # lookup per key only when there is a repeat (Series.map would copy the whole dict).
    if key_lines and not key_lines.keys().isdisjoint(keys):
        earlier = pd.Series([key_lines.get(k) for k in keys], index=records.index, dtype=float)
    else:
        earlier = pd.Series(np.nan, index=records.index)
    duplicated = earlier.notna() | records["external_id"].duplicated()
    if duplicated.any():
        lines = pd.Series(records.index, index=records.index)
        firsts = lines.groupby(records["external_id"].to_numpy()).transform("first")
        first_line = earlier.fillna(firsts).astype(int)
        extra_reasons.append("external_id: duplicate of line " + first_line[duplicated].astype(str))
        records = records[~duplicated]
        keys = keys[~duplicated.to_numpy()]
    key_lines.update(zip(keys, records.index.tolist(), strict=True))
    created_customers = 0
    counts = UpsertCounts()
    with transaction.atomic():
        if "customer" in records.columns:
            link = services.records_link_customers(
                records=records, create_missing=create_customers and not dry
            )
            created_customers = link.customers_created
            if len(link.unknown):
                unknown = records.loc[link.unknown, "customer"]
                extra_reasons.append(
                    "customer: unknown customer '"
                    + unknown
                    + "' (import customers first, or use --create-customers)"
                )
            records = link.linked
        if not dry and not records.empty:
            if spec.kind == "customers":
                counts = services.customers_upsert(records=records)
            elif spec.kind == "orders":
                counts = services.orders_upsert(records=records)
            else:
                counts = services.events_upsert(records=records)
    if extra_reasons:
        reasons = join_reasons(pd.concat([reasons, *extra_reasons]))
    return counts, created_customers, reasons.sort_index()
