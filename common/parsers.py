"""The API's request parser (its own module: DRF loads it while importing its views)."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, parsers


class JsonParser(parsers.JSONParser):
    """DRF's JSON parser; a body nested deeper than Python's parser can follow is a 400."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from exc
