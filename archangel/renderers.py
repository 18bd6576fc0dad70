"""The API's JSON renderer: DRF's, safe for text that is not valid Unicode.

A 400 often repeats what the client sent (``"\\ud800" is not a valid choice.``, an unknown
field's name). JSON can carry a lone surrogate as an escape, Python's ``str`` can hold one,
but UTF-8 cannot encode it, so DRF's ``ret.encode()`` raised and the 400 became a 500. Such
a body is rendered again with every non-ASCII character escaped, which is valid JSON that
says exactly what was received. Everything else renders as before (UTF-8, not escaped).
"""

from __future__ import annotations

from rest_framework import renderers


class JSONRenderer(renderers.JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            return _ASCII.render(data, accepted_media_type, renderer_context)


class _AsciiJSONRenderer(renderers.JSONRenderer):
    ensure_ascii = True


_ASCII = _AsciiJSONRenderer()
