"""How a posted form is read: Werkzeug's own reading, with a shorter road for the
``application/x-www-form-urlencoded`` bodies every gateway posts (a USSD hop, an SMS callback).

Werkzeug reads such a body by building a ``FormDataParser`` (Flask's request asks the app's
config for three limits through ``current_app`` on the way) and passing the decoded text to
``urllib.parse.parse_qsl``, which unquotes every name and value: about 260 Python calls for the
five fields of a USSD hop, the largest single cost of a hop after the database and Redis. Here
the same text gives the same pairs (``_pairs``: what ``parse_qsl(text, keep_blank_values=True,
errors="werkzeug.url_quote")`` gives, unquoting only a part that holds a "%" or "+"), read
from the same stream: Werkzeug's own ``LimitedStream``, capped by the same
``max_content_length`` (the guard's ``WEBHOOK_MAX_BODY_BYTES``, else ``MAX_CONTENT_LENGTH``),
so a body over it is the same ``RequestEntityTooLarge`` and the same refusal. Werkzeug applies
neither ``max_form_memory_size`` nor ``max_form_parts`` to a URL-encoded body (only to
multipart): nothing is left out. A body that is not UTF-8 is an empty form, as Werkzeug's
silent parser makes it. Any other content type (multipart, JSON) is Werkzeug's reading as it is.
tests/test_forms.py compares the two on any body.

One difference, on purpose: a body streamed without a Content-Length (chunked; the server,
gunicorn, terminates the stream) and longer than the cap is too large here. Werkzeug's stream
stops at the cap without a word when read whole, and its parser reads the body cut there: the
fields after the cut dropped, the one cut read as its first part (``_past_the_cap``).
"""

from urllib.parse import unquote

import werkzeug.urls  # noqa: F401  (registers the "werkzeug.url_quote" error handler used below)
from flask import Request
from flask.globals import _cv_app
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import LimitedStream

URLENCODED = "application/x-www-form-urlencoded"


class TumaRequest(Request):
    def _load_form_data(self) -> None:
        if "form" in self.__dict__:
            return
        # (The header as gateways send it is the type itself: no need to parse it.)
        if self.environ.get("CONTENT_TYPE") != URLENCODED and self.mimetype != URLENCODED:
            super()._load_form_data()
            return
        stream = self._get_stream_for_parsing()  # limited to max_content_length: 413 past it
        body = stream.read()
        if self.content_length is None and type(stream) is LimitedStream and stream.is_exhausted:
            _past_the_cap(self.environ)
        try:
            pairs = _pairs(body.decode())
        except ValueError:  # not UTF-8: FormDataParser (silent) answers empty forms
            pairs = []
        d = self.__dict__
        d["stream"], d["form"], d["files"] = (
            stream,
            self.parameter_storage_class(pairs),
            self.parameter_storage_class(),
        )
        app = _cv_app.get(None)  # (current_app, read once)
        if app is not None and app.app.debug:  # what Flask's Request adds in debug mode
            from flask.debughelpers import attach_enctype_error_multidict

            attach_enctype_error_multidict(self)

    def streamed_past(self, limit: int) -> bool:
        """Whether a body streamed without a Content-Length (chunked; the server, gunicorn,
        terminates the stream) goes on past ``limit``. There is no length to refuse up front,
        and Werkzeug's capped stream, read whole, stops at the cap without a word: a gateway's
        form or JSON, or a merchant's CSV batch, would be read cut there (a last row's amount
        5000 read as 50). The body is read here and kept for the view (``get_data(cache=True)``),
        and the server's stream asked for one byte more only when the body filled the cap. A
        body with a Content-Length is not read: the caller compares the length."""
        if self.content_length is not None or "wsgi.input_terminated" not in self.environ:
            return False
        self.max_content_length = limit
        return len(self.get_data(cache=True)) >= limit and bool(self.environ["wsgi.input"].read(1))


def _past_the_cap(environ) -> None:
    """A streamed body (no Content-Length) was read up to the cap, where Werkzeug's limited
    stream stops reading without a refusal: one more byte from the server's stream says
    whether the body went on past it. Then it is too large, as a body whose Content-Length
    says so is (the same 413, the same refusal); a body exactly as long as the cap is read."""
    if environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()


def _pairs(text: str) -> list[tuple[str, str]]:
    """``urllib.parse.parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote")``:
    fields split on "&" (empty ones skipped), each on its first "=" (none: an empty value),
    "+" read as a space and %-escapes decoded (``_unquoted``)."""
    pairs = []
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "+" in field:
            name, value = name.replace("+", " "), value.replace("+", " ")
        if "%" in field:
            name, value = _unquoted(name), _unquoted(value)
        pairs.append((name, value))
    return pairs


_HEX = "0123456789ABCDEFabcdef"
# Every two-character escape, in either case, as urllib's unquote_to_bytes knows them: those of
# ASCII characters (below %80) and the others (bytes of a UTF-8 sequence, or of none).
_ASCII_ESCAPES = {a + b: chr(int(a + b, 16)) for a in _HEX[:8] for b in _HEX}
_OTHER_ESCAPES = frozenset(a + b for a in _HEX[8:] for b in _HEX)


def _unquoted(part: str) -> str:
    """``urllib.parse.unquote(part, errors="werkzeug.url_quote")``. The escapes a gateway
    sends ("%2B254...", "1%2A0711...", "%2A384%23") are of ASCII characters: each is its
    character, and a "%" not followed by two hex digits stays as it is (what unquote does).
    A part with an escape of a byte from %80 up (UTF-8, or bytes that are not) is unquote's."""
    head, *rest = part.split("%")
    for piece in rest:
        code = piece[:2]
        if code in _ASCII_ESCAPES:
            head += _ASCII_ESCAPES[code] + piece[2:]
        elif code in _OTHER_ESCAPES:
            return unquote(part, errors="werkzeug.url_quote")
        else:
            head += "%" + piece
    return head
