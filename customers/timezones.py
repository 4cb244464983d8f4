"""The default time zone of a country, for customers with a country but no time zone.

Quiet hours are local hours; a customer imported with only a country ("France", "FR") is
contacted as if in that country's zone instead of UTC. One zone per country: the zone of
the capital or of most people (the United States: New York; Canada: Toronto; Australia:
Sydney; Brazil: São Paulo; Russia: Moscow). Countries are matched by ISO 3166-1 alpha-2
code or English name, ignoring case, dots and extra spaces; the names of the UCI Online Retail
file ("EIRE", "RSA", "Channel Islands", "European Community") are included. "Unspecified"
and unknown countries have no default (UTC). The table is documented in docs/importing.md.

`UTC` counts as "no time zone": it is the model's default and what an import writes for a
blank cell. A customer who really keeps UTC while living elsewhere can be given `Etc/UTC`.

Pure: no Django, so the campaign policy can use it on a frame.
"""

from __future__ import annotations

import pandas as pd

# ISO 3166-1 alpha-2 code → (zone, English names besides the code).
COUNTRY_ZONES: dict[str, tuple[str, tuple[str, ...]]] = {
    "AE": ("Asia/Dubai", ("United Arab Emirates", "UAE")),
    "AR": ("America/Argentina/Buenos_Aires", ("Argentina",)),
    "AT": ("Europe/Vienna", ("Austria",)),
    "AU": ("Australia/Sydney", ("Australia",)),
    "BE": ("Europe/Brussels", ("Belgium",)),
    "BG": ("Europe/Sofia", ("Bulgaria",)),
    "BH": ("Asia/Bahrain", ("Bahrain",)),
    "BR": ("America/Sao_Paulo", ("Brazil",)),
    "CA": ("America/Toronto", ("Canada",)),
    "CH": ("Europe/Zurich", ("Switzerland",)),
    "CL": ("America/Santiago", ("Chile",)),
    "CN": ("Asia/Shanghai", ("China",)),
    "CO": ("America/Bogota", ("Colombia",)),
    "CY": ("Asia/Nicosia", ("Cyprus",)),
    "CZ": ("Europe/Prague", ("Czech Republic", "Czechia")),
    "DE": ("Europe/Berlin", ("Germany",)),
    "DK": ("Europe/Copenhagen", ("Denmark",)),
    "EE": ("Europe/Tallinn", ("Estonia",)),
    "EG": ("Africa/Cairo", ("Egypt",)),
    "ES": ("Europe/Madrid", ("Spain",)),
    "FI": ("Europe/Helsinki", ("Finland",)),
    "FR": ("Europe/Paris", ("France",)),
    "GB": (
        "Europe/London",
        ("United Kingdom", "UK", "Great Britain", "England", "Scotland", "Wales"),
    ),
    "GG": ("Europe/Guernsey", ("Guernsey",)),
    "GR": ("Europe/Athens", ("Greece",)),
    "HK": ("Asia/Hong_Kong", ("Hong Kong",)),
    "HR": ("Europe/Zagreb", ("Croatia",)),
    "HU": ("Europe/Budapest", ("Hungary",)),
    "ID": ("Asia/Jakarta", ("Indonesia",)),
    "IE": ("Europe/Dublin", ("Ireland", "EIRE")),
    "IL": ("Asia/Jerusalem", ("Israel",)),
    "IN": ("Asia/Kolkata", ("India",)),
    "IS": ("Atlantic/Reykjavik", ("Iceland",)),
    "IT": ("Europe/Rome", ("Italy",)),
    "JE": ("Europe/Jersey", ("Jersey",)),
    "JP": ("Asia/Tokyo", ("Japan",)),
    "KE": ("Africa/Nairobi", ("Kenya",)),
    "KR": ("Asia/Seoul", ("South Korea", "Korea")),
    "LB": ("Asia/Beirut", ("Lebanon",)),
    "LT": ("Europe/Vilnius", ("Lithuania",)),
    "LU": ("Europe/Luxembourg", ("Luxembourg",)),
    "LV": ("Europe/Riga", ("Latvia",)),
    "MA": ("Africa/Casablanca", ("Morocco",)),
    "MT": ("Europe/Malta", ("Malta",)),
    "MX": ("America/Mexico_City", ("Mexico",)),
    "MY": ("Asia/Kuala_Lumpur", ("Malaysia",)),
    "NG": ("Africa/Lagos", ("Nigeria",)),
    "NL": ("Europe/Amsterdam", ("Netherlands", "The Netherlands", "Holland")),
    "NO": ("Europe/Oslo", ("Norway",)),
    "NZ": ("Pacific/Auckland", ("New Zealand",)),
    "PE": ("America/Lima", ("Peru",)),
    "PH": ("Asia/Manila", ("Philippines",)),
    "PK": ("Asia/Karachi", ("Pakistan",)),
    "PL": ("Europe/Warsaw", ("Poland",)),
    "PT": ("Europe/Lisbon", ("Portugal",)),
    "QA": ("Asia/Qatar", ("Qatar",)),
    "RO": ("Europe/Bucharest", ("Romania",)),
    "RS": ("Europe/Belgrade", ("Serbia",)),
    "RU": ("Europe/Moscow", ("Russia", "Russian Federation")),
    "SA": ("Asia/Riyadh", ("Saudi Arabia",)),
    "SE": ("Europe/Stockholm", ("Sweden",)),
    "SG": ("Asia/Singapore", ("Singapore",)),
    "SI": ("Europe/Ljubljana", ("Slovenia",)),
    "SK": ("Europe/Bratislava", ("Slovakia",)),
    "TH": ("Asia/Bangkok", ("Thailand",)),
    "TR": ("Europe/Istanbul", ("Turkey", "Türkiye")),
    "TW": ("Asia/Taipei", ("Taiwan",)),
    "UA": ("Europe/Kyiv", ("Ukraine",)),
    "US": ("America/New_York", ("United States", "United States of America", "USA")),
    "VN": ("Asia/Ho_Chi_Minh", ("Vietnam", "Viet Nam")),
    "ZA": ("Africa/Johannesburg", ("South Africa", "RSA")),
}
# Regions that are no country (names as in the UCI Online Retail file).
REGION_ZONES: dict[str, str] = {
    # Jersey and Guernsey keep UK time.
    "Channel Islands": "Europe/London",
    # The EU's institutions sit in Brussels.
    "European Community": "Europe/Brussels",
    "European Union": "Europe/Brussels",
}
# The time zone values that mean "not given" (see the module docstring).
UNSET_ZONES = frozenset({"", "UTC"})


def _key(name: str) -> str:
    return " ".join(name.replace(".", "").split()).casefold()


def _lookup() -> dict[str, str]:
    table = {_key(name): zone for name, zone in REGION_ZONES.items()}
    for code, (zone, names) in COUNTRY_ZONES.items():
        table[_key(code)] = zone
        table.update((_key(name), zone) for name in names)
    return table


_LOOKUP = _lookup()


def country_time_zone(country: str | None) -> str | None:
    """The default IANA zone of a country given by ISO code or English name; None if unknown."""
    if not country:
        return None
    return _LOOKUP.get(_key(str(country)))


def effective_time_zones(time_zones: pd.Series, countries: pd.Series) -> pd.Series:
    """Each customer's zone for quiet hours: their own, else their country's default, else
    UTC. Looked up once per distinct country, not per customer."""
    zones = time_zones.fillna("").astype(str).str.strip()
    unset = zones.isin(UNSET_ZONES).to_numpy()
    if not unset.any():
        return zones
    country = countries.fillna("").astype(str)
    defaults = {c: country_time_zone(c) or "UTC" for c in pd.unique(country[unset])}
    return zones.mask(unset, country.map(defaults))
