"""SMS length: GSM-7 or UCS-2, characters and segments (campaigns.sms, pure)."""

from __future__ import annotations

import pytest

from campaigns.sms import SMS_SEGMENTS_WARN, sms_length


@pytest.mark.parametrize(
    ("text", "segments", "units"),
    [
        ("", 0, 0),
        ("a" * 160, 1, 160),  # one message holds 160 septets
        ("a" * 161, 2, 161),  # split: 153 per part
        ("a" * 306, 2, 306),
        ("a" * 307, 3, 307),
        ("Prices in £ and ¥, àéü ÄÖÑ @ §", 1, 30),  # all in the basic GSM table
    ],
)
def test_gsm7_texts_count_septets(text: str, segments: int, units: int) -> None:
    length = sms_length(text)
    assert (length.encoding, length.segments, length.units) == ("GSM-7", segments, units)
    assert length.characters == len(text)


def test_extension_characters_count_twice_and_never_split() -> None:
    assert sms_length("€" * 80).units == 160
    assert sms_length("€" * 80).segments == 1
    assert sms_length("€" * 81).segments == 2
    # 152 septets then a two-septet € : it does not fit the first 153-septet part whole.
    assert sms_length("a" * 152 + "€" + "a" * 7).units == 161
    assert sms_length("a" * 152 + "€" + "a" * 152).segments == 3
    assert sms_length("a" * 151 + "€" + "a" * 153).segments == 2
    assert sms_length("{[|]}~^\\").units == 16


@pytest.mark.parametrize(
    ("text", "segments"),
    [("ł" * 70, 1), ("ł" * 71, 2), ("ł" * 134, 2), ("ł" * 135, 3), ("😀" * 35, 1), ("😀" * 36, 2)],
)
def test_one_character_outside_gsm_makes_it_ucs2(text: str, segments: int) -> None:
    length = sms_length(text)
    assert length.encoding == "UCS-2"
    assert length.segments == segments


def test_the_description_names_what_forced_ucs2_and_warns_when_long() -> None:
    short = sms_length("Cześć Ala, 15% off")
    assert short.describe() == "18 characters, 1 segment (UCS-2 because of ś ć)"
    assert short.warning == ""
    long = sms_length("ś" * (67 * (SMS_SEGMENTS_WARN + 1)))
    assert long.segments == SMS_SEGMENTS_WARN + 1
    assert f"{SMS_SEGMENTS_WARN + 1} segments" in long.warning
