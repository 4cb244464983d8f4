"""Message templates: Django template syntax on a sandboxed engine and a restricted context.

The engine has no template directories and no loadable tag libraries, and the context holds
only plain strings, numbers and lists (never model instances), so a template written in the
admin can show what it is given and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.template import Context, Engine, TemplateSyntaxError
from django.utils.html import escape, linebreaks

# {% load %}, {% include %}, {% extends %}, {% debug %} and {% url %} could reach beyond the
# context (libraries, files, URL names); message templates never need them.
FORBIDDEN_TAGS = re.compile(r"{%\s*(load|include|extends|debug|url|ssi)\b")

_TEXT_ENGINE = Engine(dirs=[], app_dirs=False, libraries={}, autoescape=False)
_HTML_ENGINE = Engine(dirs=[], app_dirs=False, libraries={}, autoescape=True)

SAMPLE_CONTEXT: dict[str, Any] = {
    "first_name": "Alex",
    "campaign": "Win-back",
    "offer": {"name": "15% off", "kind": "percent_coupon", "value": "15", "description": "15% off"},
    "coupon_code": "ABCD-EFGH-JKLM-NPQR",
    "coupon_expires": "2026-12-31",
    "unsubscribe_url": "https://example.com/unsubscribe/...",
    "reasons": ["No order for 120 days", "Two support tickets last month"],
}


class TemplateRenderError(Exception):
    """The template cannot be parsed or uses a tag message templates may not use."""


def template_validate(*, source: str) -> None:
    match = FORBIDDEN_TAGS.search(source or "")
    if match:
        raise TemplateRenderError(f"The {{% {match.group(1)} %}} tag is not allowed here.")
    try:
        _TEXT_ENGINE.from_string(source or "")
    except TemplateSyntaxError as exc:
        raise TemplateRenderError(f"Template syntax error: {exc}") from exc


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str


def message_render(
    *, subject: str, body: str, html_body: str, context: dict[str, Any]
) -> RenderedMessage:
    """Render a template's parts with a restricted context (plain values only)."""
    for source in (subject, body, html_body):
        template_validate(source=source)
    ctx = Context(context, autoescape=False)
    text = _TEXT_ENGINE.from_string(body).render(ctx).strip()
    rendered_subject = " ".join(_TEXT_ENGINE.from_string(subject).render(ctx).split())
    if html_body.strip():
        html: str = _HTML_ENGINE.from_string(html_body).render(Context(context, autoescape=True))
    else:
        html = f"<html><body>{linebreaks(escape(text))}</body></html>"
    return RenderedMessage(subject=rendered_subject, text=text, html=html)
