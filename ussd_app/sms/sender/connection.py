"""The job's database connection: one held for the job on PostgreSQL, and each transaction
done again on a new one when it was lost (``_again_if_lost``)."""

import contextlib
import logging
import time

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ...database import is_postgres
from .claims import claim_timeout

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _one_connection(session):
    """A session of the job's own on one PostgreSQL connection, held from the first claim to
    the last record: the pool pings a connection each time it hands one out (``database.py``),
    one round trip per commit (~10% of the job thread's time, py-spy), and the job commits
    after every group of answers. The ping's one use, a connection lost between two commits,
    is covered by ``_again_if_lost``. SQLite: the caller's session."""
    if not is_postgres(session):
        yield session
        return
    with session.get_bind().connect() as connection, Session(bind=connection) as own:
        yield own


# The first try again is at once (a connection cut with the server still there); then, while
# the server does not take connections (a restart, a failover), again after these pauses.
RECONNECT_PAUSE_SECONDS = 0.05


RECONNECT_PAUSE_MAX_SECONDS = 1.0


def _lost(session, exc: DBAPIError) -> bool:
    """The job's connection was lost (the error says so), or it was and could not be made again
    (a connection refused while the server restarts: psycopg's dialect calls no failed connect
    a disconnect, but the held connection is still marked invalidated)."""
    bind = session.get_bind()
    return bool(exc.connection_invalidated or getattr(bind, "invalidated", False))


def _again_if_lost(session, step, *args, **kwargs):
    """``step(*args, **kwargs)`` (writes and their commit); if the connection was lost on the
    way, again on a new one (the held connection reconnects once rolled back): at once, then
    after growing pauses while the database takes no connections, for up to the claim timeout
    (after that other senders may hold the job's rows; its answers would be recorded nowhere).
    Safe for each of the job's transactions, however many times: a record, a release and a
    renewal only write where the claim token still holds and the row is still ``sending``, so
    one done again (its first commit went through unseen) writes nothing the second time; a
    claim done again leaves the rows of the first, if it went through, to the claim timeout,
    never handed over, so sent once. Giving up after one try, a restart or failover of a moment
    failed the job with answers in hand: those receipts were sent again after the timeout."""
    deadline = time.monotonic() + claim_timeout().total_seconds()
    pause = 0.0
    while True:
        try:
            return step(*args, **kwargs)
        except DBAPIError as exc:
            if not _lost(session, exc) or time.monotonic() + pause >= deadline:
                raise
            session.rollback()
            log.warning("sms job: the database connection was lost (%s); again on a new one", exc.orig)
        time.sleep(pause)
        pause = min(max(pause * 2, RECONNECT_PAUSE_SECONDS), RECONNECT_PAUSE_MAX_SECONDS)
