"""The demo shop (UCI Online Retail, demo/sources.json): its sources file, the synthetic
contacts stage, the recommendations stage and admin panel, and — on a sample of the real file —
the demo's model against recency alone, out of time."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from sklearn.metrics import roc_auc_score

from customers.importers import import_file
from customers.line_import import import_order_lines
from customers.models import Consent, Customer, Product
from demo.contacts import CONSENT_SOURCE, OTHER_CATEGORY, demo_contacts_add, product_category
from retention.cycle import STAGES, CycleOptions, run_cycle
from retention.sources import sources_load
from scoring.cycle import recency_baseline
from scoring.models import RecommendationRun
from scoring.services.datasets import training_data_from_database
from scoring.services.recommendations import recommendations_refresh
from scoring.services.training import churn_model_train

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO / "demo" / "sources.json"
SHOP_FILE = REPO / "demo" / "data" / "online_retail_uci352.csv.gz"
HEADER = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice"]
HEADER += ["CustomerID", "Country"]
LINES = [
    ["1", "X1", "CHRISTMAS TREE DECORATION", "2", "2011-11-01 10:00", "1.50", "101.0", "France"],
    ["1", "X2", "SANTA HAT", "1", "2011-11-01 10:00", "2.00", "101.0", "France"],
    ["1", "M1", "RED MUG", "1", "2011-11-01 10:00", "3.00", "101.0", "France"],
    ["2", "M1", "RED MUG", "3", "2011-11-02 10:00", "3.00", "102.0", "United Kingdom"],
    ["2", "Q1", "SQUIRREL", "1", "2011-11-02 10:00", "9.00", "102.0", "United Kingdom"],
    ["3", "Q1", "SQUIRREL", "1", "2011-11-03 10:00", "9.00", "103.0", "United Kingdom"],
]


def write_shop(tmp_path: Path) -> Path:
    path = tmp_path / "shop.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(LINES)
    import_order_lines(path=path, currency="GBP", create_customers=True)
    return path


def test_the_demo_sources_file_runs_the_shop_end_to_end() -> None:
    sources = sources_load(SOURCES)
    [shop] = sources.imports
    assert shop.path == SHOP_FILE.resolve() and shop.path.exists()
    assert shop.kind == "orders" and shop.create_customers and shop.currency == "GBP"
    assert shop.guest_orders == "skip"
    assert {shop.map[k] for k in ("InvoiceNo", "StockCode", "CustomerID")} == {
        "order",
        "product",
        "customer",
    }
    # Trained at a cutoff inside the data (2010-12-01 … 2011-12-09) whose horizon is observed,
    # scored as of the day after the last line.
    train = sources.scoring["train"]
    cutoff = datetime.fromisoformat(train["as_of"]).replace(tzinfo=UTC)
    assert datetime(2010, 12, 1, tzinfo=UTC) < cutoff
    assert (datetime(2011, 12, 10, tzinfo=UTC) - cutoff).days >= train["horizon_days"]
    assert sources.as_of == datetime(2011, 12, 10, tzinfo=UTC)
    assert set(sources.demo) == {"contacts", "simulate", "dispatch_time", "second_cycle"}
    # The shop's simulated truth is per action, with sleeping dogs (demo/simulate.py).
    assert sources.demo["simulate"]["truth"] == "actions"
    # The demo campaign's rules read what this shop has.
    assert sources.campaigns is not None
    fields = {
        c["field"]
        for rule in sources.campaigns["campaigns"][0]["rules"]
        for c in rule.get("attribute_conditions", [])
    }
    assert fields == {"favourite_category", "Country"}
    email = sources.campaigns["templates"][0]
    assert "recommended_products" in email["body"]


def test_the_shop_file_is_the_documented_copy() -> None:
    import hashlib

    digest = hashlib.sha256(SHOP_FILE.read_bytes()).hexdigest()
    assert digest == "737745256ddb4410bfe4e29f2dcb72329b7486e584837f1e84f9a07416cf7d45"
    assert digest in (REPO / "demo" / "data" / "SOURCE.md").read_text()


def test_the_stages_refresh_recommendations_after_scoring_and_before_dispatch() -> None:
    names = [name for name, _ in STAGES]
    assert names.index("contacts") < names.index("scoring")
    assert names.index("scoring") < names.index("recommendations") < names.index("dispatch")


def test_product_categories_come_from_name_keywords() -> None:
    assert product_category("CHRISTMAS TREE DECORATION") == "Christmas & seasonal"
    assert product_category("RED MUG") == "Kitchen & tea time"
    assert product_category("WHITE HANGING HEART T-LIGHT HOLDER") == "Candles & lights"
    assert product_category("SQUIRREL") == product_category("") == OTHER_CATEGORY


def test_synthetic_contacts_and_consent_are_added_once_and_marked(tmp_path: Path) -> None:
    write_shop(tmp_path)
    real = Customer.objects.get(external_id="103")
    real.email = "real@shop.test"
    real.save(update_fields=["email"])
    as_of = datetime(2011, 12, 10, tzinfo=UTC)
    data, lines = demo_contacts_add(config={"seed": 11, "sms_share": 1.0}, as_of=as_of)
    assert data["synthetic_contacts"] == 2 and "SYNTHETIC" in lines[0]
    french = Customer.objects.get(external_id="101")
    assert (french.email, french.phone) == ("shop-101@example.invalid", "+15550000101")
    assert french.attributes["synthetic_contact"] is True
    assert french.attributes["Country"] == "France"
    # Two Christmas lines against one kitchen line.
    assert french.attributes["favourite_category"] == "Christmas & seasonal"
    # "Other gifts" (the squirrel) loses to any named category.
    assert Customer.objects.get(external_id="102").attributes["favourite_category"] == (
        "Kitchen & tea time"
    )
    real.refresh_from_db()
    assert real.email == "real@shop.test" and "synthetic_contact" not in real.attributes
    assert real.attributes["favourite_category"] == OTHER_CATEGORY
    consents = set(Consent.objects.values_list("customer__external_id", "channel", "source"))
    assert consents == {(c, ch, CONSENT_SOURCE) for c in ("101", "102") for ch in ("email", "sms")}
    assert Product.objects.get(external_id="X2").category == "Christmas & seasonal"
    # A revocation recorded since is never replaced; a rerun adds nothing.
    Consent.objects.filter(customer=french, channel="sms").update(status="revoked", source="api")
    again, _ = demo_contacts_add(config={"seed": 11, "sms_share": 1.0}, as_of=as_of)
    assert (again["synthetic_contacts"], again["consents_created"]) == (0, 0)
    assert Consent.objects.get(customer=french, channel="sms").status == "revoked"


def test_the_sms_share_is_drawn_by_customer_id(tmp_path: Path) -> None:
    from demo.contacts import _consents

    ids = np.arange(1, 20_001, dtype=np.int64)
    frame = _consents(ids, seed=11, sms_share=0.3, recorded_at=datetime(2011, 12, 10, tzinfo=UTC))
    sms = frame[frame["channel"].eq("sms")]["customer_id"]
    assert 0.28 < len(sms) / len(ids) < 0.32
    again = _consents(ids[::7], seed=11, sms_share=0.3, recorded_at=datetime.now(UTC))
    assert set(again[again["channel"].eq("sms")]["customer_id"]) == set(sms) & set(ids[::7])


def test_the_recommendations_stage_stores_lists_and_says_when_there_are_no_lines(
    tmp_path: Path,
) -> None:
    empty = run_cycle(CycleOptions(), only=["recommendations"])
    assert empty["recommendations"] == {"run": None}
    write_shop(tmp_path)
    data = run_cycle(CycleOptions(), only=["recommendations"])["recommendations"]
    assert data["customers"] == 3 and data["lines"] == 6
    assert RecommendationRun.objects.get().version == data["version"]


def test_the_customer_admin_page_lists_the_recommended_products(tmp_path: Path) -> None:
    write_shop(tmp_path)
    customer = Customer.objects.get(external_id="102")
    page = admin_page(customer)
    assert "Recommended products" in page and "No recommendations yet" in page
    Product.objects.filter(external_id="Q1").update(active=False)
    recommendations_refresh()
    page = admin_page(customer)
    assert "RED MUG" in page and "bought before" in page
    assert "SQUIRREL" not in page.split("Recommended products")[1].split("</fieldset>")[0]


def admin_page(customer: Customer) -> str:
    user = get_user_model().objects.create_superuser(
        f"admin{Customer.objects.count()}{RecommendationRun.objects.count()}", "", "pw-12345678"
    )
    client = Client()
    client.force_login(user)
    response = client.get(f"/admin/customers/customer/{customer.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def shop_sample(tmp_path: Path, every: int) -> Path:
    """Every `every`-th customer of the real file (all their lines), as a .csv.gz."""
    frame = pd.read_csv(SHOP_FILE, dtype=str, keep_default_na=False)
    ids = frame["CustomerID"].str.replace(".0", "", regex=False)
    keep = ids.ne("") & (pd.to_numeric(ids, errors="coerce").fillna(0) % every == 0)
    path = tmp_path / "sample.csv.gz"
    with gzip.open(path, "wt", newline="") as handle:
        frame[keep].to_csv(handle, index=False)
    return path


@pytest.mark.slow
def test_the_demo_model_beats_recency_alone_out_of_time(tmp_path: Path) -> None:
    spec = json.loads(SOURCES.read_text())
    shop = spec["imports"][0]
    import_file(
        kind="orders",
        path=shop_sample(tmp_path, every=3),
        mapping=shop["map"],
        create_customers=True,
        defaults={"currency": "GBP"},
        guest_orders="skip",
    )
    train = spec["scoring"]["train"]
    data = training_data_from_database(
        as_of=datetime.fromisoformat(train["as_of"]).replace(tzinfo=UTC),
        horizon_days=train["horizon_days"],
    )
    assert data.X_valid is not None and data.X_champion is not None and data.y_valid is not None
    assert len(data.y_valid) > 800
    outcome = churn_model_train(data=data, candidates=train["candidates"])
    model_auc = outcome.to_dict()["selected"]["roc_auc"]
    # Recency alone on the same out-of-time rows: the longer since the last order, the riskier.
    recency = data.X_champion["recency_days"].to_numpy(dtype=float)
    recency = np.where(np.isnan(recency), np.nanmax(recency) + 1, recency)
    recency_auc = roc_auc_score(data.y_valid.astype(int), recency)
    baseline = recency_baseline(data)
    assert baseline is not None and baseline["out_of_time"]
    assert baseline["roc_auc"] == pytest.approx(recency_auc)
    assert model_auc > recency_auc + 0.01, (model_auc, recency_auc)
