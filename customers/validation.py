"""Vectorised validation of incoming customer, order and event records.

The importer (files) and the ingestion API (JSON) both pass their rows here as a DataFrame
and get back typed valid rows plus one error per bad cell, naming the row and the field.
No database access: resolving customer ids happens in services.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal
from zoneinfo import available_timezones

import numpy as np
import pandas as pd

Kind = Literal["customers", "orders", "events", "order_lines"]
FieldType = Literal["str", "int", "decimal", "datetime", "date", "email", "tz", "choice", "json"]


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: FieldType = "str"
    required: bool = False
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    # Range of the database column (see _out_of_range): int fields' largest value, decimal
    # fields' digits in all and after the point, as in the model's DecimalField.
    maximum: int | None = None
    max_digits: int | None = None
    decimal_places: int | None = None
    aliases: tuple[str, ...] = ()
    # Value of a blank cell (text fields: ""; None leaves the column NULL).
    blank: Any = None


@dataclass(frozen=True)
class RecordSpec:
    kind: Kind
    fields: tuple[FieldSpec, ...]
    # Where columns not in the model go (customers: attributes, events: properties).
    extra_into: str | None = None
    # Key derived from the row when the source has no external id (orders, events).
    derive_key_from: tuple[str, ...] = ()

    def field(self, name: str) -> FieldSpec:
        return next(f for f in self.fields if f.name == name)


# The largest value of an integer column (PostgreSQL `integer`, Django's IntegerField and
# PositiveIntegerField on every backend).
INT_MAX = 2**31 - 1
# Text PostgreSQL cannot store: NUL, and UTF-16 surrogates (valid JSON escapes, invalid UTF-8).
UNSTORABLE_TEXT_RE = "[\x00\ud800-\udfff]"
UNSTORABLE_TEXT = "contains a NUL character or an unpaired surrogate, which cannot be stored"

SPECS: dict[str, RecordSpec] = {
    "customers": RecordSpec(
        "customers",
        (
            FieldSpec("external_id", required=True, max_length=64, aliases=("customer_id", "id")),
            FieldSpec("name", max_length=200, blank=""),
            FieldSpec("email", "email", max_length=254, blank=""),
            FieldSpec("phone", max_length=32, blank=""),
            FieldSpec("time_zone", "tz", max_length=64, aliases=("timezone", "tz"), blank="UTC"),
            FieldSpec("country", max_length=64, blank=""),
            FieldSpec("signup_date", "date"),
            FieldSpec("attributes", "json"),
        ),
        extra_into="attributes",
    ),
    "orders": RecordSpec(
        "orders",
        (
            FieldSpec("external_id", max_length=64, aliases=("order_id",)),
            FieldSpec("customer", required=True, max_length=64, aliases=("customer_id",)),
            FieldSpec("placed_at", "datetime", required=True, aliases=("date", "order_date")),
            FieldSpec(
                "amount",
                "decimal",
                required=True,
                minimum=0,
                max_digits=12,
                decimal_places=2,
                aliases=("total",),
            ),
            FieldSpec("currency", max_length=3, blank="USD"),
            FieldSpec(
                "status",
                "choice",
                choices=("completed", "refunded", "cancelled"),
                blank="completed",
            ),
            FieldSpec(
                "item_count",
                "int",
                minimum=0,
                maximum=INT_MAX,
                aliases=("items", "quantity"),
                blank=1,
            ),
            FieldSpec(
                "discount_amount",
                "decimal",
                minimum=0,
                max_digits=12,
                decimal_places=2,
                aliases=("discount",),
                blank=0.0,
            ),
            FieldSpec("category", max_length=100, blank=""),
        ),
        derive_key_from=("customer", "placed_at"),
    ),
    "events": RecordSpec(
        "events",
        (
            FieldSpec("external_id", max_length=64, aliases=("event_id",)),
            FieldSpec("customer", required=True, max_length=64, aliases=("customer_id",)),
            FieldSpec("kind", required=True, max_length=64, aliases=("type", "event")),
            FieldSpec("occurred_at", "datetime", required=True, aliases=("date", "timestamp")),
            FieldSpec("properties", "json"),
        ),
        extra_into="properties",
        derive_key_from=("customer", "kind", "occurred_at"),
    ),
}

EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


class MappingError(ValueError):
    """The source's columns cannot be mapped to the record's fields."""


def map_columns(
    columns: list[str], spec: RecordSpec, mapping: dict[str, str] | None = None
) -> dict[str, str]:
    """Rename map source column → field: explicit `mapping` first, then names and aliases.

    Matching of names and aliases ignores case, spaces and underscores. Raises MappingError
    naming what is wrong.
    """
    mapping = dict(mapping or {})
    field_names = {f.name for f in spec.fields}
    for source, target in mapping.items():
        if source not in columns:
            raise MappingError(
                f"--map names column '{source}', which the file does not have "
                f"(columns: {', '.join(columns)})"
            )
        if target not in field_names:
            raise MappingError(
                f"--map target '{target}' is not a {spec.kind} field "
                f"(fields: {', '.join(sorted(field_names))})"
            )
    renames = dict(mapping)
    taken = set(renames.values())
    lowered: dict[str, str] = {_loose(c): c for c in columns if c not in renames}
    for f in spec.fields:
        if f.name in taken:
            continue
        for candidate in (f.name, *f.aliases):
            found = lowered.get(_loose(candidate))
            if found is not None and found not in renames:
                renames[found] = f.name
                taken.add(f.name)
                break
    missing = [f.name for f in spec.fields if f.required and f.name not in taken]
    if missing:
        raise MappingError(
            f"no column for required field(s) {', '.join(missing)} "
            f"(columns: {', '.join(columns)}); map one with --map SOURCE={missing[0]}"
        )
    return renames


def _loose(name: str) -> str:
    return name.lower().replace("_", "").replace(" ", "")


@dataclass
class ValidationResult:
    valid: pd.DataFrame
    # One row per problem: position (row label of the input), field, reason.
    errors: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["position", "field", "reason"])
    )

    def reasons_by_position(self) -> pd.Series:
        """'field: reason; field: reason' per bad input row."""
        if self.errors.empty:
            return pd.Series(dtype=object)
        text = self.errors["field"] + ": " + self.errors["reason"]
        return join_reasons(pd.Series(text.to_numpy(), index=pd.Index(self.errors["position"])))


def join_reasons(reasons: pd.Series) -> pd.Series:
    """One 'a; b' per row label (its reasons in order), sorted by label.

    The same as `reasons.groupby(level=0).agg("; ".join)`, but the Python join runs only for
    labels with several reasons: a file of a million rejects has mostly one reason per row.
    """
    several = reasons.index.duplicated(keep=False)
    if several.any():
        joined = reasons[several].groupby(level=0).agg("; ".join)
        reasons = pd.concat([reasons[~several], joined])
    return reasons.sort_index(kind="stable")


def _as_text(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.mask(text == "")


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Problems:
    """The rows' problems, collected as (position, field, reason) frames; one per check."""

    def __init__(self, index: pd.Index) -> None:
        self.index = index
        self.frames: list[pd.DataFrame] = []

    def flag(
        self, mask: pd.Series, name: str, reasons: pd.Series | str, got: pd.Series | None = None
    ) -> None:
        if not mask.any():
            return
        reason = reasons[mask] if isinstance(reasons, pd.Series) else reasons
        if got is not None:
            # reasons + the offending value, quoted: built for the flagged rows only.
            reason = reason + got[mask].fillna("") + "'"
        self.frames.append(
            pd.DataFrame({"position": self.index[mask.to_numpy()], "field": name, "reason": reason})
        )

    def frame(self) -> pd.DataFrame:
        if not self.frames:
            return pd.DataFrame(columns=["position", "field", "reason"])
        return pd.concat(self.frames, ignore_index=True)


def validate_records(
    frame: pd.DataFrame,
    spec: RecordSpec,
    *,
    date_format: str | None = None,
    defaults: dict[str, Any] | None = None,
    require_time: bool = False,
) -> ValidationResult:
    """Check and type every field of every row at once.

    `frame` columns are already field names (see `map_columns`); other columns go into the
    spec's JSON `extra_into` field. Datetimes without a zone are taken as UTC; with
    `require_time` (the API) a datetime field must give a time of day, not only a date.
    """
    defaults = defaults or {}
    out = pd.DataFrame(index=frame.index)
    problems = _Problems(frame.index)
    for f in spec.fields:
        if f.name not in frame.columns:
            if f.required:
                problems.flag(pd.Series(True, index=frame.index), f.name, "is required")
            continue
        if f.type == "json":
            out[f.name] = _json_field(frame[f.name], f, problems)
        else:
            text = _as_text(frame[f.name])
            out[f.name] = _typed_field(text, f, problems, date_format, require_time)
    for f in spec.fields:
        if f.name in out.columns and f.blank is not None:
            fill = defaults.get(f.name, f.blank)
            out[f.name] = out[f.name].astype(object).where(out[f.name].notna(), fill)
    for name, value in defaults.items():
        if name not in out.columns:
            out[name] = value
    known = {f.name for f in spec.fields}
    extra = [c for c in frame.columns if c not in known]
    if spec.extra_into and extra:
        out[spec.extra_into] = _merged_extras(frame[extra], out.get(spec.extra_into))
    errors = problems.frame()
    bad_positions = pd.Index(errors["position"].unique())
    return ValidationResult(valid=out.drop(index=bad_positions), errors=errors)


def _json_field(raw: pd.Series, f: FieldSpec, problems: _Problems) -> pd.Series:
    """A JSON object field (API input): dictionaries pass, a missing value is {}."""
    is_dict = raw.map(lambda v: isinstance(v, dict)).astype(bool)
    missing = raw.map(_is_missing).astype(bool)
    problems.flag(~is_dict & ~missing, f.name, "expected an object (a JSON dictionary)")
    unstorable = raw.map(lambda v: isinstance(v, dict) and json_has_unstorable_text(v))
    problems.flag(unstorable.astype(bool), f.name, UNSTORABLE_TEXT)
    return raw.where(is_dict, None).map(lambda v: v or {})


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def json_has_unstorable_text(value: Any) -> bool:
    """Whether any key or string inside a parsed JSON value has a NUL or a lone surrogate.
    Iterative: the parser's nesting limit, not Python's stack, bounds the depth."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and re.search(UNSTORABLE_TEXT_RE, item):
            return True
    return False


def _typed_field(
    text: pd.Series,
    f: FieldSpec,
    problems: _Problems,
    date_format: str | None,
    require_time: bool = False,
) -> pd.Series:
    """One text column checked against its field's type and returned typed (NaN/None where
    blank or invalid; the invalid rows are flagged and later dropped)."""
    given = text.notna()
    if f.required:
        problems.flag(~given, f.name, "is required")
    unstorable = given & text.str.contains(UNSTORABLE_TEXT_RE, regex=True).fillna(False)
    problems.flag(unstorable.astype(bool), f.name, UNSTORABLE_TEXT)
    if f.max_length is not None and f.type in ("str", "email", "tz"):
        too_long = given & (text.str.len() > f.max_length)
        problems.flag(too_long, f.name, f"is longer than {f.max_length} characters")
    if f.type == "email":
        bad = given & ~text.str.match(EMAIL_RE).fillna(False).astype(bool)
        shown = "expected an email address, got '" + text.map(_shown, na_action="ignore") + "'"
        problems.flag(bad, f.name, shown)
        return text.str.lower()
    if f.type == "tz":
        bad = given & ~text.isin(_time_zones())
        expected = "expected an IANA time zone such as Europe/Paris, got '"
        problems.flag(bad, f.name, expected, got=text)
        return text
    if f.type == "choice":
        lowered = text.str.lower()
        bad = given & ~lowered.isin(f.choices)
        problems.flag(bad, f.name, f"expected one of {', '.join(f.choices)}, got '", got=text)
        return lowered
    if f.type in ("int", "decimal"):
        return _number_field(text, f, problems)
    if f.type in ("datetime", "date"):
        stamps = _parse_datetimes(text, date_format)
        example = date_format or "ISO 8601 such as 2024-05-31T14:00:00Z"
        kind = "date" if f.type == "date" else "date and time"
        problems.flag(given & stamps.isna(), f.name, f"expected a {kind} ({example}), got '", text)
        problems.flag(
            given & stamps.notna() & ~_spells_a_date(text, f.type, require_time),
            f.name,
            f"expected a full {kind} ({example}), got '",
            text,
        )
        return stamps.dt.normalize() if f.type == "date" else stamps
    return text  # "str"


def _spells_a_date(text: pd.Series, kind: str, require_time: bool) -> pd.Series:
    """Whether each value writes its date out: pandas also reads words ("now", "today") and
    partial ISO dates ("2026") as times, which a record must never mean."""
    spelled = text.str.contains(r"\d", regex=True)
    # A bare year or year-month ("2026", "2026-05") is not a day.
    spelled &= ~text.str.fullmatch(r"\d{4}(-\d{1,2})?", case=False)
    if require_time and kind == "datetime":
        spelled &= text.str.contains(r"\d[T ]\d{1,2}:\d{2}", regex=True)
    return spelled.fillna(False).astype(bool)


def _number_field(text: pd.Series, f: FieldSpec, problems: _Problems) -> pd.Series:
    numbers = pd.to_numeric(text, errors="coerce")
    expected = "a whole number" if f.type == "int" else "a number"
    problems.flag(text.notna() & numbers.isna(), f.name, f"expected {expected}, got '", got=text)
    infinite = numbers.notna() & ~np.isfinite(numbers.astype(float))
    problems.flag(infinite, f.name, f"expected a finite {expected[2:]}, got '", got=text)
    if f.type == "int":
        fractional = numbers.notna() & (numbers != np.floor(numbers))
        problems.flag(fractional, f.name, "expected a whole number, got '", got=text)
    if f.minimum is not None:
        below = (numbers < f.minimum).fillna(False)
        problems.flag(below, f.name, f"must be at least {f.minimum:g}")
    _out_of_range(numbers, f, problems)
    return numbers


def _out_of_range(numbers: pd.Series, f: FieldSpec, problems: _Problems) -> None:
    """Numbers the database column cannot hold (infinity, 1e15 in a DecimalField(12, 2), 2³¹
    in an integer) are the row's problem, not the chunk's: flagged here, never sent."""
    # Infinity is flagged by the caller ("expected a finite number, got 'inf'").
    finite = np.isfinite(numbers.to_numpy(dtype="float64", na_value=np.nan))
    infinite = numbers.notna() & ~pd.Series(finite, index=numbers.index)
    if f.maximum is not None:
        above = (numbers > f.maximum).fillna(False) & ~infinite
        problems.flag(above, f.name, f"must be at most {f.maximum}")
    if f.max_digits is not None and f.decimal_places is not None:
        # What the column stores is the value rounded to its decimal places.
        limit = 10 ** (f.max_digits - f.decimal_places)
        rounded = numbers.abs().round(f.decimal_places)
        above = (rounded >= limit).fillna(False) & ~infinite
        largest = f"{limit - 10**-f.decimal_places:,.{f.decimal_places}f}"
        problems.flag(above, f.name, f"must be less than {limit:,} (at most {largest})")


def _merged_extras(extra: pd.DataFrame, given: pd.Series | None) -> pd.Series:
    """The columns no field takes, as one JSON object per row (numbers stay numbers), merged
    over the row's own object when the spec's JSON field was given too."""
    extras = _infer_numeric_columns(extra.map(_json_scalar))
    # A blank cell means "no value": the key is left out (JSON merge-patch semantics).
    records = [
        {k: v for k, v in record.items() if v is not None} for record in extras.to_dict("records")
    ]
    merged = pd.Series(records, index=extra.index, dtype=object)
    if given is not None:
        merged = pd.Series(
            [{**a, **b} for a, b in zip(given, merged, strict=True)],
            index=extra.index,
            dtype=object,
        )
    return merged


def _parse_datetimes(text: pd.Series, date_format: str | None) -> pd.Series:
    fmt = date_format or "ISO8601"
    stamps = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
    if date_format is None:
        # Not ISO 8601: let pandas infer one consistent format for the column.
        retry = text.notna() & stamps.isna()
        if retry.any():
            stamps[retry] = pd.to_datetime(text[retry], errors="coerce", utc=True)
    return stamps


def _json_scalar(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _infer_numeric_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns whose every non-empty value is a number become numbers (ints stay ints)."""
    out = frame.copy()
    for column in frame.columns:
        values = frame[column]
        present = values.notna()
        if not present.any():
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers[present].isna().any():
            continue
        whole = (numbers[present] == np.floor(numbers[present])).all()
        converted = numbers.map(
            lambda v, whole=whole: None if pd.isna(v) else (int(v) if whole else float(v))
        )
        out[column] = converted.astype(object)
    return out.astype(object).where(out.notna(), None)


def derive_keys(frame: pd.DataFrame, spec: RecordSpec, seen: dict[str, int]) -> pd.Series:
    """Deterministic external ids for rows that have none: `customer-YYYYmmddHHMMSS-k`.

    k numbers the repeats of the same (customer, time[, kind]) in file order; `seen` carries
    those counts from earlier chunks so a whole file gets the same ids on every import.
    """
    parts = []
    for name in spec.derive_key_from:
        values = frame[name]
        if pd.api.types.is_datetime64_any_dtype(values):
            values = _compact_stamps(values)
        parts.append(values.astype(str))
    base = parts[0].str.cat(parts[1:], sep="-")
    repeat = base.groupby(base, sort=False).cumcount()
    counts = base.value_counts(sort=False)
    if seen and not seen.keys().isdisjoint(counts.index):
        # Repeats of a key from earlier chunks continue its numbering.
        before = pd.Series([seen.get(k, 0) for k in counts.index], index=counts.index)
        repeat = repeat + before.reindex(base.to_numpy()).to_numpy()
        counts = counts + before
    seen.update(zip(counts.index.astype(str), counts.tolist(), strict=True))
    keys = base + "-" + repeat.astype(str)
    too_long = keys.str.len() > 64
    if too_long.any():
        keys[too_long] = keys[too_long].map(
            lambda k: "h-" + hashlib.sha256(k.encode()).hexdigest()[:40]
        )
    return keys


def _compact_stamps(values: pd.Series) -> pd.Series:
    """`YYYYmmddHHMMSS` of each stamp (wall time in its zone), formatted by numpy."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_localize(None)
    seconds = values.to_numpy(dtype="datetime64[s]")
    text = np.datetime_as_string(seconds, unit="s")  # YYYY-mm-ddTHH:MM:SS
    for separator in ("-", ":", "T"):
        text = np.strings.replace(text, separator, "")
    return pd.Series(text.astype(object), index=values.index).where(values.notna(), None)
