"""Message templates: Django template syntax on a sandboxed engine and a restricted context.

The engine has no template directories and no loadable tag libraries, and the context holds
only plain strings, numbers and lists (never model instances), so a template written in the
admin can show what it is given and nothing else. `template_validate` also refuses, at save,
every variable the context does not hold (a typo such as `{{ customer.email }}` would otherwise
render as nothing), naming the ones it does. `message_context` builds that context once for
the relay and the live preview, so what staff preview is what customers get.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.template import Context, Engine, Node, Template, TemplateSyntaxError
from django.template.base import FilterExpression, Variable
from django.template.defaulttags import FilterNode, ForNode, TemplateLiteral, WithNode
from django.template.smartif import TokenBase
from django.utils.html import escape, linebreaks

from campaigns.money import money

if TYPE_CHECKING:
    from campaigns.models import Offer

# {% load %}, {% include %}, {% extends %}, {% debug %} and {% url %} could reach beyond the
# context (libraries, files, URL names); message templates never need them.
FORBIDDEN_TAGS = re.compile(r"{%\s*(load|include|extends|debug|url|ssi)\b")

_TEXT_ENGINE = Engine(dirs=[], app_dirs=False, libraries={}, autoescape=False)
_HTML_ENGINE = Engine(dirs=[], app_dirs=False, libraries={}, autoescape=True)

# What a template may name: a root variable, and for the dict-like ones the keys under it.
# None: a plain value (text, or a list of texts that may be indexed or looped over).
OFFER_KEYS = frozenset({"name", "kind", "value", "description"})
ALLOWED_VARIABLES: dict[str, frozenset[str] | None] = {
    "first_name": None,
    "customer": frozenset({"first_name", "name"}),
    "campaign": None,
    "offer": OFFER_KEYS,
    "coupon_code": None,
    "coupon_expires": None,
    "unsubscribe_url": None,
    "reasons": None,
    "reasons_list": None,
    # Reserved for product recommendations: always an empty list for now.
    "recommended_products": None,
}
# Channels whose messages have a subject line (push and in-app: the title, kept in the same
# field); the others (SMS, the agent's callback script, a coupon through the API) ignore the
# template's subject and show none.
CHANNELS_WITH_SUBJECT = frozenset({"email", "push", "in_app"})

_FORLOOP_KEYS = frozenset(
    {"counter", "counter0", "revcounter", "revcounter0", "first", "last", "parentloop"}
)


def allowed_variable_names() -> list[str]:
    """Every name a template may use, as written in a template: first_name, offer.name …"""
    names: list[str] = []
    for root, keys in ALLOWED_VARIABLES.items():
        names.extend([root] if keys is None else [f"{root}.{key}" for key in sorted(keys)])
    return names


class TemplateRenderError(Exception):
    """The template cannot be parsed or uses a tag message templates may not use."""


class Reasons(tuple[str, ...]):
    """A customer's churn reasons: prints as one line ("No order for 120 days; spend down
    40%") and loops like a list (`{% for r in reasons %}`)."""

    __slots__ = ()

    def __str__(self) -> str:
        return "; ".join(self)


# --- validation: which variables a template names --------------------------------------------


def _expressions(value: Any) -> Iterator[FilterExpression]:
    """The filter expressions inside a node attribute: itself, a list/dict of them, or an
    {% if %} condition tree (smartif literals hold `.value`, operators `.first`/`.second`)."""
    if isinstance(value, FilterExpression):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _expressions(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _expressions(item)
    elif isinstance(value, TemplateLiteral):
        yield from _expressions(value.value)
    elif isinstance(value, TokenBase):
        yield from _expressions(value.first)
        yield from _expressions(value.second)


def _lookups(expression: FilterExpression, *, own: bool = True) -> Iterator[tuple[str, ...]]:
    """The variable paths of an expression and of its filters' arguments (literals skipped);
    `own=False`: the arguments only."""
    candidates = ([expression.var] if own else []) + [
        arg for _func, args in expression.filters for is_var, arg in args if is_var
    ]
    for var in candidates:
        if isinstance(var, Variable) and var.lookups:
            yield tuple(var.lookups)


def _path_allowed(path: tuple[str, ...], scope: dict[str, frozenset[str] | None]) -> bool:
    root, rest = path[0], path[1:]
    if root not in scope:
        return False
    keys = scope[root]
    if keys is None:  # a plain value: only an index into a list (reasons_list.0)
        return all(part.isdigit() for part in rest)
    return not rest or (rest[0] in keys and all(part.isdigit() for part in rest[1:]))


def _unknown_paths(
    nodes: Iterable[Node], scope: dict[str, frozenset[str] | None]
) -> Iterator[tuple[str, int]]:
    """(variable path, line) of every variable the nodes use that `scope` does not hold."""
    for node in nodes:
        line = getattr(getattr(node, "token", None), "lineno", 0) or 0
        inner = scope
        attributes = dict(vars(node))
        if isinstance(node, ForNode):
            inner = {**scope, "forloop": _FORLOOP_KEYS}
            inner.update(dict.fromkeys(node.loopvars))
        elif isinstance(node, WithNode):
            inner = {**scope, **dict.fromkeys(node.extra_context)}
        elif isinstance(node, FilterNode):
            # `{% filter upper %}` parses as `var|upper`: `var` is the tag's placeholder.
            expression = attributes.pop("filter_expr")
            for path in _lookups(expression, own=False):
                if not _path_allowed(path, scope):
                    yield ".".join(path), line
        branches = attributes.pop("conditions_nodelists", None)
        for name, value in attributes.items():
            if not name.startswith("nodelist"):
                yield from _unknown_in(value, scope, line)
        if branches is not None:  # {% if %}: each condition, then each branch
            for condition, nodelist in branches:
                yield from _unknown_in(condition, scope, line)
                yield from _unknown_paths(nodelist, inner)
            continue
        for child in node.child_nodelists:
            yield from _unknown_paths(getattr(node, child, None) or [], inner)


def _unknown_in(
    value: Any, scope: dict[str, frozenset[str] | None], line: int
) -> Iterator[tuple[str, int]]:
    for expression in _expressions(value):
        for path in _lookups(expression):
            if not _path_allowed(path, scope):
                yield ".".join(path), line


def template_validate(*, source: str, variables: bool = True) -> None:
    """Parse the template and refuse forbidden tags and (`variables`) variables the context
    does not hold (the message lists the allowed ones)."""
    match = FORBIDDEN_TAGS.search(source or "")
    if match:
        raise TemplateRenderError(f"The {{% {match.group(1)} %}} tag is not allowed here.")
    try:
        template = _TEXT_ENGINE.from_string(source or "")
    except TemplateSyntaxError as exc:
        raise TemplateRenderError(f"Template syntax error: {exc}") from exc
    unknown = dict(_unknown_paths(template.nodelist, dict(ALLOWED_VARIABLES))) if variables else {}
    if unknown:
        named = ", ".join(f"{{{{ {path} }}}} (line {line})" for path, line in unknown.items())
        raise TemplateRenderError(
            f"Unknown variable{'s' if len(unknown) > 1 else ''}: {named}. "
            f"Allowed: {', '.join(allowed_variable_names())}."
        )


# --- the context and the rendering ----------------------------------------------------------


def product_context(product: Any) -> dict[str, str]:
    """A recommended product as a template sees it: name, price (with the currency), url (from
    PRODUCT_URL_TEMPLATE, e.g. https://shop.example/p/{external_id}; "" when unset)."""
    url_template = settings.PRODUCT_URL_TEMPLATE
    return {
        "name": product.name or product.external_id,
        "price": money(product.price) if product.price is not None else "",
        "url": url_template.format(external_id=product.external_id) if url_template else "",
        "external_id": product.external_id,
    }


def offer_context(offer: Offer | None) -> dict[str, str]:
    if offer is None:
        return {}
    return {
        "name": offer.name,
        "kind": str(offer.kind),
        "value": offer.value_text,
        "description": offer.describe(),
    }


def message_context(
    *,
    customer_name: str,
    campaign: str,
    offer: Offer | None,
    coupon_code: str,
    coupon_expires: str,
    unsubscribe_url: str,
    reasons: Iterable[str],
    recommended_products: Iterable[dict[str, str]] = (),
) -> dict[str, Any]:
    """The whole context a message template sees (ALLOWED_VARIABLES), from plain values."""
    name = (customer_name or "").strip()
    first_name = name.split(" ")[0] if name else ""
    reason_list = Reasons(str(r) for r in reasons)
    return {
        "first_name": first_name,
        "customer": {"first_name": first_name, "name": name},
        "campaign": campaign,
        "offer": offer_context(offer),
        "coupon_code": coupon_code,
        "coupon_expires": coupon_expires,
        "unsubscribe_url": unsubscribe_url,
        "reasons": reason_list,
        "reasons_list": list(reason_list),
        "recommended_products": list(recommended_products),
    }


SAMPLE_CONTEXT: dict[str, Any] = {
    **message_context(
        customer_name="Alex Sample",
        campaign="Win-back",
        offer=None,
        coupon_code="ABCD-EFGH-JKLM-NPQR",
        coupon_expires="2026-12-31",
        unsubscribe_url="https://example.com/unsubscribe/...",
        reasons=["No order for 120 days", "Two support tickets last month"],
    ),
    "offer": {"name": "15% off", "kind": "percent_coupon", "value": "15", "description": "15% off"},
}


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str


@functools.lru_cache(maxsize=256)
def _compiled(source: str, *, html: bool) -> Template:
    """A checked and compiled template, kept by its source: the relay renders one template for
    a whole chunk, and parsing it again for each message cost about 1 ms of CPU. A source that
    fails the check raises each time (exceptions are not cached)."""
    template_validate(source=source, variables=False)
    return (_HTML_ENGINE if html else _TEXT_ENGINE).from_string(source)


def message_render(
    *, subject: str, body: str, html_body: str, context: dict[str, Any]
) -> RenderedMessage:
    """Render a template's parts with a restricted context (plain values only). Unknown
    variables are refused when a template is saved, not here: a template saved before that
    check existed still sends (its unknown variables render empty) rather than stop the relay."""
    ctx = Context(context, autoescape=False)
    text = _compiled(body, html=False).render(ctx).strip()
    rendered_subject = " ".join(_compiled(subject, html=False).render(ctx).split())
    if html_body.strip():
        html: str = _compiled(html_body, html=True).render(Context(context, autoescape=True))
    else:
        html = f"<html><body>{linebreaks(escape(text))}</body></html>"
    return RenderedMessage(subject=rendered_subject, text=text, html=html)
