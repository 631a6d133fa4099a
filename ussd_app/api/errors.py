"""Errors: every refusal of ``/api/v1`` is ``{"error": {"code", "message"}}`` with a stable code.

``CODES`` is the catalogue (docs/api.md lists it): the code is what a merchant's system branches
on and never changes; the message is for the person reading the logs and may. A view raises
``ApiError(code)`` (or ``ApiError(code, message)``); ``init_app`` turns it, and every HTTP error
raised under ``/api/`` (404, 405, 413, ...), into that shape. Nothing under ``/api/`` answers HTML.
"""

from flask import current_app, jsonify, request
from werkzeug.exceptions import HTTPException

# code: (HTTP status, default message)
CODES: dict[str, tuple[int, str]] = {
    "invalid_json": (400, "The body is not JSON (or not the JSON object this operation takes)."),
    "invalid_csv": (400, "The body is not CSV with a header row phone,amount,reference."),
    "unauthenticated": (401, "No valid API key: send Authorization: Bearer <key>."),
    "insufficient_scope": (403, "This key's scopes do not allow this operation."),
    "account_locked": (403, "The key's owner is locked; ask Tuma's operators."),
    "not_found": (404, "No such resource for this key's owner."),
    "method_not_allowed": (405, "This method is not allowed here."),
    "idempotency_in_progress": (409, "A request with this Idempotency-Key is still being processed; retry."),
    "body_too_large": (413, "The body is larger than this API accepts."),
    "unsupported_media_type": (415, "Send application/json (or text/csv where the operation says so)."),
    "invalid_request": (422, "The request is not valid."),
    "idempotency_key_missing": (422, "Every POST needs an Idempotency-Key header."),
    "idempotency_key_reused": (422, "This Idempotency-Key was used with another request body."),
    "currency_not_supported": (422, "Amounts are in this service's currency only."),
    "invalid_phone": (422, "Not a mobile number of this service's country."),
    "recipient_not_found": (422, "No Tuma customer has that phone number."),
    "payer_not_found": (422, "No Tuma customer has that phone number."),
    "own_number": (422, "That is the key owner's own number."),
    "too_many_requests_to_payer": (422, "Too many payment requests to this number today."),
    "refund_exceeds_payment": (422, "More than what is left of that payment to refund."),
    # Allowances (api/allowances.py; the charge refusals are payments/allowances.Refusal's words).
    "customer_not_found": (422, "No Tuma customer has that phone number."),
    "too_many_allowance_requests": (422, "Too many allowance requests to this number today."),
    "allowance_not_active": (
        409,
        "The allowance is not taking charges now (not approved, settling, paused or ended).",
    ),
    "exceeds_allowance_left": (409, "More than what is left of the allowance this period."),
    "exceeds_max_charge": (422, "More than the allowance's most per charge."),
    "rate_limited": (429, "Too many requests for this key; slow down."),
    "internal_error": (500, "Something went wrong on our side; it was logged."),
    "not_priced": (503, "Payouts have no price in the tariff in force; ask Tuma's operators."),
}


class ApiError(Exception):
    def __init__(self, code: str, message: str | None = None, headers: dict | None = None):
        status, default = CODES[code]
        super().__init__(code)
        self.code, self.status, self.message = code, status, message or default
        self.headers = headers or {}


def error_response(code: str, message: str | None = None, headers: dict | None = None):
    status, default = CODES[code]
    response = jsonify({"error": {"code": code, "message": message or default}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _api_error(exc: ApiError):
    return error_response(exc.code, exc.message, exc.headers)


_HTTP_CODES = {400: "invalid_json", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
_HTTP_CODES |= {415: "unsupported_media_type", 429: "rate_limited"}


def _http_error(exc: HTTPException):
    if not request.path.startswith("/api/"):
        return exc  # every other surface keeps its own answer
    code = _HTTP_CODES.get(exc.code or 500)
    if code is None:
        return error_response("invalid_request", exc.description) if (exc.code or 500) < 500 else exc
    # The error's own headers go with our body: a 405 must say which methods the path takes
    # (``Allow``, RFC 9110), a 429 or 503 when to come back (``Retry-After``).
    kept = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
    return error_response(code, headers=kept)


def _unexpected(exc: Exception):
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    if not request.path.startswith("/api/"):
        raise exc
    current_app.logger.exception("api: unexpected error on %s %s", request.method, request.path)
    return error_response("internal_error")


def register(bp) -> None:
    """``bp``'s own errors (once, at import). Only ``bp`` handles 413: ``security.py`` answers
    it for the webhooks."""
    bp.register_error_handler(ApiError, _api_error)
    bp.register_error_handler(HTTPException, _http_error)
    bp.register_error_handler(Exception, _unexpected)


def init_app(app) -> None:
    """The two errors the router raises before any blueprint is chosen: an unknown path or
    method under ``/api/``."""
    for status in (404, 405):
        app.register_error_handler(status, _http_error)
