"""Africa's Talking's USSD webhooks: ``POST /ussd`` (one hop) and ``POST /ussd/events``.

Every hop answers ``text/plain`` starting ``CON `` or ``END ``, whatever was sent: missing or
malformed fields and our own failures end the session with a short message, never a 500.
The ``text`` field carries PINs, so it is never logged, stored or echoed; logs get a
redacted form that keeps only the shape of the input.
"""

import functools
import logging
import time
import traceback

from flask import Response, current_app, g, request
from redis.exceptions import RedisError
from sqlalchemy import bindparam, select
from sqlalchemy.exc import SQLAlchemyError

from .. import country, phones, reads, security, tariffs
from ..database import first_statement
from ..extensions import db
from ..i18n import t
from ..payments import allowances, payment_requests
from ..payments.models import TransferRequest
from ..users import Role, User, find_by_phone
from . import bp, sessions
from .caller import Facts
from .engine import HOME, RESUME, Context
from .flows import HOME_BUSINESS, HOME_CUSTOMER, LOCKED, engine, home_unregistered
from .models import UssdEvent

log = logging.getLogger(__name__)

MAX_FIELD = 100  # longest sessionId / phoneNumber / serviceCode we accept
# The longest ``text`` (every input of the session joined by ``*``) we answer. A USSD input is
# at most 182 characters and a session lives 180 s at a few seconds a hop: menu choices,
# numbers, amounts and names come to a few hundred characters; 4,000 leaves ten times that.
# Even percent-encoded (3 bytes a character) it stays below the 16 KiB body cap, so this, not
# the cap, answers it. Longer is not a real hop: it ends cleanly. Never cut: the newest input
# and the repeat check are taken from the whole text.
MAX_TEXT = 4000
# A shortcut (inputs dialled with the service code, ``*384*7*1*0711000002*500#``) is walked
# only if it is one a keypad makes: digits in at most MAX_SHORTCUT_INPUTS parts joined by "*",
# at most MAX_SHORTCUT characters (a USSD string is at most 182). The longest walk through
# the menus is about ten inputs. Anything else is not walked: the first hop shows home.
MAX_SHORTCUT = 182
MAX_SHORTCUT_INPUTS = 16


def redact(text: str | None) -> str:
    """The shape of the input without its content: '1*0712345678*4321' -> '#*#(10)*#(4)'."""
    if not text:
        return "''"
    return "*".join(f"#({len(part)})" if len(part) != 1 else "#" for part in text.split("*")[-20:])


def mask(phone: str) -> str:
    return phone[:5] + "***" + phone[-3:] if len(phone) > 8 else "***"


def to_stranger(message: str) -> str:
    """``message`` in the country's first language: what a caller not yet known is told (a
    Kiswahili-first country's refusals are in Kiswahili)."""
    return t(country.first_language(), message)


def plain(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/plain")


def _home_for(facts: Facts) -> str:
    if not facts.registered:
        return home_unregistered()
    if facts.locked:
        return LOCKED
    return HOME_CUSTOMER if facts.role == Role.CUSTOMER.value else HOME_BUSINESS


@bp.post("/ussd")
def ussd():
    form = request.form
    session_id = (form.get("sessionId") or "").strip()
    raw_phone = (form.get("phoneNumber") or "").strip()
    text = form.get("text") or ""
    if not session_id or len(session_id) > MAX_FIELD or not raw_phone or len(raw_phone) > MAX_FIELD:
        if security.over_deferred_rate():
            return plain("END " + to_stranger(security.USSD_TOO_MANY))
        log.warning("ussd hop with missing or malformed sessionId/phoneNumber")
        return plain("END " + to_stranger(UNREADABLE))
    # E.164, normalised once at the edge (security.caller_phone, which the rate limit keyed on
    # too): only a mobile number of our own country dials in.
    phone = security.caller_phone()
    if phone is None:
        log.warning("ussd hop from a number that is not a mobile number of ours")
        return plain("END " + to_stranger(UNREADABLE))
    if len(text) > MAX_TEXT:
        if security.over_deferred_rate():
            return plain("END " + to_stranger(security.USSD_TOO_MANY))
        log.warning("ussd hop session=%s with a text of %d characters: ended", session_id[:40], len(text))
        return plain("END " + to_stranger(UNREADABLE))
    # Africa's Talking joins every input so far with "*": the whole text tells a repeat, the
    # part after the last "*" is the newest input. On a session's first hop the text is what
    # was dialled after the service code (a shortcut), or nothing.
    return plain(hop(session_id, phone, text, text.rsplit("*", 1)[-1], dialled=text))


# Refusals by the webhook guards (security.py) answer the phone in the gateway's own shape.
ussd.ussd_refusal = lambda text: plain("END " + text)

UNREADABLE = "Sorry, this request could not be read. Please dial again."


def shortcut(dialled: str) -> list[str]:
    """The inputs of a shortcut (what was dialled after the service code: "1*0711000002*500",
    a final "#" allowed), or [] when it is none or not one a keypad makes (see MAX_SHORTCUT)."""
    dialled = dialled.strip()
    dialled = dialled[:-1] if dialled.endswith("#") else dialled
    if not dialled or len(dialled) > MAX_SHORTCUT:
        return []
    parts = dialled.split("*")
    if len(parts) > MAX_SHORTCUT_INPUTS or not all(part.isascii() and part.isdigit() for part in parts):
        return []
    return parts


def hop(
    session_id: str,
    phone: str,
    repeat_key: str,
    newest: str,
    *,
    fresh_for: float | None = None,
    dialled: str = "",
) -> str:
    """Answer one hop of a session: the body ``CON ...`` or ``END ...``, whatever fails.

    The one core every gateway shares (``/ussd`` and ``ussd/gateways/``): the session locked
    and read in one round trip, a repeat answered from the store, only ``newest`` applied.
    ``repeat_key`` is what tells a repeat: the same key again in the same session gets the
    stored answer and runs nothing (Africa's Talking: the cumulative text; a gateway that
    numbers its messages: number and input). A gateway that numbers nothing can only give the
    input itself, and the same key may be typed again on the next screen: ``fresh_for`` then
    bounds a repeat to that many seconds after the stored answer (a gateway's retry follows at
    once; a person reads the screen first). ``session_id`` is already namespaced by the caller.
    ``dialled`` is what was dialled after the service code: on the session's first hop its
    inputs are walked (``engine.walk``) for a registered caller; later hops ignore it."""
    shape = redact(repeat_key if fresh_for is None else newest)
    log.info("ussd hop session=%s phone=%s text=%s", session_id[:40], mask(phone), shape)
    g.ussd_committed, g.ussd_reply = False, None
    try:
        # What the hop's commit announces (a request's doorbell, its trace id, a name look-up's
        # cancel taken back) goes with the session's release: one round trip to Redis.
        with sessions.locked(session_id, phone, rate=security.deferred_rate(), announce=True) as hold:
            return _answer(hold, repeat_key, newest, fresh_for, dialled)
    except sessions.TooManyHops as exc:
        security.over_rate(exc.count, 0)  # logged as the guard logs it
        return "END " + to_stranger(security.USSD_TOO_MANY)
    except sessions.Unreadable:  # logged; nothing applied, its lock let go
        return "END " + to_stranger(SESSION_ENDED)
    except sessions.SessionBusy:
        log.warning("ussd session=%s busy: a repeat arrived while the first was running", session_id[:40])
        return "END " + to_stranger("Sorry, we are busy. Please dial again.")
    except RedisError as exc:
        db.session.rollback()
        log.error("ussd hop failed session=%s: Redis unavailable (%s)", session_id[:40], type(exc).__name__)
        if g.get("ussd_committed"):  # a request may be recorded: do not invite a second one
            reply = g.get("ussd_reply")
            if reply and reply.startswith("END "):
                # The hop's last screen, answered after its commit ("Sending ...", "Paying
                # ..."): true, its request recorded and executed by the periodic job once Redis
                # is back; nothing more to walk, so nothing lost with the session's state.
                return reply
            return "END " + t(
                country.first_language(), "Sorry, something went wrong. Please try again later."
            )
        # Nothing was done; the session's state is gone or unreachable: start again.
        return "END " + to_stranger("Sorry, we are busy. Please dial again.")
    except Exception as exc:  # the person must get a screen, whatever failed
        db.session.rollback()
        # Only the type and the frames: an exception's message may quote the input (a PIN).
        log.error(
            "ussd hop failed session=%s: %s\n%s",
            session_id[:40],
            type(exc).__name__,
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        # Not "nothing was sent": the failure may come after a request was committed.
        return "END " + to_stranger("Sorry, something went wrong. Please try again later.")
    finally:
        tariffs.trust(None)  # the token read is this hop's: nothing after it quotes by it


SESSION_ENDED = "Your session has ended. Please dial again."


def close(session_id: str, phone: str) -> bool:
    """The gateway says the session is over (the person left, or it timed out): nothing more
    is applied to it; a late message of it is told to dial again. The phone's resume snapshot
    is kept, so a dropped money flow is offered on the next dial as after any drop. False
    when there was nothing to close or the store could not be reached (logged)."""
    try:
        with sessions.locked(session_id, phone) as hold:
            stored = hold.stored
            if stored is None or stored.phone != phone:
                return False
            stored.conversation.ended = True
            stored.last_reply = "END " + to_stranger(SESSION_ENDED)
            hold.save(stored, None, keep_resume=True)
            return True
    except (sessions.SessionBusy, RedisError) as exc:
        log.warning("ussd session=%s not closed: %s", session_id[:40], type(exc).__name__)
        return False


def _answer(hold: sessions.Hold, repeat_key: str, newest: str, fresh_for: float | None, dialled: str) -> str:
    session_id, phone, stored = hold.session_id, hold.phone, hold.stored
    config = current_app.config  # (looked up once: a proxy access is a few calls)
    caller_cache = config["USSD_CALLER_CACHE"]
    if config["USSD_TARIFF_CACHE"]:
        tariffs.trust(hold.tariff_stamp)  # a quote in this hop may use this process's copy (hop() forgets)
    digest = sessions.text_digest(session_id, repeat_key)
    if stored is not None:
        if stored.phone != phone:
            return "END " + to_stranger(UNREADABLE)
        recent = fresh_for is None or (
            stored.answered_at is not None and time.time() - stored.answered_at <= fresh_for
        )
        if (stored.last_text == digest and recent) or stored.conversation.ended:
            # A repeat (the gateway retried, or the phone resent): the same screen, nothing again.
            return stored.last_reply or "END"
        if stored.first_text == digest:
            # A copy of the first hop, delivered after later hops: its dial string was walked
            # (or dropped) once. Taken for an input, its last part (a PIN in the dial string)
            # would be typed on the screen the person stands on: the screen again, nothing else.
            return stored.last_reply or "END"
    facts, ctx_user = _caller(hold, phone, caller_cache)
    data = stored.data if stored else {}
    offered = hold.resume if stored is None else stored.conversation.resume
    if offered is not None and already_recorded(offered):
        offered = None  # its money was recorded meanwhile: never offered, never continued
    if facts.registered:
        lang = facts.language
    else:  # someone registering: the language chosen so far, in this session or the dropped one
        lang = data.get("lang") or ((offered or {}).get("data") or {}).get("lang") or country.first_language()
    home, who = (
        _home_for(facts),
        dict(role=facts.role, account_id=facts.account_id, tier=facts.tier, caller=facts, **ctx_user),
    )
    ctx = Context(phone=phone, lang=lang, home=home, data=data, **who)
    walked = False
    if stored is None:
        # The first hop: what was dialled after the service code (a shortcut such as
        # *384*7*1*0711000002*500#) is walked from home by a registered, unlocked caller, up to
        # the first screen that needs them (never past a confirm screen, never onto a PIN
        # screen: engine.walk). Someone not registered always starts at registration.
        inputs = shortcut(dialled) if facts.registered and not facts.locked else []
        if inputs:
            # A fresh start: the offer to resume is not made (its snapshot is kept, below).
            conversation, reply = engine.begin(ctx)
            reply, applied = engine.walk(conversation, ctx, inputs)
            walked = True
            log.info(
                "ussd shortcut session=%s: %d of %d inputs walked, at %s",
                session_id[:40],
                applied,
                len(inputs),
                conversation.state,
            )
        else:
            conversation, reply = engine.begin(ctx, offered)
    elif facts.locked:
        # Locked since the last hop (the back office, the CLI, wrong PINs in another session):
        # whatever was typed, the session goes where a locked caller's goes, and ends there.
        conversation = stored.conversation
        conversation.resume = None
        reply = engine.handle(conversation, ctx, HOME)
    else:
        conversation = stored.conversation
        conversation.resume = offered
        reply = engine.handle(conversation, ctx, newest)
    # A menu hop that read nothing has nothing to commit. One that never asked for the session
    # has none in this request: asking ``db.session()`` would make one (and the teardown close
    # it) only to find no transaction.
    scoped = db.session
    if scoped.registry.has() and scoped().in_transaction():
        scoped.commit()
    ctx_g = g._get_current_object()
    ctx_g.ussd_committed = True
    body = ctx_g.ussd_reply = reply.body
    ctx_g.ussd_screen = conversation.state  # for the metrics (ops/tracing.py)
    snapshot = engine.snapshot(conversation, ctx) if conversation.state != RESUME else None
    hold.save(
        sessions.StoredSession(
            phone=phone,
            conversation=conversation,
            data=ctx.data,
            last_text=digest,
            last_reply=body,
            caller=facts.to_json() if caller_cache else None,
            answered_at=time.time(),
            first_text=(digest if dialled else None) if stored is None else stored.first_text,
        ),
        snapshot,
        # A walk that stopped where nothing can be resumed leaves the earlier snapshot offered.
        keep_resume=conversation.state == RESUME or (walked and snapshot is None),
    )
    return body


def _caller(hold: sessions.Hold, phone: str, cache: bool) -> tuple[Facts, dict]:
    """The caller's facts, and how the flows get the caller's row: the facts the session kept
    while they hold (``caller.py``; ``cache``: ``USSD_CALLER_CACHE``), else read now (one
    statement: ``Facts.read``); either way the row is loaded only if a flow asks for it
    (``ctx.user``), in the hop's session."""
    stored = hold.stored
    facts = None
    if stored is not None and cache:
        facts = Facts.from_json(stored.caller)
        if facts is not None and not facts.fresh(hold.caller_token):
            facts = None
    if facts is None:
        facts = Facts.read(db.session, phone, hold.caller_token)
    if not facts.registered:
        return facts, {"user": None}
    return facts, {
        "load_user": lambda for_update=False: _load_user(facts.user_id, phone, for_update),
        "lock_user": lambda: _lock_user(facts.user_id, phone),
    }


def _load_user(user_id: int, phone: str, for_update: bool = False):
    """The caller's row; ``for_update``: locked for this transaction and read fresh (SELECT ...
    FOR UPDATE), in one statement where loading it and then locking it took two. (Not its
    wallet with it: that read may wait for the lock, and the balance must be the one after the
    wait and the PIN check, ``common.wallet``.)"""
    lock = dict(with_for_update=True, populate_existing=True) if for_update else {}
    user = db.session.get(User, user_id, **lock)
    if user is not None and user.phone == phone:
        return user
    # The number moved or the row went since the facts were read (the token says so first).
    user = find_by_phone(db.session, phone)
    return db.session.get(User, user.id, **lock) if user is not None and for_update else user


@functools.cache
def _lock_user_statement():
    t = User.__table__
    columns = (t.c.id, t.c.phone, t.c.account_id, t.c.pin_hash, t.c.pin_failures, t.c.locked_until)
    return select(*columns).where(t.c.id == bindparam("id")).with_for_update()


def _lock_user(user_id: int, phone: str):
    """The caller's row locked for this transaction (SELECT ... FOR UPDATE) as a plain row of
    what a PIN check and a payment need (id, phone, account_id, pin_hash, pin_failures,
    locked_until), read by one statement on the hop's transaction without the ORM (its look-up
    and object were a fifth of a PIN hop beyond argon2); None when the facts' row no longer has
    this number (``_load_user`` finds who has it). Not the wallet: see ``_load_user``."""
    # The hop's first statement: on a connection not pinged when it was just used (one round
    # trip fewer), run again on a new one if it was dead (``database.first_statement``).
    row = first_statement(db.session, _lock_user_statement(), {"id": user_id}).first()
    return row if row is not None and row.phone == phone else None


# The ids a flow mints at its confirm screen (kept in the session's data) and where the request
# made under each is recorded (table, column): a snapshot holding one that is recorded is never
# offered back. Asked by a prebuilt statement each, a hop read (``reads``: one round trip).
MINTED_IDS = {
    "transfer_id": (TransferRequest.__table__, "id"),
    "reversal_id": (TransferRequest.__table__, "id"),
    "group_id": (payment_requests.PaymentRequest.__table__, "group_id"),
    "allowance_id": (allowances.Allowance.__table__, "id"),
}
_RECORDED: dict = {}  # (table, column): the statement that finds a row of that id


def _recorded(table, column: str, minted: str) -> bool:
    statement = _RECORDED.get((table.name, column))
    if statement is None:
        statement = _RECORDED[(table.name, column)] = (
            select(table.c[column]).where(table.c[column] == bindparam("minted")).limit(1)
        )
    return reads.first(db.session, statement, {"minted": minted}) is not None


def already_recorded(snapshot: dict) -> bool:
    """Whether the request a resume snapshot would complete was recorded already (by the
    session that dropped, or by another that resumed it): then there is nothing to continue."""
    data = snapshot.get("data") or {}
    return any(
        isinstance(data.get(key), str) and _recorded(table, column, data[key])
        for key, (table, column) in MINTED_IDS.items()
    )


def _int_or_none(raw: str | None) -> int | None:
    """A count from a callback field (e.g. durationInMillis), or None if it is not one that
    fits the column (negative, or beyond a 32-bit integer: PostgreSQL and SQLite would refuse)."""
    try:
        value = int(float(raw)) if raw not in (None, "") else None
    except (TypeError, ValueError, OverflowError):
        return None
    return value if value is not None and 0 <= value < 2**31 else None


def _cut(raw: str | None, limit: int) -> str | None:
    """At most ``limit`` characters, without NULs (no PostgreSQL text column takes one)."""
    return raw.replace("\x00", "")[:limit] if raw else None


@bp.post("/ussd/events")
def ussd_events():
    """Record Africa's Talking's end-of-session notification. AT only wants a 200 back; a
    notification without a session id is not one of theirs, so it gets a 400."""
    form = request.form
    session_id = (form.get("sessionId") or "").replace("\x00", "").strip()
    if not session_id or len(session_id) > MAX_FIELD:
        return plain("missing sessionId", 400)
    try:
        phone = phones.normalize((form.get("phoneNumber") or "").strip())
    except phones.InvalidPhone:
        phone = None
    text = form.get("input") or ""
    event = UssdEvent(
        session_id=session_id,
        phone=phone,
        service_code=_cut(form.get("serviceCode"), 40),
        network_code=_cut(form.get("networkCode"), 20),
        status=_cut(form.get("status"), 40),
        cost=_cut(form.get("cost"), 40),
        duration_ms=_int_or_none(form.get("durationInMillis")),
        hops=len(text.split("*")) if text else 0,
        error_message=_cut(form.get("errorMessage"), 255),
        reported_at=_cut(form.get("date"), 40),
    )
    try:
        db.session.add(event)
        db.session.commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.error("ussd event not recorded session=%s: %s", session_id[:40], type(exc).__name__)
        return plain("not recorded", 503)
    log.info("ussd session ended session=%s status=%s", session_id[:40], event.status)
    return plain("OK")
