"""Recording against a claim only: an answer (``sent``, ``pending`` with a backoff or with its
attempt given back, ``failed``), a release (``pending``, attempt undone) and a renewal of a
lane's claims (the package's docstring, step 3)."""

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import bindparam, update

from ...clock import utcnow
from ...database import among, is_postgres
from ..outbox import OutboxMessage, OutboxStatus
from .claims import Claim
from .gateway import Answer, Outcome

log = logging.getLogger(__name__)


def backoff(attempt: int) -> timedelta:
    config = current_app.config
    base = config["SMS_RETRY_BASE_SECONDS"]
    return timedelta(seconds=min(config["SMS_RETRY_MAX_SECONDS"], base * 2 ** max(0, attempt - 1)))


def _values(taken: Claim, answer: Answer, now: datetime) -> dict:
    """The columns an answer sets on its row (the claim cleared)."""
    values: dict = {"claim_token": None, "claimed_at": None}  # nosec B105  # clears a claim, no secret
    if answer.status_code is not None:
        values.update(gateway_status_code=answer.status_code, gateway_status=answer.status)
    if answer.outcome == Outcome.SENT:
        values.update(
            status=OutboxStatus.SENT.value,
            gateway_message_id=answer.message_id,
            cost=answer.cost,
            sent_at=now,
            failure_reason=None,
            next_attempt_at=None,
        )
    elif answer.pause:
        # The gateway's or our account's failure, not the message's: its attempt is given back
        # (an outage never uses up a receipt's attempts) and it is due again as soon as the
        # gateway's circuit lets a sender call (circuit.py), first of its number's rows.
        values.update(
            status=OutboxStatus.PENDING.value,
            attempts=taken.attempt - 1,
            failure_reason=(answer.reason or "")[:120],  # the last error, for the operator
            next_attempt_at=None,
        )
    elif answer.outcome == Outcome.FAILED or taken.attempt >= current_app.config["SMS_MAX_ATTEMPTS"]:
        values.update(status=OutboxStatus.FAILED.value, failure_reason=(answer.reason or "")[:120])
    else:
        values.update(
            status=OutboxStatus.PENDING.value,
            failure_reason=(answer.reason or "")[:120],  # the last error, for the operator
            next_attempt_at=now + backoff(taken.attempt),
        )
    return values


def _record_all(session, answered: list[tuple[Claim, Answer]], now: datetime) -> int:
    """Write each answer against its claim only (``claim_token`` matches and the row is still
    ``sending``), in the caller's transaction: one statement (executemany: one round trip on
    PostgreSQL) per set of columns written, not one per row. How many were recorded; a claim
    lost meanwhile (another sender claimed the row again after the timeout, and records its own)
    is logged."""
    table = OutboxMessage.__table__
    groups: dict[tuple, list[dict]] = {}
    for taken, answer in answered:
        values = _values(taken, answer, now)
        groups.setdefault(tuple(values), []).append(
            {"_id": taken.id, "_token": taken.token, **{f"_v_{k}": v for k, v in values.items()}}
        )
    recorded = 0
    postgres = is_postgres(session)
    for columns, rows in groups.items():
        if postgres:
            sql = _claimed_update_sql(session, table, columns)
            params = {
                f"a{i}": [row[key] for row in rows] for i, key in enumerate(_claimed_update_keys(columns))
            }
            recorded += session.connection().exec_driver_sql(sql, params).rowcount
            continue
        statement = (
            update(table)
            .where(
                table.c.id == bindparam("_id"),
                table.c.claim_token == bindparam("_token"),
                table.c.status == OutboxStatus.SENDING.value,
            )
            .values({name: bindparam(f"_v_{name}") for name in columns})
        )
        recorded += session.execute(statement, rows).rowcount
    if recorded != len(answered):
        lost = ", ".join(f"sms {t.id} attempt {t.attempt}" for t, _ in answered[:20])
        log.warning(
            "%d of %d claims were lost before their answers were recorded (among: %s)",
            len(answered) - recorded,
            len(answered),
            lost,
        )
    return recorded


def _claimed_update_keys(columns: tuple) -> list[str]:
    """The keys of ``_record_all``'s rows, in the order of ``_claimed_update_sql``'s arrays."""
    return ["_id", "_token", *(f"_v_{name}" for name in columns)]


# The statement for each set of columns an answer writes (a handful: sent, retried, failed).
_claimed_update_sqls: dict[tuple, str] = {}


def _claimed_update_sql(session, table, columns: tuple) -> str:
    """PostgreSQL: ``_record_all``'s executemany as one statement (``UPDATE ... FROM
    unnest(...)``, one array per column, as ``database.update_rows``), with the same condition
    for each row (its id, its claim token, still ``sending``); its rowcount is how many held.
    Written once per set of columns and run as the driver's own SQL (its arrays bound as
    ``%(aN)s``, in ``_claimed_update_keys`` order): a record is the job thread's most frequent
    statement, and SQLAlchemy's compiling of a ``text()`` with its array parameters (cache key,
    types) was about as much Python as the rest of the record while the lane waits for the GIL."""
    sql = _claimed_update_sqls.get(columns)
    if sql is not None:
        return sql
    dialect = session.get_bind().dialect
    specs = [("id", table.c.id), ("token", table.c.claim_token)]
    specs += [(f"v_{name}", table.c[name]) for name in columns]
    casts = [
        f"CAST(%(a{i})s AS {column.type.compile(dialect=dialect)}[])" for i, (_, column) in enumerate(specs)
    ]
    # Table and column names come from our model, never from input; the values are bound.
    sets = ", ".join(f"{name} = v.v_{name}" for name in columns)
    names, arrays, t = ", ".join(alias for alias, _ in specs), ", ".join(casts), table.name
    sending = OutboxStatus.SENDING.value
    sql = (
        f"UPDATE {t} SET {sets} FROM unnest({arrays}) AS v({names}) "  # noqa: S608  # nosec B608
        f"WHERE {t}.id = v.id AND {t}.claim_token = v.token AND {t}.status = '{sending}'"
    )
    _claimed_update_sqls[columns] = sql
    return sql


def _record(session, taken: Claim, answer: Answer, now: datetime) -> bool:
    """Write one answer against its claim, in the caller's transaction. False when the claim
    was lost (another sender claimed the row again after the timeout): that sender records its
    own."""
    return _record_all(session, [(taken, answer)], now) == 1


def record(session, taken: Claim, answer: Answer, now: datetime | None = None) -> bool:
    """Write one answer against its claim and commit. False when the claim was lost."""
    recorded = _record(session, taken, answer, now or utcnow())
    session.commit()
    return recorded


def record_batch(session, answered: list[tuple[Claim, Answer]], now: datetime | None = None) -> int:
    """Write each answer against its claim, all in one transaction, and commit. How many were
    recorded; a lost claim is logged and skipped, as ``record`` does."""
    recorded = _record_all(session, answered, now or utcnow())
    session.commit()
    return recorded


def _unclaim(session, released: list[Claim]) -> None:
    """Hand claimed rows back, never handed over: ``pending`` again with their attempt undone,
    in the caller's transaction (only where the claim still holds)."""
    table = OutboxMessage.__table__
    session.execute(
        update(table)
        .where(
            table.c.id == bindparam("_id"),
            table.c.claim_token == bindparam("_token"),
            table.c.status == OutboxStatus.SENDING.value,
        )
        .values(
            status=OutboxStatus.PENDING.value,
            attempts=table.c.attempts - 1,
            claim_token=None,
            claimed_at=None,
        ),
        [{"_id": taken.id, "_token": taken.token} for taken in released],
    )


def renew(session, claims: list[Claim], now: datetime | None = None) -> set[str]:
    """Move the claims' ``claimed_at`` to ``now`` where they still hold (the row is
    ``sending`` under that claim token), and commit: a live sender keeps its lanes while they
    run, so the claim timeout need only cover a dead one. The tokens renewed."""
    if not claims:
        return set()
    table = OutboxMessage.__table__
    renewed = set(
        session.execute(
            update(table)
            .where(
                among(session, table.c.claim_token, [taken.token for taken in claims]),
                table.c.status == OutboxStatus.SENDING.value,
            )
            .values(claimed_at=now or utcnow())
            .returning(table.c.claim_token)
        ).scalars()
    )
    session.commit()
    return renewed
