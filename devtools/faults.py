"""Fault checkpoints for the crash tests, installed from outside the service's code.

``python -m devtools.faults [worker options]`` runs the worker (``python -m worker``) with the
checkpoints named in ``TUMA_FAULTS`` (comma-separated) installed as SQLAlchemy engine events;
the worker's own code calls nothing. A process reaching a checkpoint writes
``tuma:fault:<name>`` = its pid to Redis and then blocks forever, so a test can kill it at
exactly that point (with SIGKILL, for example).

- ``batch_before_commit``: the commit of a transaction that inserted ledger transfers (a
  worker's batch: every posting is written, nothing is committed yet), by an INSERT or, on
  PostgreSQL, by the binary COPY of ``database.insert_rows`` (which the engine's events miss).
- ``sms_taken``: a batch's job has taken the SMS job its commit rang off the queue, to send the
  receipts itself (``worker.jobs.send_receipts_now``), and sent nothing yet (installed by
  wrapping the job module's ``take_waiting``).
"""

import os
import re
import sys
import threading

from sqlalchemy import event
from sqlalchemy.engine import Engine

CHECKPOINTS = ("batch_before_commit", "sms_taken")
_INSERTS_TRANSFERS = re.compile(r"\s*INSERT\s+INTO\s+transfers\b", re.IGNORECASE)
_WROTE_TRANSFERS = "tuma_fault_wrote_transfers"


def stop_here(name: str) -> None:
    """Say where this process stopped (Redis ``tuma:fault:<name>`` = pid), then wait to be killed."""
    from ussd_app.queues import get_redis

    get_redis().set(f"tuma:fault:{name}", os.getpid())
    threading.Event().wait()  # until killed


def _note_transfers(conn, cursor, statement, parameters, context, executemany) -> None:
    if _INSERTS_TRANSFERS.match(statement):
        conn.info[_WROTE_TRANSFERS] = True


def _note_copy(conn, table_name: str) -> None:
    if table_name == "transfers":
        conn.info[_WROTE_TRANSFERS] = True


def _before_commit(conn) -> None:  # the engine's "commit" event runs before the database's commit
    if conn.info.pop(_WROTE_TRANSFERS, False):
        stop_here("batch_before_commit")


def _forget(conn) -> None:
    conn.info.pop(_WROTE_TRANSFERS, None)


def _stop_after_taking(take):
    def taking(bell):
        taken = take(bell)
        if taken is not None:
            stop_here("sms_taken")
        return taken

    return taking


def install(names) -> None:
    """Install the named checkpoints in this process (every engine); unknown names refused."""
    unknown = set(names) - set(CHECKPOINTS)
    if unknown:
        raise ValueError(f"unknown fault checkpoints: {', '.join(sorted(unknown))}")
    if "batch_before_commit" in names:
        event.listen(Engine, "before_cursor_execute", _note_transfers)
        event.listen(Engine, "commit", _before_commit)
        event.listen(Engine, "rollback", _forget)
        from ussd_app.database import on_copy

        on_copy(_note_copy)
    if "sms_taken" in names:
        from worker import jobs

        jobs.take_waiting = _stop_after_taking(jobs.take_waiting)


def main(argv=None) -> int:
    install([name for name in os.environ.get("TUMA_FAULTS", "").split(",") if name])
    from worker.__main__ import main as run_worker

    return run_worker(argv)


if __name__ == "__main__":
    sys.exit(main())
