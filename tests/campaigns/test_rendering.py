"""Message templates: a sandboxed engine and a restricted context."""

from __future__ import annotations

import pytest

from campaigns.rendering import (
    SAMPLE_CONTEXT,
    TemplateRenderError,
    message_render,
    template_validate,
)


def test_a_template_renders_its_parts_with_the_context() -> None:
    rendered = message_render(
        subject="{{ first_name }},\n  {{ offer.description }}",
        body="Use {{ coupon_code }} & save.",
        html_body="",
        context=SAMPLE_CONTEXT,
    )
    assert rendered.subject == "Alex, 15% off"  # whitespace folded to one line
    assert rendered.text == "Use ABCD-EFGH-JKLM-NPQR & save."  # text is not HTML-escaped
    assert rendered.html == "<html><body><p>Use ABCD-EFGH-JKLM-NPQR &amp; save.</p></body></html>"


def test_an_html_body_escapes_what_the_context_holds() -> None:
    context = {**SAMPLE_CONTEXT, "first_name": "<script>x</script>"}
    rendered = message_render(
        subject="", body="", html_body="<b>{{ first_name }}</b>", context=context
    )
    assert rendered.html == "<b>&lt;script&gt;x&lt;/script&gt;</b>"


@pytest.mark.parametrize(
    "source",
    ["{% load static %}", "{% include 'x.html' %}", "{% url 'admin:index' %}", "{% debug %}"],
)
def test_tags_that_reach_beyond_the_context_are_refused(source: str) -> None:
    with pytest.raises(TemplateRenderError, match="is not allowed"):
        template_validate(source=source)
    with pytest.raises(TemplateRenderError):
        message_render(subject="", body=source, html_body="", context={})


def test_a_syntax_error_is_reported_as_a_render_error() -> None:
    with pytest.raises(TemplateRenderError, match="syntax"):
        template_validate(source="{% if %}")
