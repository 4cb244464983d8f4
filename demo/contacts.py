"""SYNTHETIC contact details and consent for the demo shop, and its product categories.

The UCI Online Retail file (demo/data/) has customers, countries, products and order lines, but
no e-mail addresses, phone numbers, consent or product categories. A campaign needs the first
three and the demo's rules read the last, so this stage of the demo (retention_cycle runs it
only when the sources file has a "demo": {"contacts": {...}} entry, as demo/sources.json does)
adds them, deterministically (a rerun changes nothing):

- **contacts** of every customer without an e-mail address: `<prefix>-<id>@example.invalid`
  (the `.invalid` top-level domain can never be delivered to, RFC 2606) and `+1555<7 digits>`
  (the fictional 555 range), with the attribute `synthetic_contact: true`;
- **consent**, only where none is recorded (a real statement or an unsubscribe is never
  replaced): e-mail granted for every synthetic contact, SMS granted for a share of them drawn
  with the stage's seed, source `demo (synthetic)`;
- **product categories** for products without one, from keywords in their names
  (CATEGORY_KEYWORDS, first match wins, else "Other gifts");
- the attributes the demo's rules read: `favourite_category` (the category of most of the
  customer's order lines) and `Country` (the customer's country as the order file gave it).

Set-based: one read of customers, products and lines, bulk upserts; no per-customer query.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from django.db import transaction

from common.db.bulk import bulk_upsert
from common.db.frames import frame_from_sql
from customers.models import Consent, Customer, OrderLine, Product

SYNTHETIC_ATTRIBUTE = "synthetic_contact"
CONSENT_SOURCE = "demo (synthetic)"
DEFAULT_EMAIL_PREFIX = "shop"
DEFAULT_SMS_SHARE = 0.5
DEFAULT_SEED = 11
OTHER_CATEGORY = "Other gifts"
# Words of a product's name → its category; the first category with a matching word wins.
CATEGORY_KEYWORDS: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (category, frozenset(words.split()))
    for category, words in (
        ("Christmas & seasonal", "CHRISTMAS XMAS EASTER ADVENT SANTA REINDEER SNOWFLAKE"),
        ("Jewellery", "NECKLACE BRACELET EARRINGS RING CHARM DIAMANTE BEAD BROOCH HAIR TRINKET"),
        ("Bags", "BAG BAGS PURSE SHOPPER TOTE"),
        ("Toys & crafts", "TOY TOYS JIGSAW KIT FELTCRAFT DOLLY CHILDS GAME PLAYHOUSE SPACEBOY"),
        ("Garden", "GARDEN WICKER PLANT WATERING BIRD"),
        ("Party & gift wrap", "PARTY RIBBON RIBBONS TISSUES BUNTING BALLOONS"),
        ("Candles & lights", "CANDLE CANDLES LIGHT LIGHTS LANTERN T-LIGHT T-LIGHTS INCENSE HOLDER"),
        (
            "Kitchen & tea time",
            "CAKE MUG TEA CUP BOWL PLATE JAR CUTLERY KITCHEN LUNCH BOTTLE TRAY BAKING NAPKINS "
            "TIN TINS SPOON TEAPOT DISH POT EGG",
        ),
        (
            "Cards & stationery",
            "CARD CARDS PAPER WRAP NOTEBOOK PEN PENCIL PENCILS STICKER TAPE BOOK",
        ),
        (
            "Home decor",
            "SIGN CUSHION FRAME CLOCK MIRROR HOOK GARLAND DECORATION DRAWER TILE WALL HANGING "
            "DOORMAT VASE CABINET RACK HOOKS MAGNETS",
        ),
    )
)


def product_category(name: str) -> str:
    """The demo's category of a product name (CATEGORY_KEYWORDS)."""
    words = set(re.findall(r"[A-Z][A-Z-]*", (name or "").upper()))
    for category, keywords in CATEGORY_KEYWORDS:
        if words.intersection(keywords):
            return category
    return OTHER_CATEGORY


def _products_categorise() -> int:
    """Give every product without a category the demo's; returns how many changed."""
    products = pd.DataFrame(
        list(Product.objects.filter(category="").values_list("external_id", "name")),
        columns=["external_id", "name"],
    )
    if products.empty:
        return 0
    products["category"] = products["name"].map(product_category)
    return bulk_upsert(Product, products[["external_id", "category"]]).updated


def _favourites() -> pd.DataFrame:
    """customer_id → the category most of their order lines are in, "Other gifts" last (ties:
    alphabetical)."""
    line, product = OrderLine._meta.db_table, Product._meta.db_table
    orders = OrderLine._meta.get_field("order").related_model._meta.db_table  # type: ignore[union-attr]
    lines = frame_from_sql(
        f"SELECT o.customer_id, p.category, count(*) FROM {line} l "
        f"JOIN {orders} o ON o.id = l.order_id JOIN {product} p ON p.id = l.product_id "
        "GROUP BY o.customer_id, p.category",
        [],
        columns=["customer_id", "category", "lines"],
    )
    if lines.empty:
        return pd.DataFrame(columns=["customer_id", "favourite_category"])
    # "Other gifts" is the favourite only of a customer who bought nothing categorised.
    lines["named"] = lines["category"].ne(OTHER_CATEGORY)
    lines = lines.sort_values(
        ["customer_id", "named", "lines", "category"], ascending=[True, False, False, True]
    )
    first = lines.drop_duplicates("customer_id")
    return first.rename(columns={"category": "favourite_category"})[
        ["customer_id", "favourite_category"]
    ]


def _consents(
    customer_ids: np.ndarray, *, seed: int, sms_share: float, recorded_at: datetime
) -> pd.DataFrame:
    """E-mail granted for each; SMS granted for a seeded share (by customer id, so the same
    customer gets the same answer whatever else is in the database)."""
    # A multiplicative hash of (id, seed) into [0, 1): uniform enough, vectorised, stable.
    keys = customer_ids.astype(np.uint64) + np.uint64(seed * 7919)
    mixed = (keys * np.uint64(2654435761)) % np.uint64(2**32)
    draws = (mixed >> np.uint64(16)).astype(float) / 2**16
    sms = customer_ids[draws < sms_share]
    frame = pd.DataFrame(
        {
            "customer_id": np.concatenate([customer_ids, sms]),
            "channel": ["email"] * len(customer_ids) + ["sms"] * len(sms),
        }
    )
    frame["status"] = "granted"
    frame["source"] = CONSENT_SOURCE
    frame["recorded_at"] = pd.Timestamp(recorded_at)
    return frame


def demo_contacts_add(
    *, config: Mapping[str, Any], as_of: datetime | None
) -> tuple[dict[str, Any], list[str]]:
    """The stage's body (see the module docstring). `config` is the sources file's
    "contacts" entry ({"seed", "sms_share", "email_prefix"}, all optional); consent is
    recorded as of `as_of` (the cycle's date). Returns its counts and the lines to print."""
    seed = int(config.get("seed", DEFAULT_SEED))
    sms_share = float(config.get("sms_share", DEFAULT_SMS_SHARE))
    prefix = str(config.get("email_prefix", DEFAULT_EMAIL_PREFIX))
    recorded_at = as_of or datetime.now(UTC)
    with transaction.atomic():
        categorised = _products_categorise()
        customers = pd.DataFrame(
            list(
                Customer.objects.filter(erased=False).values_list(
                    "pk", "external_id", "email", "country"
                )
            ),
            columns=["customer_id", "external_id", "email", "country"],
        )
        bare = customers[customers["email"].eq("")].copy()
        digits = bare["external_id"].str.replace(r"\D", "", regex=True).str[-7:].str.zfill(7)
        bare["email"] = prefix + "-" + bare["external_id"].str.lower() + "@example.invalid"
        bare["phone"] = "+1555" + digits
        favourites = _favourites()
        attrs = customers.merge(favourites, on="customer_id", how="left")
        synthetic = set(bare["customer_id"])
        attrs["attributes"] = [
            {
                **({"Country": country} if country else {}),
                **({"favourite_category": fav} if isinstance(fav, str) else {}),
                **({SYNTHETIC_ATTRIBUTE: True} if cid in synthetic else {}),
            }
            for cid, country, fav in zip(
                attrs["customer_id"], attrs["country"], attrs["favourite_category"], strict=True
            )
        ]
        attrs = attrs[attrs["attributes"].map(bool)]
        contacts = bulk_upsert(Customer, bare[["external_id", "email", "phone"]])
        attributes = bulk_upsert(
            Customer, attrs[["external_id", "attributes"]], json_merge=["attributes"]
        )
        consents = _consents(
            bare["customer_id"].to_numpy(dtype=np.int64),
            seed=seed,
            sms_share=sms_share,
            recorded_at=recorded_at,
        )
        written = bulk_upsert(Consent, consents, key=["customer_id", "channel"], update=False)
    shares = favourites["favourite_category"].value_counts()
    data = {
        "synthetic_contacts": contacts.updated,
        "attributes_updated": attributes.updated,
        "consents_created": written.created,
        "products_categorised": categorised,
        "favourite_categories": {str(k): int(v) for k, v in shares.items()},
    }
    lines = [
        f"Synthetic contacts (SYNTHETIC, marked {SYNTHETIC_ATTRIBUTE}=true): "
        f"{contacts.updated:,} customers got an @example.invalid address and a 555 number; "
        f"{written.created:,} consents recorded (source '{CONSENT_SOURCE}'; e-mail for all, "
        f"SMS for {sms_share:.0%})",
        f"Product categories (demo keywords): {categorised:,} products categorised; "
        "favourite categories: "
        + ", ".join(f"{name} {count:,}" for name, count in shares.head(8).items()),
    ]
    return data, lines
