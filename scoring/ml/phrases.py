"""Readable phrases for feature values: "no order for 143 days", "Contract is Month-to-month".

Pure Python. A phrase function is prepared once per feature (`describer`, `numeric_phrase_for`)
and applied to many values, so the per-customer reasons of a chunk cost one call per distinct
value; `describe` is the one-value form. `numeric_phrases_for` and `group_phrases` build the
same texts for an array of values at once (numpy object-array string building; what the
reasons use for plain float inputs), tested text for text against the one-value forms.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


def as_number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _fmt(value: float) -> str:
    if not np.isfinite(value):
        return "unknown"
    if abs(value - round(value)) < 1e-9:
        return str(round(value))
    return f"{value:.2f}" if abs(value) < 1000 else f"{value:,.0f}"


def _plural(word: str, count: float) -> str:
    return word if count == 1 or word.endswith("s") else word + "s"


def _human(name: str) -> str:
    return name.replace("_", " ")


def _fixed_phrases() -> dict[str, Callable[[float], str]]:
    return {
        "orders_lifetime": lambda x: f"{_fmt(x)} {_plural('order', x)} in total",
        "revenue_lifetime": lambda x: f"lifetime spend {_fmt(x)}",
        "avg_order_value": lambda x: f"average order value {_fmt(x)}",
        "items_per_order": lambda x: f"{x:.1f} items per order",
        "tenure_days": lambda x: f"customer for {x:.0f} days",
        "interorder_mean_days": lambda x: f"orders every {x:.0f} days on average",
        "interorder_std_days": lambda x: f"irregular ordering (gaps vary by {x:.0f} days)",
        "revenue_trend_90d": lambda x: (
            "spending down over the last 90 days"
            if x < 0
            else "spending pattern over the last 90 days"
        ),
        "refund_share": lambda x: f"{x:.0%} of orders refunded",
        "cancel_share": lambda x: f"{x:.0%} of orders cancelled",
        "discount_share": lambda x: f"{x:.0%} of spend was discount",
        "p_alive": lambda x: (
            f"low chance of still being active ({x:.0%})"
            if x < 0.5
            else f"{x:.0%} chance of still being active"
        ),
    }


_FIXED = _fixed_phrases()
# What a fixed feature's missing value means, when it is not "no orders yet".
_MISSING = {
    "interorder_mean_days": "fewer than two orders",
    "interorder_std_days": "too few orders to show a rhythm",
    "tenure_days": "customer since an unknown date",
}


def numeric_phrase_for(name: str, reference: Any) -> Callable[[float], str]:
    """The phrase of a numeric feature's value; the name is matched once, not per value."""
    if name == "recency_days":
        return lambda v: "no completed order yet" if np.isnan(v) else f"no order for {v:.0f} days"
    if m := re.fullmatch(r"orders_(\d+)d", name):
        w = m.group(1)

        def orders(v: float) -> str:
            if v == 0:
                return f"no orders in the last {w} days"
            return f"only {_fmt(v)} {_plural('order', v)} in the last {w} days"

        return orders
    if m := re.fullmatch(r"revenue_(\d+)d", name):
        w = m.group(1)
        return lambda v: (
            f"no spending in the last {w} days" if v == 0 else f"spent {_fmt(v)} in {w} days"
        )
    if m := re.fullmatch(r"event_(.+)_(\d+)d", name):
        kind, w = _human(m.group(1)), m.group(2)

        def events(v: float) -> str:
            if v == 0:
                return f"no {kind} in the last {w} days"
            return f"{_fmt(v)} {_plural(kind, v)} in the last {w} days"

        return events
    if m := re.fullmatch(r"days_since_event_(.+)", name):
        kind = _human(m.group(1))
        return lambda v: f"never a {kind}" if np.isnan(v) else f"last {kind} {v:.0f} days ago"
    if m := re.fullmatch(r"expected_orders_(\d+)d", name):
        h = m.group(1)
        return lambda v: (
            "no orders yet" if np.isnan(v) else f"only {v:.1f} orders expected in the next {h} days"
        )
    if m := re.fullmatch(r"p_no_order_(\d+)d", name):
        h = m.group(1)
        return lambda v: (
            "no orders yet" if np.isnan(v) else f"{v:.0%} chance of no order in the next {h} days"
        )
    if name in _FIXED:
        fixed, unknown = _FIXED[name], _MISSING.get(name, "no orders yet")
        return lambda v: unknown if np.isnan(v) else fixed(v)
    label = _human(name[5:]) if name.startswith("attr_") else name
    ref = as_number(reference)

    def generic(v: float) -> str:
        if np.isnan(v):
            return f"{label} unknown"
        if np.isfinite(ref) and ref != v:
            return f"{label} {_fmt(v)} (typical {_fmt(ref)})"
        return f"{label} {_fmt(v)}"

    return generic


def _phrase_for(name: str, reference: Any, is_categorical: bool) -> Callable[[Any], str]:
    if is_categorical:
        label = _human(name[5:]) if name.startswith("attr_") else name

        def categorical(value: Any) -> str:
            if value is None or (isinstance(value, float) and np.isnan(value)):
                return f"{label} unknown"
            return f"{label} is {value}"

        return categorical
    numeric = numeric_phrase_for(name, reference)
    return lambda value: numeric(as_number(value))


def describer(
    *,
    name: str,
    reference: Any = None,
    categorical: bool = False,
    templates: Mapping[str, str] | None = None,
) -> Callable[[Any], str]:
    """`describe` for one feature, prepared once and applied to many values."""
    fallback = _phrase_for(name, reference, categorical)
    if not (templates and name in templates):
        return fallback
    template = templates[name]

    def templated(value: Any) -> str:
        try:
            return template.format(value=value, reference=reference, name=name)
        except (ValueError, TypeError):
            return fallback(value)

    return templated


def describe(
    *,
    name: str,
    value: Any,
    reference: Any = None,
    categorical: bool = False,
    templates: Mapping[str, str] | None = None,
) -> str:
    """Readable phrase for one feature value. `templates` override by feature name with a
    format string using {value}, {reference} and {name}, e.g. "tenure {value:g} months"."""
    return describer(name=name, reference=reference, categorical=categorical, templates=templates)(
        value
    )


def _tenure_like(name: str) -> bool:
    return "tenure" in name.lower()


def group_phrase(*, lead: str, lead_value: Any, lead_reference: Any, parts: list[str]) -> str:
    """One reason for a group of inputs that move together (`scoring.ml.shapley`): its
    members' phrases together, led by what the group means when the lead input says it (a
    tenure below the typical one is a new customer); never one member alone."""
    text = ", ".join(parts)
    if _tenure_like(lead):
        value, reference = as_number(lead_value), as_number(lead_reference)
        if np.isfinite(value) and np.isfinite(reference) and value != reference:
            return f"{'new' if value < reference else 'long-standing'} customer: {text}"
    return text


# Vectorised forms: the same texts as the one-value functions above, for an array of values at
# once (string building in numpy object arrays and list comprehensions, no call per value).


def _fmt_many(values: np.ndarray) -> np.ndarray:
    """`_fmt` of each value (float64 array) as an object array of texts."""
    v = np.asarray(values, dtype=np.float64)
    out = np.full(len(v), "unknown", dtype=object)
    finite = np.isfinite(v)
    rounded = np.where(finite, np.round(v), 0.0)
    whole = finite & (np.abs(v - rounded) < 1e-9)
    exact_int = whole & (np.abs(rounded) < 2.0**53)
    out[exact_int] = rounded[exact_int].astype(np.int64).astype(str).astype(object)
    for mask, text in (
        (whole & ~exact_int, lambda x: str(round(x))),
        (finite & ~whole & (np.abs(v) < 1000), "{:.2f}".format),
        (finite & ~whole & (np.abs(v) >= 1000), "{:,.0f}".format),
    ):
        if mask.any():
            out[mask] = np.asarray([text(x) for x in v[mask].tolist()] + [None], dtype=object)[:-1]
    return out


def _texts(values: list[Any]) -> np.ndarray:
    return np.asarray([*values, None], dtype=object)[:-1]


def _fixed_many(
    values: np.ndarray, decimals: int, scale: float = 1.0, *, before: str = "", after: str = ""
) -> np.ndarray:
    """`before + f"{v * scale:.{decimals}f}" + after` of each value (scale 100: the number
    of `f"{v:.0%}"`, which multiplies so too), as an object array. A value that is finite,
    below 1e9 in size and not within 1e-6 of a rounding tie rounds as its product with
    10**decimals does, whatever the tie rule (the product's error is under 1e-7 there), so its
    text is made once per distinct rounded number (a chunk's shares have at most 101); every
    other value is formatted by Python. The sign shows when the sign bit is set, as Python
    shows it ("-0.0")."""
    v = np.asarray(values, dtype=np.float64) * scale
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.abs(v) * 10.0**decimals
        fraction = scaled - np.floor(scaled)
        plain = np.isfinite(scaled) & (scaled < 1e9) & (np.abs(fraction - 0.5) > 1e-6)
    out = np.empty(len(v), dtype=object)
    if not plain.all():
        spec = f"{{:.{decimals}f}}"
        out[~plain] = _texts([before + spec.format(x) + after for x in v[~plain].tolist()])
    if plain.any():
        # key: the rounded digits, doubled, plus one for a set sign bit
        keys = np.rint(scaled[plain]).astype(np.int64) * 2 + np.signbit(v[plain])
        distinct, inverse = np.unique(keys, return_inverse=True)
        unit = 10**decimals
        texts = []
        for key in distinct.tolist():
            whole, sign = divmod(key, 2)
            number = f"{whole // unit}.{whole % unit:0{decimals}d}" if decimals else str(whole)
            texts.append(before + ("-" if sign else "") + number + after)
        out[plain] = _texts(texts)[np.asarray(inverse).reshape(-1)]
    return out


def _percent_many(values: np.ndarray, *, before: str = "", after: str = "") -> np.ndarray:
    """`before + f"{v:.0%}" + after` of each value."""
    return _fixed_many(values, 0, 100.0, before=before, after="%" + after)


def _fixed_phrases_many() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """`_FIXED`'s phrases for an array of (non-missing) values at once."""

    def one_of(below: str, other: str) -> Callable[[np.ndarray], np.ndarray]:
        return lambda v: np.where(v < 0, below, other).astype(object)

    def p_alive(v: np.ndarray) -> np.ndarray:
        low = _percent_many(v, before="low chance of still being active (", after=")")
        high = _percent_many(v, after=" chance of still being active")
        return np.where(v < 0.5, low, high)

    return {
        "orders_lifetime": lambda v: _fmt_many(v) + " " + _plurals("order", v) + " in total",
        "revenue_lifetime": lambda v: "lifetime spend " + _fmt_many(v),
        "avg_order_value": lambda v: "average order value " + _fmt_many(v),
        "items_per_order": lambda v: _fixed_many(v, 1, after=" items per order"),
        "tenure_days": lambda v: _fixed_many(v, 0, before="customer for ", after=" days"),
        "interorder_mean_days": lambda v: _fixed_many(
            v, 0, before="orders every ", after=" days on average"
        ),
        "interorder_std_days": lambda v: _fixed_many(
            v, 0, before="irregular ordering (gaps vary by ", after=" days)"
        ),
        "revenue_trend_90d": one_of(
            "spending down over the last 90 days", "spending pattern over the last 90 days"
        ),
        "refund_share": lambda v: _percent_many(v, after=" of orders refunded"),
        "cancel_share": lambda v: _percent_many(v, after=" of orders cancelled"),
        "discount_share": lambda v: _percent_many(v, after=" of spend was discount"),
        "p_alive": p_alive,
    }


_FIXED_MANY = _fixed_phrases_many()


def _plurals(word: str, counts: np.ndarray) -> np.ndarray:
    if word.endswith("s"):
        return np.full(len(counts), word, dtype=object)
    return np.where(counts == 1, word, word + "s").astype(object)


def numeric_phrases_for(name: str, reference: Any) -> Callable[[np.ndarray], np.ndarray]:
    """`numeric_phrase_for` over an array of values: the same texts, as an object array."""

    def where(
        missing: Callable[[np.ndarray], np.ndarray],
        text: str,
        build: Callable[[np.ndarray], np.ndarray],
    ) -> Callable[[np.ndarray], np.ndarray]:
        def phrases(values: np.ndarray) -> np.ndarray:
            v = np.asarray(values, dtype=np.float64)
            out = np.full(len(v), text, dtype=object)
            other = ~missing(v)
            if other.any():
                out[other] = build(v[other])
            return out

        return phrases

    def fixed(fmt: str) -> Callable[[np.ndarray], np.ndarray]:
        return lambda v: _texts([fmt.format(x) for x in v.tolist()])

    if name == "recency_days":
        return where(np.isnan, "no completed order yet", fixed("no order for {:.0f} days"))
    if m := re.fullmatch(r"orders_(\d+)d", name):
        w = m.group(1)
        return where(
            lambda v: v == 0,
            f"no orders in the last {w} days",
            lambda v: (
                "only " + _fmt_many(v) + " " + _plurals("order", v) + f" in the last {w} days"
            ),
        )
    if m := re.fullmatch(r"revenue_(\d+)d", name):
        w = m.group(1)
        return where(
            lambda v: v == 0,
            f"no spending in the last {w} days",
            lambda v: "spent " + _fmt_many(v) + f" in {w} days",
        )
    if m := re.fullmatch(r"event_(.+)_(\d+)d", name):
        kind, w = _human(m.group(1)), m.group(2)
        return where(
            lambda v: v == 0,
            f"no {kind} in the last {w} days",
            lambda v: _fmt_many(v) + " " + _plurals(kind, v) + f" in the last {w} days",
        )
    if m := re.fullmatch(r"days_since_event_(.+)", name):
        kind = _human(m.group(1))
        return where(np.isnan, f"never a {kind}", fixed(f"last {kind} {{:.0f}} days ago"))
    if m := re.fullmatch(r"expected_orders_(\d+)d", name):
        h = m.group(1)
        return where(
            np.isnan,
            "no orders yet",
            lambda v: _fixed_many(
                v, 1, before="only ", after=f" orders expected in the next {h} days"
            ),
        )
    if m := re.fullmatch(r"p_no_order_(\d+)d", name):
        h = m.group(1)
        return where(
            np.isnan,
            "no orders yet",
            lambda v: _percent_many(v, after=f" chance of no order in the next {h} days"),
        )
    if name in _FIXED:
        return where(np.isnan, _MISSING.get(name, "no orders yet"), _FIXED_MANY[name])
    label = _human(name[5:]) if name.startswith("attr_") else name
    ref = as_number(reference)
    typical = f" (typical {_fmt(ref)})" if np.isfinite(ref) else ""

    def generic(v: np.ndarray) -> np.ndarray:
        texts = label + " " + _fmt_many(v)
        if typical:
            texts = np.where(v != ref, texts + typical, texts).astype(object)
        return texts

    return where(np.isnan, f"{label} unknown", generic)


def group_phrases(
    *, lead: str, lead_values: np.ndarray, lead_reference: Any, parts: list[np.ndarray]
) -> np.ndarray:
    """`group_phrase` for many rows at once: `lead_values` the lead input's value (as numbers)
    and `parts[m]` member m's phrase, per row; an object array of texts."""
    text = parts[0]
    for part in parts[1:]:
        text = text + ", " + part
    text = np.asarray(text, dtype=object)
    if _tenure_like(lead):
        value, reference = np.asarray(lead_values, dtype=np.float64), as_number(lead_reference)
        if np.isfinite(reference):
            moved = np.isfinite(value) & (value != reference)
            prefix = np.where(value < reference, "new customer: ", "long-standing customer: ")
            text = np.where(moved, prefix.astype(object) + text, text).astype(object)
    return text
