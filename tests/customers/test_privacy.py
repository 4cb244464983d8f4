"""Privacy requests through the API and the commands: erase (scope customers:erase) and export
(scope customers:export), both granted only by name, audited, documented in the schema."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from auditlog.models import LogEntry
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from campaigns.models import Arm, Intervention
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from campaigns.services.responses import response_record
from customers.models import ApiClient as ApiClientModel
from customers.models import Customer, Event, Order
from customers.services import api_client_create, consent_set, customer_pseudonym
from scoring.models import ChurnModel, CustomerScore, ScoringRun
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer, make_template

pytestmark = pytest.mark.django_db


def api_for(*scopes: str) -> APIClient:
    _client, key = api_client_create(name="privacy-desk", scopes=list(scopes))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return api


@pytest.fixture
def jane(settings: Any) -> Customer:
    """A treated customer with everything a customer can have: orders, an event, consent, a
    score with reasons, an intervention with a coupon and a response."""
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.GLOBAL_CONTROL_PERCENT = 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    make_customers(1, name="Jane Doe", email="jane@example.com", attributes={"plan": "gold"})
    rule = {
        "name": "critical by email",
        "tiers": ["critical"],
        "channel": "email",
        "offer": make_offer(),
        "template": make_template("email"),
    }
    campaign_dispatch(
        campaign=make_campaign(rules=[rule], control_percentage=Decimal("0")), now=NOON
    )
    interventions_relay(now=NOON)
    customer = Customer.objects.get()
    Order.objects.create(
        external_id="o1", customer=customer, placed_at=NOON + timedelta(days=2), amount=42
    )
    Event.objects.create(
        external_id="e1", customer=customer, kind="visit", occurred_at=NOON, properties={"p": 1}
    )
    consent_set(customer=customer, channel="email", status="granted", source="api")
    intervention = Intervention.objects.get(customer=customer, arm=Arm.TREATMENT)
    response_record(
        intervention=intervention,
        kind="replied",
        occurred_at=NOON + timedelta(hours=3),
        idempotency_key="r1",
        payload={"text": "Jane here, call +15550000000"},
    )
    model = ChurnModel.objects.create(
        version="m1", candidate="lr", algorithm="logistic", sampler="none", threshold=0.5
    )
    run = ScoringRun.objects.create(run_key="k1", model=model, as_of=NOON)
    CustomerScore.objects.create(
        run=run,
        customer=customer,
        probability=0.8,
        tier="critical",
        reasons=["no order in 90 days"],
        scored_at=NOON,
    )
    return customer


def test_new_and_default_clients_cannot_erase_or_export(api: APIClient, jane: Customer) -> None:
    """The default scopes (and every client made before the two existed) leave them out."""
    assert "customers:erase" not in ApiClientModel.objects.get().scopes
    erase = api.post("/api/v1/customers/c000000/erase")
    export = api.get("/api/v1/customers/c000000/export")
    assert (erase.status_code, export.status_code) == (403, 403)
    assert "'customers:erase' scope" in erase.json()["error"]["message"]
    assert "'customers:export' scope" in export.json()["error"]["message"]
    # Each scope opens only its own endpoint.
    assert api_for("customers:export").post("/api/v1/customers/c000000/erase").status_code == 403
    assert Customer.objects.get().erased is False


def test_export_returns_everything_held_about_the_customer(jane: Customer) -> None:
    response = api_for("customers:export").get("/api/v1/customers/c000000/export")
    assert response.status_code == 200
    document = response.json()
    assert document["profile"]["name"] == "Jane Doe"
    assert document["profile"]["email"] == "jane@example.com"
    assert document["attributes"] == {"plan": "gold"}
    assert [(c["channel"], c["status"]) for c in document["consents"]] == [("email", "granted")]
    assert document["orders"] == [
        {
            "external_id": "o1",
            "placed_at": "2026-11-26T12:00:00Z",
            "amount": "42.00",
            "currency": "USD",
            "status": "completed",
            "item_count": 1,
            "discount_amount": "0.00",
            "category": "",
        }
    ]
    assert document["events"][0]["properties"] == {"p": 1}
    assert document["scores"] == [
        {
            "scored_at": "2026-11-24T12:00:00Z",
            "probability": 0.8,
            "tier": "critical",
            "reasons": ["no order in 90 days"],
            "attributions": {},
            "model_version": "m1",
        }
    ]
    [intervention] = document["interventions"]
    assert (intervention["campaign"], intervention["rule"]) == ("Win-back", "critical by email")
    assert (intervention["channel"], intervention["status"]) == ("email", "sent")
    assert intervention["coupon"]["code"] and intervention["coupon"]["value"] == "15.00"
    assert document["responses"][0]["payload"] == {"text": "Jane here, call +15550000000"}
    assert set(document) == {
        "format",
        "profile",
        "attributes",
        "consents",
        "orders",
        "events",
        "devices",
        "scores",
        "interventions",
        "responses",
        "callbacks",
    }


def test_erase_through_the_api_is_idempotent_and_audited(jane: Customer) -> None:
    api = api_for("customers:erase", "customers:export")
    first = api.post("/api/v1/customers/c000000/erase")
    pseudonym = customer_pseudonym(external_id="c000000")
    assert first.status_code == 200
    body = first.json()
    assert body["pseudonym"] == pseudonym and body["already_erased"] is False
    assert body["erased_fields"] == ["name", "email", "phone", "attributes", "event properties"]
    # email was granted; sms, call, push and in_app at their defaults
    assert body["consents_revoked"] == 5
    assert body["events_cleared"] == 1
    assert body["cleared"] == {
        "admin_history": 0,
        "callbacks": 0,
        "devices": 0,
        "interventions": 0,
        "responses": 1,
    }
    # Again, by the old id or by the pseudonym: nothing more to do, still a 200.
    for name in ("c000000", pseudonym):
        again = api.post(f"/api/v1/customers/{name}/erase").json()
        assert again["already_erased"] is True and again["pseudonym"] == pseudonym
        assert set(again["cleared"].values()) == {0}
    exported = api.get("/api/v1/customers/c000000/export").json()
    assert exported["profile"]["external_id"] == pseudonym
    assert exported["profile"]["email"] == "" and exported["responses"][0]["payload"] == {}
    assert len(exported["orders"]) == 1 and exported["interventions"][0]["coupon"]["code"]

    entries = LogEntry.objects.get_for_object(jane).order_by("timestamp")
    assert entries.count() == 3
    record = entries.first()
    assert record is not None and record.object_repr == pseudonym
    assert record.additional_data["erasure"]["api_client"] == "privacy-desk"
    assert "privacy-desk" in record.changes_text
    stored = json.dumps([e.additional_data for e in entries]) + str(list(entries.values()))
    for personal in ("c000000", "Jane", "jane@example.com", "+1555"):
        assert personal not in stored


def test_an_unknown_customer_gets_a_json_404(db: None) -> None:
    api = api_for("customers:erase", "customers:export")
    for response in (
        api.post("/api/v1/customers/nobody/erase"),
        api.get("/api/v1/customers/nobody/export"),
    ):
        assert response.status_code == 404
        assert response.json()["error"] == {
            "code": "not_found",
            "message": "No customer with external id 'nobody'.",
        }


def test_the_commands_export_to_a_file_and_erase(jane: Customer, tmp_path: Path) -> None:
    out = tmp_path / "jane.json"
    stdout = StringIO()
    call_command("export_customer", "c000000", "--out", str(out), stdout=stdout)
    assert "exported to" in stdout.getvalue()
    assert json.loads(out.read_text())["profile"]["email"] == "jane@example.com"
    call_command("erase_customer", "c000000", stdout=StringIO())
    entry = LogEntry.objects.get_for_object(jane).get()
    assert entry.additional_data["erasure"]["requested_by"] == "manage.py erase_customer"
    printed = StringIO()
    call_command("export_customer", "c000000", stdout=printed)
    assert json.loads(printed.getvalue())["profile"]["name"] == ""
    with pytest.raises(CommandError, match="no customer with external id 'nobody'"):
        call_command("export_customer", "nobody")
    with pytest.raises(CommandError, match="cannot write"):
        call_command("export_customer", "c000000", "--out", str(tmp_path / "no" / "x.json"))


def test_the_schema_documents_both_endpoints_and_their_errors(db: None) -> None:
    schema = APIClient().get("/api/schema/?format=json").json()
    erase = schema["paths"]["/api/v1/customers/{external_id}/erase"]["post"]
    export = schema["paths"]["/api/v1/customers/{external_id}/export"]["get"]
    for operation in (erase, export):
        assert {"200", "401", "403", "404"} <= set(operation["responses"])
    assert "pseudonym" in json.dumps(schema["components"]["schemas"]["ErasureOut"])


def test_the_admin_offers_the_new_scopes_unticked(admin_client: Client) -> None:
    page = admin_client.get("/admin/customers/apiclient/add/").content.decode()
    assert "Erase a customer&#x27;s personal data (irreversible)" in page
    assert 'value="customers:export"' in page
    ticked = set(re.findall(r'value="([a-z:]+)" id="id_scopes_\d+" checked', page))
    assert ticked == {"customers:read", "customers:write", "responses:write", "reports:read"}
    response = admin_client.post(
        "/admin/customers/apiclient/add/",
        {"name": "privacy", "scopes": ["customers:erase"], "is_active": "on"},
    )
    assert response.status_code == 302
    assert ApiClientModel.objects.get(name="privacy").scopes == ["customers:erase"]
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_the_admin_history_names_the_pseudonym_instead_of_whole_words_only() -> None:
    """On both databases (PostgreSQL's regexp_replace; Python's re on SQLite, which has none):
    each whole-word occurrence of a personal value becomes the pseudonym, and a longer word
    that merely contains it ("Jane Doe" in "Jane Doerty") stays."""
    from django.contrib.admin.models import CHANGE
    from django.contrib.admin.models import LogEntry as AdminLogEntry
    from django.contrib.contenttypes.models import ContentType

    from customers.services import _admin_history_erase

    staff = User.objects.create(username="agent", is_staff=True)
    kind = ContentType.objects.get_for_model(Customer)
    for n, shown in enumerate(["Jane Doe", "Call Jane Doe (due today)", "Jane Doerty", "Bob"]):
        AdminLogEntry.objects.create(
            user=staff, content_type=kind, object_id=str(n), object_repr=shown, action_flag=CHANGE
        )
    assert _admin_history_erase(values=["Jane Doe", ""], pseudonym="erased-1") == 2
    assert list(
        AdminLogEntry.objects.order_by("object_id").values_list("object_repr", flat=True)
    ) == [
        "erased-1",
        "Call erased-1 (due today)",
        "Jane Doerty",
        "Bob",
    ]
