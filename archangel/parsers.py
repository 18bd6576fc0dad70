"""The API's JSON parser: DRF's, with a bound on how deeply a body may nest.

Python's JSON decoder recurses once per level: a body of a few thousand ``[`` (a few KB,
well under the body cap) raised ``RecursionError``, which DRF's parser does not catch,
and answered 500. Past the decoder, a body nested hundreds of levels deep would recurse
again wherever it is copied or encoded (JSON fields, the audit log, the outbox payload).
No request of this API nests more than a handful of levels (a bulk body is three: the
object, its ``tasks`` list, each task; a provider's config adds a few), so anything
deeper than :data:`MAX_DEPTH` is refused as a parse error before any view sees it.

:func:`json_problem` is the one walk over a parsed body; webhook intake asks it for more
(what PostgreSQL cannot store, providers_app/webhooks.py).
"""

from __future__ import annotations

import math
import re

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 32

_CONTAINERS = (dict, list)  # what json.loads makes that can nest (a tuple: faster than dict | list)
# What PostgreSQL cannot store, in jsonb or text: NUL, and UTF-16 halves without their pair.
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")


def json_problem(value, *, limit: int = MAX_DEPTH, storable: bool = False) -> str | None:
    """What is wrong with a parsed JSON value, as the end of "The body ...", or None.

    Objects/arrays nested more than ``limit`` levels; with ``storable``, also what PostgreSQL
    would refuse at insert time: NUL or an unpaired surrogate in a key or a string, and a
    number past what a float holds (1e309 parses as infinity). Iterative: no recursion."""
    stack = [(value, 1)] if isinstance(value, _CONTAINERS) else []
    push = stack.append
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return f"nests objects or arrays more than {limit} levels deep"
        depth += 1
        if not storable:
            for child in item.values() if type(item) is dict else item:
                if isinstance(child, _CONTAINERS):
                    push((child, depth))
            continue
        for key, child in item.items() if type(item) is dict else enumerate(item):
            if type(key) is str and _UNSTORABLE_TEXT.search(key):
                return "holds a NUL character or an unpaired surrogate"
            if type(child) is str:
                if _UNSTORABLE_TEXT.search(child):
                    return "holds a NUL character or an unpaired surrogate"
            elif type(child) is float:
                if not math.isfinite(child):
                    return "holds a number too large for JSON (1e309 and beyond)"
            elif isinstance(child, _CONTAINERS):
                push((child, depth))
    return None


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            problem = f"nests objects or arrays more than {MAX_DEPTH} levels deep"
        else:
            problem = json_problem(data)
            if problem is None:
                return data
        raise ParseError(f"JSON parse error - the body {problem}.")
