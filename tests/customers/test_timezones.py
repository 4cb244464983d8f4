"""Country → time zone: the documented default zone per country, used for quiet hours when a
customer has a country but no time zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from campaigns import selectors
from campaigns.models import Rule
from campaigns.rules import rule_spec
from campaigns.suppression import PolicyConfig, quiet_hours_send_after
from customers.models import Customer
from customers.timezones import COUNTRY_ZONES, country_time_zone, effective_time_zones
from tests.campaigns.conftest import make_customers

UCI_COUNTRIES = {
    "United Kingdom": "Europe/London",
    "EIRE": "Europe/Dublin",
    "Channel Islands": "Europe/London",
    "European Community": "Europe/Brussels",
    "RSA": "Africa/Johannesburg",
    "USA": "America/New_York",
    "Japan": "Asia/Tokyo",
    "Czech Republic": "Europe/Prague",
    "Unspecified": None,
}


@pytest.mark.parametrize(("country", "zone"), UCI_COUNTRIES.items())
def test_the_uci_shops_countries_have_their_documented_zone(country: str, zone: str | None) -> None:
    assert country_time_zone(country) == zone


@pytest.mark.parametrize("spelling", ["FR", "fr", "France", " FRANCE ", "france"])
def test_a_country_is_found_by_iso_code_or_name_in_any_case(spelling: str) -> None:
    assert country_time_zone(spelling) == "Europe/Paris"


def test_every_default_zone_is_a_real_iana_zone() -> None:
    from zoneinfo import ZoneInfo

    for zone, _ in COUNTRY_ZONES.values():
        assert ZoneInfo(zone).key == zone
    assert country_time_zone("Atlantis") is None and country_time_zone("") is None


def test_a_set_zone_wins_and_utc_or_blank_falls_back_to_the_country() -> None:
    zones = pd.Series(["Europe/Paris", "UTC", "", None, "UTC", "Etc/UTC"])
    countries = pd.Series(["Japan", "Japan", "DE", "Brazil", "Atlantis", "Japan"])
    assert effective_time_zones(zones, countries).tolist() == [
        "Europe/Paris",
        "Asia/Tokyo",
        "Europe/Berlin",
        "America/Sao_Paulo",
        "UTC",
        "Etc/UTC",
    ]


@pytest.mark.django_db
def test_quiet_hours_use_the_countrys_zone_when_the_customer_has_none() -> None:
    tokyo, paris = make_customers(2)
    Customer.objects.filter(pk=tokyo.pk).update(country="Japan", time_zone="UTC")
    Customer.objects.filter(pk=paris.pk).update(country="Japan", time_zone="Europe/Paris")
    specs = [rule_spec(Rule())]
    frame = selectors.candidates_frame(specs=specs, id_range=(tokyo.pk, paris.pk))
    assert frame["time_zone"].tolist() == ["Asia/Tokyo", "Europe/Paris"]
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # 21:00 in Tokyo, 13:00 in Paris
    send_after = quiet_hours_send_after(
        frame.assign(channel="email"), now=now, config=PolicyConfig()
    )
    assert send_after.iloc[0] == datetime(2026, 11, 24, 23, 0, tzinfo=UTC)  # 08:00 in Tokyo
    assert pd.isna(send_after.iloc[1])
