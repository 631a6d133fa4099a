"""How one operation runs, in this order, for every route of ``/api/v1``:

1. the key (``auth.authenticate``: 401, 403 locked owner, 429 rate);
2. the key's scope (403 ``insufficient_scope``); a path id with a control character is 404;
3. a POST's ``Idempotency-Key`` (422 when missing or malformed);
4. the body or query, read within ``API_MAX_BODY_BYTES`` and validated by its model (400, 413,
   415, 422 with the first problem named);
5. a POST claims its idempotency row (a replay or 422/409 answers here: ``idempotency.py``);
6. the view, given the caller and the validated input, returns (model, status);
7. a POST stores its answer with its effect; the request's one commit.

Nothing in a view commits; a refusal (``ApiError``) rolls back everything the request did.
"""

import csv
import io
import json
from functools import wraps

from flask import current_app, jsonify, request
from pydantic import BaseModel, ValidationError

from ..extensions import db
from . import idempotency
from .auth import authenticate, require_scope
from .errors import ApiError
from .schemas import ErrorBody, IdempotencyHeaders
from .spec import responses, spec


def describe(exc: ValidationError) -> str:
    """The first problem of a validation error, in one line: ``amount: ...``."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = first.get("msg", "invalid")
    return f"{where}: {message}" if where else message


def validated_batch(model: type[BaseModel], data, rows: str):
    """``data`` as a ``model`` whose list of rows is the field ``rows``, or a 422 naming the
    first bad row by its number (``row 3: amount: ...``)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = list(first.get("loc", ()))
        if where[:1] == [rows] and len(where) > 1 and isinstance(where[1], int):
            field = ".".join(str(p) for p in where[2:])
            message = f"row {where[1] + 1}: {field + ': ' if field else ''}{first.get('msg', 'invalid')}"
            raise ApiError("invalid_request", message) from None
        raise ApiError("invalid_request", describe(exc)) from None


def _read_body() -> bytes:
    limit = current_app.config["API_MAX_BODY_BYTES"]
    request.max_content_length = limit  # also caps a body sent without Content-Length
    if request.content_length is not None and request.content_length > limit:
        raise ApiError("body_too_large")
    if request.streamed_past(limit):  # chunked and longer: refused whole, never read cut
        raise ApiError("body_too_large")
    return request.get_data(cache=True)


class _KeyTwice(ValueError):
    pass


def _one_each(pairs: list[tuple[str, object]]) -> dict:
    """An object's members, each name at most once: ``{"amount": 100, "amount": 5000}`` is
    refused, never read as its last value (which another reader may not)."""
    found = dict(pairs)
    if len(found) != len(pairs):
        twice = next(name for n, (name, _) in enumerate(pairs) if name in dict(pairs[:n]))
        raise _KeyTwice(twice)
    return found


def json_body():
    """The body as JSON (any value; the model says what it must be); an object naming a key
    twice is 400 ``invalid_json``."""
    raw = _read_body()
    if request.mimetype != "application/json":
        raise ApiError("unsupported_media_type")
    try:
        return json.loads(raw, object_pairs_hook=_one_each)
    except _KeyTwice as exc:
        raise ApiError("invalid_json", f"The body names {str(exc)!r} twice in one object.") from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: nested deeper than the decoder goes ("[[[[..." in a few KB), was a 500.
        raise ApiError("invalid_json") from None


def csv_rows(columns: tuple[str, ...], required: tuple[str, ...] = ("phone", "amount")) -> list[dict]:
    """A ``text/csv`` body with a header row naming ``columns`` (in any order, each at most
    once, ``required`` ones present) -> its rows as {column: cell}. A row with more or fewer
    cells than the header is refused (400 ``invalid_csv`` naming it), never cut or padded: a
    cell the header does not name would otherwise vanish (``0700000004,150,000`` paid 150)."""
    raw = _read_body()
    try:
        lines = [cells for cells in csv.reader(io.StringIO(raw.decode("utf-8-sig"))) if cells]
    except (UnicodeDecodeError, csv.Error):
        raise ApiError("invalid_csv") from None
    if not lines:
        raise ApiError("invalid_csv")
    header = [name.strip() for name in lines[0]]
    repeated = sorted({name for name in header if header.count(name) > 1})
    unknown = [name for name in header if name not in columns]
    missing = [name for name in required if name not in header]
    if repeated or unknown or missing:
        problem = (
            f"column named twice: {', '.join(repeated)}"
            if repeated
            else f"unknown column: {', '.join(unknown)}"
            if unknown
            else f"missing column: {', '.join(missing)}"
        )
        raise ApiError("invalid_csv", f"header: {problem} (the header is {','.join(columns)})")
    rows = []
    for n, cells in enumerate(lines[1:], 1):
        if len(cells) != len(header):
            raise ApiError(
                "invalid_csv",
                f"row {n}: {len(cells)} cells for the header's {len(header)} "
                "(a comma inside a value needs the value in double quotes)",
            )
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def validated(model: type[BaseModel], data):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError("invalid_request", describe(exc)) from None


def answer(model: BaseModel, status: int = 200):
    response = jsonify(model.model_dump(mode="json"))
    response.status_code = status
    return response


def operation(
    *,
    scope: str,
    json_model: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    reader=None,
    body_doc: type[BaseModel] | None = None,
    ok: dict,
    tags: tuple[str, ...] = (),
    operation_id: str | None = None,
):
    """Wrap a view ``view(caller, data, **path)`` -> (model, status) as described above.

    ``json_model``: the body's model (POST); ``reader``: instead, a function that reads and
    validates the body itself (e.g. JSON or CSV) and returns (input, fingerprint source);
    ``body_doc``: the body's model for the document when ``reader`` reads it; ``query``: the
    query string's model; ``ok``: the success and extra error responses for the document
    (``{"HTTP_201": Model, "HTTP_404": ErrorBody}``). A POST may also answer 409."""
    post = json_model is not None or reader is not None

    def decorate(view):
        @wraps(view)
        def run(**path):
            try:
                return _run(view, path)
            except BaseException:
                db.session.rollback()  # a refusal leaves nothing behind, whoever owns the session
                raise

        def _run(view, path):
            caller = authenticate()
            require_scope(caller, scope)
            if not all(value.isprintable() for value in path.values()):
                # No id holds a control character, and PostgreSQL refuses a NUL in a query (a
                # 500 for ``/allowances/al_%00``): no such resource, as for any unknown id.
                raise ApiError("not_found")
            data, source = None, None
            if post:
                key = idempotency.header_key()
                if reader is not None:
                    data, source = reader()
                else:
                    source = json_body()
                    try:
                        data = validated(json_model, source)
                    except ApiError:
                        # Valid when first sent, not now (its ends_at has passed): the same key
                        # and body replay the stored answer; anything else is refused as it was.
                        replay = idempotency.stored(caller.key.id, key, idempotency.fingerprint(source))
                        if replay is None:
                            raise
                        db.session.rollback()
                        return replay
            elif query is not None:
                data = validated(query, request.args.to_dict())
            if not post:
                model, status = view(caller, data, **path)
                db.session.rollback()  # a read: nothing to keep
                return answer(model, status)
            claimed = idempotency.claim(caller.key.id, key, idempotency.fingerprint(source))
            if not isinstance(claimed, tuple):
                return claimed  # the first answer, replayed
            model, status = view(caller, data, idempotency_key=key, **path)
            response = answer(model, status)
            idempotency.remember(claimed, response)
            db.session.commit()
            return response

        documented_answers = {**ok, "HTTP_409": ErrorBody} if post else ok
        documented = spec.validate(
            json=json_model or body_doc,
            query=query,
            headers=IdempotencyHeaders if post else None,
            resp=responses(**documented_answers),
            tags=tags,
            security={"bearer": []},
            skip_validation=True,
            operation_id=operation_id,
        )(run)
        return documented

    return decorate
