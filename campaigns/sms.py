"""How long an SMS is: its encoding, characters and segments. Pure Python: no Django.

An SMS is sent in the GSM 7-bit alphabet when every character is in it (160 septets in one
message; 153 per part once it is split, the rest being the concatenation header), and in UCS-2
otherwise (70 UTF-16 units; 67 per part). The extension characters (€ [ ] { } ~ ^ | \\ and the
form feed) take two septets (an escape and the character). A part never splits an extension
character or a surrogate pair, so parts are filled greedily rather than by dividing.

The two alphabets are the fixed tables of 3GPP TS 23.038 §6.2.1 (default alphabet and its
extension table); they are written out here rather than taken from a codec library because the
count needs each character's width, which codecs do not expose.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7 = GSM7_BASIC | GSM7_EXTENSION

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67
# Above this many parts the admin warns: each part is billed as one message, and most
# providers refuse or truncate messages much longer than this.
SMS_SEGMENTS_WARN = 3


@dataclass(frozen=True)
class SmsLength:
    encoding: str  # "GSM-7" or "UCS-2"
    characters: int  # what a person counts
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int
    per_segment: int  # the capacity of one part at this length (single or concatenated)
    non_gsm: tuple[str, ...]  # the characters that forced UCS-2, first occurrence order

    @property
    def warning(self) -> str:
        if self.segments <= SMS_SEGMENTS_WARN:
            return ""
        return (
            f"{self.segments} segments: each is billed as one SMS; "
            f"keep it to {SMS_SEGMENTS_WARN} or fewer."
        )

    def describe(self) -> str:
        parts = "segment" if self.segments == 1 else "segments"
        text = f"{self.characters} characters, {self.segments} {parts} ({self.encoding}"
        if self.non_gsm:
            text += f" because of {' '.join(self.non_gsm)}"
        return text + ")"


def _width(char: str, encoding: str) -> int:
    if encoding == "UCS-2":
        return 2 if ord(char) > 0xFFFF else 1  # a surrogate pair outside the BMP
    return 2 if char in GSM7_EXTENSION else 1


def _segments(text: str, encoding: str, single: int, part: int) -> int:
    total = sum(_width(c, encoding) for c in text)
    if total <= single:
        return 1 if text else 0
    segments, used = 1, 0
    for char in text:
        width = _width(char, encoding)
        if used + width > part:
            segments, used = segments + 1, 0
        used += width
    return segments


def sms_length(text: str) -> SmsLength:
    """Encoding, length and segment count of an SMS text."""
    non_gsm = tuple(dict.fromkeys(c for c in text if c not in GSM7))
    encoding = "UCS-2" if non_gsm else "GSM-7"
    single, part = (UCS2_SINGLE, UCS2_PART) if non_gsm else (GSM7_SINGLE, GSM7_PART)
    units = sum(_width(c, encoding) for c in text)
    segments = _segments(text, encoding, single, part)
    return SmsLength(
        encoding=encoding,
        characters=len(text),
        units=units,
        segments=segments,
        per_segment=single if segments <= 1 else part,
        non_gsm=non_gsm,
    )
