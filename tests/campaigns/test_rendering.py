"""Message templates: a sandboxed engine and a restricted context."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from campaigns.models import MessageTemplate
from campaigns.rendering import (
    CHANNELS_WITH_SUBJECT,
    SAMPLE_CONTEXT,
    Reasons,
    TemplateRenderError,
    allowed_variable_names,
    message_context,
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


def test_reasons_print_as_one_line_and_loop_as_a_list() -> None:
    context = message_context(
        customer_name="Ada Lovelace",
        campaign="Win-back",
        offer=None,
        coupon_code="",
        coupon_expires="",
        unsubscribe_url="",
        reasons=["No order for 120 days", "spend down 40%"],
    )
    rendered = message_render(
        subject="",
        body=(
            "Why: {{ reasons }}.\n"
            "{% for r in reasons_list %}- {{ r }}\n{% endfor %}"
            "{% for r in reasons %}[{{ r }}]{% endfor %} first: {{ reasons_list.0 }}"
        ),
        html_body="<p>{{ reasons }}</p>",
        context=context,
    )
    assert rendered.text == (
        "Why: No order for 120 days; spend down 40%.\n"
        "- No order for 120 days\n- spend down 40%\n"
        "[No order for 120 days][spend down 40%] first: No order for 120 days"
    )
    assert "['" not in rendered.text  # never the Python list
    assert rendered.html == "<p>No order for 120 days; spend down 40%</p>"
    assert str(Reasons(())) == ""
    assert context["customer"] == {"first_name": "Ada", "name": "Ada Lovelace"}


@pytest.mark.parametrize(
    ("source", "unknown"),
    [
        ("Hi {{ customer.email }}", "{{ customer.email }} (line 1)"),
        ("{{ first_nme }}", "{{ first_nme }} (line 1)"),
        ("{% if vip %}x{% endif %}", "{{ vip }} (line 1)"),
        ("line one\n{{ offer.price }}", "{{ offer.price }} (line 2)"),
        ("{{ first_name|default:nickname }}", "{{ nickname }} (line 1)"),
        ("{% for r in orders %}{{ r }}{% endfor %}", "{{ orders }} (line 1)"),
        ("{% for r in reasons %}{% endfor %}{{ r }}", "{{ r }} (line 1)"),  # outside the loop
        ("{{ first_name.upper }}", "{{ first_name.upper }} (line 1)"),
    ],
)
def test_an_unknown_variable_is_refused_with_the_allowed_ones(source: str, unknown: str) -> None:
    with pytest.raises(TemplateRenderError) as caught:
        template_validate(source=source)
    message = str(caught.value)
    assert unknown in message
    allowed = message.split("Allowed: ")[1]
    for name in ("first_name", "customer.first_name", "offer.description", "coupon_code"):
        assert name in allowed
    assert allowed.rstrip(".").split(", ") == allowed_variable_names()


@pytest.mark.parametrize(
    "source",
    [
        "{{ first_name }} {{ customer.name }} {{ offer.description|upper }} {{ coupon_code }}",
        "{% for r in reasons_list %}{{ forloop.counter }}. {{ r }}{% endfor %}",
        "{% with n=customer.first_name %}{{ n }}{% endwith %}",
        "{% if offer.kind == 'percent_coupon' and coupon_code %}{{ offer.value }}%{% endif %}",
        "{% filter upper %}{{ campaign }}{% endfilter %} {{ 'text' }} {{ 3 }}",
        "{% for p in recommended_products %}{{ p }}{% empty %}—{% endfor %}",
    ],
)
def test_every_allowed_variable_passes(source: str) -> None:
    template_validate(source=source)


def test_a_model_template_with_an_unknown_variable_is_refused_at_save() -> None:
    template = MessageTemplate(name="t", channel="email", subject="{{ customer.email }}", body="x")
    with pytest.raises(ValidationError) as caught:
        template.full_clean(validate_unique=False)
    assert "subject" in caught.value.message_dict
    assert "customer.email" in caught.value.message_dict["subject"][0]


def test_channels_without_a_subject_drop_it() -> None:
    template = MessageTemplate(name="t", channel="sms", subject="{{ customer.email }}", body="x")
    template.full_clean(validate_unique=False)  # the subject is not checked: it is ignored
    assert template.subject == ""
    assert "sms" not in CHANNELS_WITH_SUBJECT and "callback" not in CHANNELS_WITH_SUBJECT


def test_a_template_saved_before_the_variable_check_still_renders() -> None:
    rendered = message_render(
        subject="", body="Hi {{ first_name }}{{ customer.email }}!", html_body="", context={}
    )
    assert rendered.text == "Hi !"  # the relay keeps sending; saving it again would refuse it
