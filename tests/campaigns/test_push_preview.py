"""The template preview for push and in-app: a title, the rendered deep link, and for push the
lengths against what phones show and the payload against the push services' limit."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.test import Client

from campaigns.push_text import BODY_LIMIT, TITLE_LIMIT, push_length
from tests.campaigns.conftest import make_campaign, make_customers, make_offer, make_template

pytestmark = pytest.mark.django_db
URL = "/admin/campaigns/messagetemplate/preview/"


@pytest.fixture
def staff(db: None) -> Client:
    User.objects.create_superuser("boss", password="pw-123456789")
    client = Client()
    client.login(request=HttpRequest(), username="boss", password="pw-123456789")
    return client


@pytest.fixture
def rule(db: None) -> Any:
    make_customers(1, name="Ada Lovelace")
    campaign = make_campaign(
        rules=[{"name": "push", "tiers": ["critical"], "channel": "push",
                "offer": make_offer(), "template": make_template("push")}]
    )  # fmt: skip
    return campaign.rules.get()


def test_push_preview_has_title_link_and_lengths(staff: Client, rule: Any) -> None:
    body = staff.post(
        URL,
        {
            "channel": "push",
            "subject": "{{ first_name }}, your {{ offer.description }}",
            "body": "Code {{ coupon_code }} " + "x" * 300,
            "html_body": "",
            "deep_link": "https://shop.example/c?code={{ coupon_code }}",
            "image_url": "https://shop.example/i.png",
            "preview_rule": str(rule.pk),
        },
    ).json()
    assert body["subject"] == "Ada, your 15% off"
    code = body["text"].split()[1]
    assert body["deep_link"] == f"https://shop.example/c?code={code}"
    assert body["push"]["title_characters"] == len("Ada, your 15% off")
    assert body["push"]["body_characters"] == len(body["text"])
    assert body["push"]["describe"].startswith(f"title 17/{TITLE_LIMIT} characters, body ")
    assert any(f"cut it after about {BODY_LIMIT}" in w for w in body["push"]["warnings"])
    in_app = staff.post(
        URL, {"channel": "in_app", "subject": "Hi", "body": "b", "deep_link": "shop://x"}
    ).json()
    assert in_app["subject"] == "Hi" and in_app["deep_link"] == "shop://x"
    assert in_app["push"] is None  # no phone limits for the inbox


def test_push_length_limits() -> None:
    fine = push_length(title="Hi", body="Short")
    assert fine.warnings == []
    long = push_length(title="T" * 70, body="b" * 5000)
    assert len(long.warnings) == 3  # title, body and payload size
    assert push_length(title="", body="x").warnings == [
        "The title is empty: phones show the app's name instead."
    ]
