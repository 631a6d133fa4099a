"""Trace ids on every web request, and the thread that ties a transfer to the web request that
asked for it, through the worker, to its SMS.

- Each web request gets a trace id (the ``X-Request-Id`` header in and out, the name proxies
  use), bound to its log lines.
- When a transfer request is recorded, a log line names it and the trace id, and once its
  transaction commits its id is remembered in Redis against the trace id (a day).
- Worker jobs run bound to the trace id of the transfer that woke them
  (``jobs.observe_job``); the SMS receipts a commit wrote for a transfer (one line a transfer,
  with their count), and each claim to send one, log the transfer id and the trace id of the
  request that recorded that transfer (a batch's job is bound to only one of them).

Hooks only (SQLAlchemy mapper events, Flask request hooks): the modules they watch are not
changed.
"""

import logging
import time

from flask import g, has_request_context, request
from sqlalchemy import event
from sqlalchemy.orm import Session, object_session

from ..logging_setup import new_trace_id, trace_id_var
from . import metrics

log = logging.getLogger("tuma.trace")

TRACE_TTL_SECONDS = 24 * 3600
_cache: dict[str, str] = {}
_CACHE_SIZE = 10_000


def _trace_key(transfer_id: str) -> str:
    return f"tuma:trace:{transfer_id}"


def remember(transfer_id: str, trace_id: str) -> None:
    from ..queues import get_redis

    try:
        get_redis().set(_trace_key(transfer_id), trace_id, ex=TRACE_TTL_SECONDS)
    except Exception:  # tracing must never break a transfer
        log.warning("could not remember the trace id of transfer %s", transfer_id)


def remember_after_commit(session, transfer_id: str, trace_id: str) -> None:
    """``remember``, once ``session``'s transaction commits (a rolled back request is not
    remembered), in the commit's one round trip to Redis with its doorbells (queues)."""
    from ..queues import send_after_commit

    send_after_commit(session, "SET", _trace_key(transfer_id), trace_id, "EX", TRACE_TTL_SECONDS)


def trace_id_for(transfer_id: str | None) -> str | None:
    """The trace id of the web request that recorded ``transfer_id``, if known."""
    return trace_ids_for([transfer_id]).get(transfer_id) if transfer_id else None


def trace_ids_for(transfer_ids) -> dict[str, str]:
    """{transfer id: trace id} for those known, in one round trip for the uncached."""
    found = {t: _cache[t] for t in transfer_ids if t in _cache}
    missing = [t for t in transfer_ids if t not in _cache]
    if missing:
        from ..queues import get_redis

        try:
            values = get_redis().mget([_trace_key(t) for t in missing])
        except Exception:  # tracing must never break anything
            values = [None] * len(missing)
        for transfer_id, raw in zip(missing, values, strict=True):
            if raw is not None:
                found[transfer_id] = raw.decode() if isinstance(raw, bytes) else str(raw)
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        _cache.update({t: found[t] for t in missing if t in found})
    return found


def job_trace_id(job, args) -> str | None:
    """A job runs under the trace id of the transfer that woke it, else its own job id."""
    transfer_id = args[0] if args and isinstance(args[0], str) else None
    return trace_id_for(transfer_id) or (f"job-{job.id}" if job is not None else None)


# -- mapper events -----------------------------------------------------------------------


def _transfer_recorded(mapper, connection, target) -> None:
    transfer_recorded(object_session(target), target.id, target.kind, target.code)


def transfer_recorded(session, transfer_id: str, kind: str, code: str) -> None:
    """A transfer request written in ``session``'s transaction: its log line now, its trace id
    remembered after the commit. The ORM's inserts (``_transfer_recorded``) and those written
    by a statement (``payments.submit.record_request_row``, through ``submit.on_row_insert``)."""
    trace_id = trace_id_var.get()
    if trace_id:
        if session is not None:
            remember_after_commit(session, transfer_id, trace_id)
        else:  # not in a session (never seen): at once, as before
            remember(transfer_id, trace_id)
    log.info("transfer request recorded", extra={"transfer_id": transfer_id, "kind": kind, "code": code})


# SMS log lines are written when their transaction commits, not from inside it: the trace id
# of each transfer is read from Redis once per commit (one MGET), never per row while the
# batch's database transaction and its locks are open.
_PENDING = "tuma_trace_sms"
# The receipts a commit writes are logged one line a transfer, with their count (a send has
# two, one a party; a line a receipt was a tenth of the ledger worker's time in a profile).
# This maps each transfer id to the ``extra`` of its pending line, which each row counts in.
_WRITTEN = "tuma_trace_sms_written"
WRITTEN = "sms receipts written to the outbox"


def _defer(target, message: str, **extra) -> None:
    session = object_session(target)
    if session is not None and target.transfer_request_id:
        session.info.setdefault(_PENDING, []).append((message, target.transfer_request_id, extra))


def _count_written(info: dict, transfer_ids) -> None:
    """One pending line a transfer, at the place of its first receipt, counting its rows."""
    written = info.get(_WRITTEN)
    if written is None:
        written = info[_WRITTEN] = {}
    pending = None
    for transfer_id in transfer_ids:
        if not transfer_id:
            continue
        extra = written.get(transfer_id)
        if extra is None:
            extra = written[transfer_id] = {"receipts": 0}
            if pending is None:
                pending = info.setdefault(_PENDING, [])
            pending.append((WRITTEN, transfer_id, extra))
        extra["receipts"] += 1


def _sms_written(mapper, connection, target) -> None:
    session = object_session(target)
    if session is not None and target.transfer_request_id:
        _count_written(session.info, (target.transfer_request_id,))


def sms_written(session, transfer_ids) -> None:
    """The same line for rows written without the ORM (``outbox.batched``, which calls this
    once ``listen`` has asked it to: ``outbox.on_bulk_insert``)."""
    if not _listening:  # nobody would take them off the session after the commit
        return
    _count_written(session.info, transfer_ids)


def sms_claimed(session, claimed) -> None:
    """The same line for rows claimed without the ORM (``sender.claim_lanes``, through
    ``outbox.on_bulk_claim``): ``claimed`` is (sms id, attempt, transfer id or None) a row."""
    if not _listening:
        return
    pending = session.info.setdefault(_PENDING, [])
    pending.extend(
        ("sms claimed for sending", rid, {"sms_id": sms_id, "attempt": attempt})
        for sms_id, attempt, rid in claimed
        if rid
    )


def _sms_updated(mapper, connection, target) -> None:
    if target.status == "sending":
        _defer(target, "sms claimed for sending", sms_id=target.id, attempt=target.attempts)


def _after_commit(session) -> None:
    session.info.pop(_WRITTEN, None)
    pending = session.info.pop(_PENDING, None)
    if not pending or not log.isEnabledFor(logging.INFO):  # no line to write: no MGET either
        return
    # In a web request its lines carry its own trace id. Elsewhere (a worker's job, bound to
    # the trace id of the one transfer that woke a batch of hundreds) each transfer's line
    # carries the trace id of the request that recorded it, read in one MGET a commit, and the
    # job's only for a transfer with none remembered.
    current = trace_id_var.get()
    in_request = current is not None and has_request_context()
    known = {} if in_request else trace_ids_for({transfer_id for _, transfer_id, _ in pending})
    for message, transfer_id, extra in pending:
        # The ids as the record's own fields, which the JSON line takes before the context's
        # (``logging_setup.bound`` here cost a tenth of the line: four context variable calls
        # and a generator, for one record).
        ids = {"trace_id": known.get(transfer_id) or current, "transfer_id": transfer_id}
        log.info(message, extra={**ids, **extra} if extra else ids)


def _after_rollback(session) -> None:
    session.info.pop(_WRITTEN, None)
    session.info.pop(_PENDING, None)


_listening = False


def listen() -> None:
    global _listening
    if _listening:
        return
    from ..payments import submit
    from ..payments.models import TransferRequest
    from ..sms import outbox
    from ..sms.outbox import OutboxMessage

    outbox.on_bulk_insert(sms_written)
    outbox.on_bulk_claim(sms_claimed)
    submit.on_row_insert(transfer_recorded)
    event.listen(TransferRequest, "after_insert", _transfer_recorded)
    event.listen(OutboxMessage, "after_insert", _sms_written)
    event.listen(OutboxMessage, "after_update", _sms_updated)
    event.listen(Session, "after_commit", _after_commit)
    event.listen(Session, "after_rollback", _after_rollback)
    _listening = True


# -- request hooks -----------------------------------------------------------------------


# (Each hook looks ``g`` and ``request`` up once: a proxy access is a few calls, and these run
# on every request.)


def _before_request() -> None:
    ctx_g = g._get_current_object()
    ctx_g.trace_id = trace_id = new_trace_id(request.headers.get("X-Request-Id"))
    ctx_g.trace_id_token = trace_id_var.set(trace_id)
    ctx_g.request_started = time.perf_counter()


def _after_request(response):
    ctx_g = g._get_current_object()
    response.headers["X-Request-Id"] = ctx_g.get("trace_id", "")
    endpoint = request.endpoint or "unmatched"
    started = ctx_g.get("request_started")
    if started is not None:
        metrics.observe_request(endpoint, response.status_code, time.perf_counter() - started)
    if endpoint == "ussd.ussd":
        _observe_ussd(response, ctx_g)
    elif endpoint.startswith("ussd.gateway_") and ctx_g.get("ussd_outcome"):
        # Another gateway's JSON: its view says whether the session goes on (ussd/gateways/).
        metrics.observe_ussd(ctx_g.get("ussd_screen", "none"), ctx_g.ussd_outcome)
    return response


def _observe_ussd(response, ctx_g) -> None:
    """The screen the hop left the session on (the view sets ``g.ussd_screen``), and con or end."""
    body = response.get_data()[:4]
    outcome = "con" if body.startswith(b"CON") else "end"
    metrics.observe_ussd(ctx_g.get("ussd_screen", "none"), outcome)


def _teardown_request(exc) -> None:
    token = g._get_current_object().pop("trace_id_token", None)
    if token is not None:
        try:
            trace_id_var.reset(token)
        except ValueError:  # set in another context (a streamed response): leave it
            pass


def init_app(app) -> None:
    listen()
    app.before_request(_before_request)
    app.after_request(_after_request)
    app.teardown_request(_teardown_request)
