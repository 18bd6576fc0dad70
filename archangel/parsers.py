"""The API's JSON parser: DRF's, with a bound on how deeply a body may nest.

Python's JSON decoder recurses once per level: a body of a few thousand ``[`` (a few KB,
well under the body cap) raised ``RecursionError``, which DRF's parser does not catch,
and answered 500. Past the decoder, a body nested hundreds of levels deep would recurse
again wherever it is copied or encoded (JSON fields, the audit log, the outbox payload).
No request of this API nests more than a handful of levels (a bulk body is three: the
object, its ``tasks`` list, each task; a provider's config adds a few), so anything
deeper than :data:`MAX_DEPTH` is refused as a parse error before any view sees it.
"""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 32


_CONTAINERS = (dict, list)  # what json.loads makes that can nest (a tuple: faster than dict | list)


def nested_deeper_than(value, limit: int) -> bool:
    """Whether ``value`` holds objects/arrays nested more than ``limit`` levels (iterative: no recursion).

    About 1 ms for a bulk body of 1,000 tasks, beside about 1 ms for json.loads of it."""
    stack = [(value, 1)] if isinstance(value, _CONTAINERS) else []
    push = stack.append
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        depth += 1
        for child in item.values() if type(item) is dict else item:
            if isinstance(child, _CONTAINERS):
                push((child, depth))
    return False


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            data = None
        else:
            if not nested_deeper_than(data, MAX_DEPTH):
                return data
        raise ParseError(f"JSON parse error - the body nests objects or arrays more than {MAX_DEPTH} levels deep.")
