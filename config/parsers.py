"""The API's JSON parser: refuses at the edge what would otherwise fail deep inside.

- NUL characters (``\\u0000``): PostgreSQL refuses them in text and jsonb, so a NUL in
  any key or value would reach the database and come back as a 500.
- Deep nesting: past Python's recursion limit ``json`` raises RecursionError, and a few
  hundred levels already exhaust the serializers (deepcopy, validation) further on.
"""

from typing import Any, NoReturn

from rest_framework import exceptions, parsers

# No payload of this API nests deeper than ~6 levels (batch → item → cart → items → item);
# 64 leaves room for free-form personalization and content without risking recursion.
MAX_JSON_DEPTH = 64
NUL = "\x00"


def check_json_document(document: Any) -> None:
    """Raise a 400 naming the JSON path of the first NUL, or the limit when too deep."""
    # Iterative, so a hostile document cannot exhaust the stack here either.
    pending: list[tuple[Any, str, int]] = [(document, "", 1)]
    while pending:
        value, path, depth = pending.pop()
        if isinstance(value, str):
            if NUL in value:
                raise exceptions.ValidationError(
                    {path or "non_field_errors": ["Null characters are not allowed."]}
                )
            continue
        if isinstance(value, dict):
            children: Any = value.items()
        elif isinstance(value, list):
            children = enumerate(value)
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise_too_deep()
        for key, child in children:
            if isinstance(key, str) and NUL in key:
                raise exceptions.ValidationError(
                    {path or "non_field_errors": ["Null characters are not allowed in keys."]}
                )
            pending.append((child, f"{path}.{key}" if path else str(key), depth + 1))


def raise_too_deep() -> NoReturn:
    raise exceptions.ParseError(
        f"JSON nested too deeply: at most {MAX_JSON_DEPTH} levels of objects and arrays."
    )


class CheckedJSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            document = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise_too_deep()
        check_json_document(document)
        return document
