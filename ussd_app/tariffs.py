"""Fees, in minor units, by amount band and kind of transfer.

The built-in defaults come from the country profile (``country.py``), in its currency: sending
a small amount is free (micropayments must stay free: up to KES 100, GHS 10, TZS 2,000), then
the fee rises by band. Bands are (upper bound inclusive, fee), both in minor units.
"""

import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from flask import current_app, g, has_app_context
from sqlalchemy import DateTime, Integer, String, Text, bindparam, event, func, literal_column, select, true
from sqlalchemy.orm import Mapped, Session, mapped_column

from . import country, reads
from .clock import utcnow
from .country import Profile
from .extensions import db
from .money import DEFAULT_CURRENCY, MINOR_PER_MAJOR, to_minor
from .payments import kinds

log = logging.getLogger(__name__)


def send_bands(profile: Profile | None = None) -> tuple[tuple[int, int], ...]:
    """The default send bands of ``profile`` (the app's country), minor units."""
    return tuple((to_minor(upper), to_minor(fee)) for upper, fee in (profile or country.profile()).send_bands)


def withdrawal_bands(profile: Profile | None = None) -> tuple[tuple[int, int, int], ...]:
    """Cash-out at an agent: (upper bound inclusive, fee, the agent's commission out of that
    fee), minor units. The commission is owed to the agent (house account ``commissions``) as a
    linked leg."""
    return tuple(
        (to_minor(upper), to_minor(fee), to_minor(commission))
        for upper, fee, commission in (profile or country.profile()).withdrawal_bands
    )


def withdrawal_min() -> int:
    """The least one withdrawal may take out, minor units (the country's)."""
    return to_minor(country.profile().withdrawal_min)


def withdrawal_max() -> int:
    """The most one withdrawal may take out: the last default band's upper bound."""
    return withdrawal_bands()[-1][0]


def free_send_up_to() -> int:
    """No tariff may charge for sending (or tipping) this much or less: micropayments."""
    return to_minor(country.profile().free_send_up_to)


# The default country's (KE) bands and bounds, for code and tests outside an app.
SEND_BANDS = send_bands(country.PROFILES[country.DEFAULT_COUNTRY])
WITHDRAWAL_BANDS = withdrawal_bands(country.PROFILES[country.DEFAULT_COUNTRY])
WITHDRAWAL_MIN = to_minor(country.PROFILES[country.DEFAULT_COUNTRY].withdrawal_min)
WITHDRAWAL_MAX = WITHDRAWAL_BANDS[-1][0]


def commission(kind: str, amount: int) -> int:
    """The agent's share of the fee for ``amount`` minor units as ``kind`` (0 for most kinds),
    from the tariff in force."""
    return in_force().commission(kind, amount)


def payee_fee(kind: str, amount: int) -> int:
    """What the payee (a merchant) pays for receiving ``amount`` minor units as ``kind``, from
    the tariff in force: quote it with the payer's fee, when the payer confirms."""
    return in_force().payee_fee(kind, amount)


def quote(kind: str, amount: int) -> int:
    """The fee the payer pays for moving ``amount`` minor units as ``kind``, from the tariff in
    force. Record ``in_force().id`` with it when the person confirms (``tariff_version_id``)."""
    return in_force().fee(kind, amount)


# -- Versions: the operator changes tariffs without a deploy ---------------------------------
#
# A tariff is a JSON document, one entry per kind of request, amounts in minor units:
#
#   {"send":       {"bands": [[10000, 0], [50000, 700], ...]},        # [up to, fee]
#    "withdrawal": {"bands": [[10000, 1100, 500], ...]},              # [up to, fee, commission]
#    "buy_goods":  {"payee_basis_points": 50, "payee_cap": 20000},    # free for the customer
#    "deposit":    {}}                                                # free
#
# A band applies to amounts up to its bound (inclusive); an amount above the last bound pays
# the last band. A kind with no "bands" is free for the payer; "payee_basis_points" and
# "payee_cap" make the payee (a merchant) pay a capped percentage. A kind that is not in the
# document has no tariff (quote raises ValueError), so a typo never makes a kind free.
# Every ``tariffs set`` adds a version; the one in force is the latest whose effective_from
# has passed. With no version stored, the built-in defaults below apply (id None).

FREE_BAND_KINDS = ("send", "tip")  # free up to ``free_send_up_to()``
MERCHANT_BASIS_POINTS = 50  # 0.5% of a merchant payment, paid by the merchant, capped (profile)


def default_document() -> dict:
    """The built-in tariff of the app's country (also what ``tariffs seed`` stores)."""
    # Free kinds (``free`` in payments/kinds.py: deposits; paying a merchant is free for the
    # customer, the merchant paying a capped percentage: ``payee_fee``).
    document: dict = {kind: {} for kind in sorted(kinds.FREE_KINDS | {"registration", "balance"})}
    send = send_bands()
    document["send"] = {"bands": [list(band) for band in send]}
    document["withdrawal"] = {"bands": [list(band) for band in withdrawal_bands()]}
    # A business paying a customer out (the merchant API) pays what a customer sending pays.
    document["payout"] = {"bands": [list(band) for band in send]}
    # A tip is an ordinary transfer to a cause: priced like a send, so free up to the free band.
    document["tip"] = {"bands": [list(band) for band in send]}
    cap = to_minor(country.profile().merchant_cap)
    for kind in sorted(kinds.PAYEE_PAYS_KINDS):
        document[kind] = {"payee_basis_points": MERCHANT_BASIS_POINTS, "payee_cap": cap}
    return document


class InvalidTariff(ValueError):
    """A tariff document the operator gave is malformed; the message says where."""


def shown_unit() -> int:
    """The smallest amount people are shown, in minor units: 1 (a cent), or a whole unit where
    the currency is shown whole (``country.Currency.cents_shown``: TZS), so that no fee leaves
    senti on a balance nobody can withdraw or send."""
    from flask import current_app

    code = current_app.config["CURRENCY"] if has_app_context() else DEFAULT_CURRENCY
    return 1 if country.currency(code).cents_shown else MINOR_PER_MAJOR


def _whole(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidTariff(f"{where}: a whole number of minor units >= 0, not {value!r}")
    return value


def validate(document) -> dict:
    """``document`` checked and normalised, or InvalidTariff saying what is wrong."""
    if not isinstance(document, dict) or not document:
        raise InvalidTariff("a tariff is a JSON object with one entry per kind of request")
    clean: dict = {}
    for kind, rule in document.items():
        if not isinstance(kind, str) or not kind or not isinstance(rule, dict):
            raise InvalidTariff(f"{kind!r}: each kind maps to an object")
        unknown = set(rule) - {"bands", "payee_basis_points", "payee_cap"}
        if unknown:
            raise InvalidTariff(f"{kind}: unknown keys {sorted(unknown)}")
        entry: dict = {}
        if "bands" in rule:
            bands = rule["bands"]
            if not isinstance(bands, list) or not bands:
                raise InvalidTariff(f"{kind}.bands: a non-empty list of [up to, fee(, commission)]")
            previous = -1
            entry["bands"] = []
            for n, band in enumerate(bands):
                where = f"{kind}.bands[{n}]"
                if not isinstance(band, list) or len(band) not in (2, 3):
                    raise InvalidTariff(f"{where}: [up to, fee] or [up to, fee, commission]")
                numbers = [_whole(v, where) for v in band]
                if numbers[0] <= previous:
                    raise InvalidTariff(f"{where}: bounds must rise")
                if len(numbers) == 3 and numbers[2] > numbers[1]:
                    raise InvalidTariff(f"{where}: the commission is a share of the fee")
                previous = numbers[0]
                entry["bands"].append(numbers)
        for key in ("payee_basis_points", "payee_cap"):
            if key in rule:
                entry[key] = _whole(rule[key], f"{kind}.{key}")
        if entry.get("payee_basis_points", 0) > 10_000:
            raise InvalidTariff(f"{kind}.payee_basis_points: at most 10000 (100%)")
        clean[kind] = entry
    unit = shown_unit()
    for kind, entry in clean.items():
        amounts = [(f"{kind}.bands[{n}]", v) for n, band in enumerate(entry.get("bands", [])) for v in band]
        for where, value in [*amounts, (f"{kind}.payee_cap", entry.get("payee_cap", 0))]:
            if value % unit:
                code = current_app.config["CURRENCY"]
                raise InvalidTariff(
                    f"{where}: {code} amounts are whole (multiples of {unit} minor units), not {value}"
                )
    free = free_send_up_to()
    for kind in FREE_BAND_KINDS:
        for band in clean.get(kind, {}).get("bands", []):
            if band[1] != 0:
                profile = country.profile()
                shown = f"{profile.currency} {profile.free_send_up_to:,}"  # "KES 100"
                raise InvalidTariff(f"{kind}: up to {shown} must stay free (micropayments)")
            if band[0] >= free:
                break
    return clean


@dataclass(frozen=True)
class Tariff:
    """One tariff version (id None: the built-in defaults)."""

    id: int | None
    document: dict

    def _rule(self, kind: str) -> dict:
        try:
            return self.document[kind]
        except KeyError:
            raise ValueError(f"no tariff for {kind!r}") from None

    def _band(self, kind: str, amount: int) -> list[int] | None:
        bands = self._rule(kind).get("bands")
        if not bands:
            return None
        return next((band for band in bands if amount <= band[0]), bands[-1])

    def fee(self, kind: str, amount: int) -> int:
        band = self._band(kind, amount)
        return band[1] if band else 0

    def commission(self, kind: str, amount: int) -> int:
        band = self._band(kind, amount)
        return band[2] if band and len(band) == 3 else 0

    def payee_fee(self, kind: str, amount: int) -> int:
        """What the payee (a merchant) pays: a percentage of ``amount``, capped."""
        rule = self._rule(kind)
        unit = shown_unit()  # rounded down to what people are shown: whole TZS
        share = amount * rule.get("payee_basis_points", 0) // 10_000 // unit * unit
        cap = rule.get("payee_cap")
        return min(share, cap) if cap is not None else share


class TariffVersion(db.Model):
    __tablename__ = "tariff_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    effective_from: Mapped[datetime] = mapped_column(DateTime, index=True)  # naive UTC
    bands: Mapped[str] = mapped_column(Text)  # the JSON document
    note: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())

    def tariff(self) -> Tariff:
        return Tariff(self.id, json.loads(self.bands))


def in_force(session=None, at: datetime | None = None) -> Tariff:
    """The tariff in force ``at`` (now): the latest stored version that has started, else the
    built-in defaults. Outside an app (no database) the defaults. Now, in a request that read
    the tariffs' stamp (a USSD hop: ``trust``), the version this process cached under that
    stamp while it holds (see "The tariff in force, cached" below)."""
    if session is None:
        if not has_app_context():
            return Tariff(None, validate(default_document()))
        if at is None and g.get(_STAMP_IN_REQUEST):
            return _cached(g.get(_STAMP_IN_REQUEST))
        session = db.session
    return _read(session, at or utcnow())[0]


def _read(session, now: datetime, *, hop: bool = False) -> tuple[Tariff, datetime | None]:
    """The tariff in force at ``now``, and when the next stored version starts (None: none
    is scheduled). One prebuilt statement of plain columns; ``hop``: a menu hop's read
    (``reads.first``: one round trip when ``session`` has no transaction open)."""
    statement, params = _in_force_statement(), {"now": now}
    row = reads.first(session, statement, params) if hop else session.execute(statement, params).first()
    upcoming, version_id, bands = row
    if version_id is None:
        return Tariff(None, validate(default_document())), upcoming
    return Tariff(version_id, json.loads(bands)), upcoming


_IN_FORCE = None


def _in_force_statement():
    """``_read``'s statement, built once: the version in force (none: no row of it, the
    outer join still gives one row) beside the start of the next one."""
    global _IN_FORCE
    if _IN_FORCE is None:
        t = TariffVersion.__table__
        now = bindparam("now", type_=t.c.effective_from.type)
        latest = (
            select(t.c.id, t.c.bands)
            .where(t.c.effective_from <= now)
            .order_by(t.c.effective_from.desc(), t.c.id.desc())
            .limit(1)
            .subquery("latest")
        )
        upcoming = select(func.min(t.c.effective_from)).where(t.c.effective_from > now).scalar_subquery()
        one = select(literal_column("1").label("one")).subquery("one")
        _IN_FORCE = select(upcoming.label("upcoming"), latest.c.id, latest.c.bands).select_from(
            one.outerjoin(latest, true())
        )
    return _IN_FORCE


# -- The tariff in force, cached per process ----------------------------------------------
#
# A USSD amount hop quotes a fee: reading the version in force from the database on every
# such hop cost a query (and its connection's round trips) for a row that changes a few times
# a year. So each process keeps the version it read, under a stamp that Redis holds
# (``STAMP_KEY``), as ``ussd/caller.py`` does for callers:
#
# - every commit that adds, changes or deletes a version (any SQLAlchemy session: the CLI's
#   ``tariffs set``, the back office, a test) replaces the stamp after the commit (listeners
#   below); the hop reads the stamp in the round trip that takes its session's lock
#   (``sessions.locked``, which also creates it when absent), and hands it to ``trust``;
# - a cached version is used only under the stamp it was read under, only until the next
#   stored version's ``effective_from`` (a version scheduled ahead starts on time), and only
#   for ``CACHE_MAX_AGE_SECONDS``: the bound on what the stamp cannot see (a change made
#   outside SQLAlchemy, ``psql``; a stamp write lost because Redis failed after the commit).
#   The stamp is read before the row, so a version committed in between is seen at the next
#   hop at the latest;
# - a stamp that is gone (Redis flushed, a failover) is created afresh with another value, so
#   it never reads as "unchanged".
#
# Everything else (the worker, the API, the back office) reads the database as before.
# The quote is what the confirm screen shows and the request records; the worker charges the
# request's fee, so a fee is never taken that the payer was not shown.

STAMP_KEY = "tuma:tariff:stamp"
CACHE_MAX_AGE_SECONDS = 10
_STAMP_IN_REQUEST = "tariff_stamp"  # flask.g: the stamp this request read
_CACHE = "tuma_tariff_cache"  # app.extensions: (stamp, tariff, until, read at monotonic)


def trust(stamp) -> None:
    """This request read the tariffs' stamp ``stamp`` (bytes or str; None or empty: not
    read): ``in_force()`` may use the version cached under it."""
    if isinstance(stamp, bytes):
        stamp = stamp.decode()
    setattr(g, _STAMP_IN_REQUEST, stamp or None)


def _cached(stamp: str) -> Tariff:
    extensions = current_app.extensions
    hit = extensions.get(_CACHE)
    now = utcnow()
    if (
        hit is not None
        and hit[0] == stamp
        and 0 <= time.monotonic() - hit[3] < CACHE_MAX_AGE_SECONDS
        and (hit[2] is None or now < hit[2])
    ):
        return hit[1]
    read_at = time.monotonic()
    tariff, upcoming = _read(db.session, now, hop=True)
    extensions[_CACHE] = (stamp, tariff, upcoming, read_at)
    return tariff


_CHANGED = "tuma_tariffs_changed"  # session.info: a version was added, changed or deleted


def _after_flush(session, _flush_context) -> None:
    if any(
        isinstance(o, TariffVersion) for group in (session.new, session.dirty, session.deleted) for o in group
    ):
        session.info[_CHANGED] = True


def _bulk(orm_execute_state) -> None:
    if not (orm_execute_state.is_update or orm_execute_state.is_delete or orm_execute_state.is_insert):
        return
    if any(mapper.class_ is TariffVersion for mapper in orm_execute_state.all_mappers):
        orm_execute_state.session.info[_CHANGED] = True


def _after_commit(session) -> None:
    if session.in_nested_transaction():  # a savepoint: wait for the transaction's commit
        return
    if session.info.pop(_CHANGED, None):
        forget()


def forget() -> None:
    """Replace the tariffs' stamp: every process reads the version in force again at its next
    quote. Committed is committed: a failure is logged (the cache's age bounds it)."""
    if not has_app_context():
        log.warning("tariff cache not invalidated: no app (no Redis)")
        return
    current_app.extensions.pop(_CACHE, None)  # this process at once
    try:
        current_app.extensions["redis"].set(STAMP_KEY, secrets.token_hex(8))
    except Exception as exc:
        log.error(
            "tariff cache not invalidated (%s): stale for up to %d s",
            type(exc).__name__,
            CACHE_MAX_AGE_SECONDS,
        )


def listen() -> None:
    """Register the listeners (every session; once, however many apps are made)."""
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)
        event.listen(Session, "do_orm_execute", _bulk)
        event.listen(Session, "after_commit", _after_commit)


def add_version(session, document, *, effective_from: datetime | None = None, note: str | None = None):
    """Store a new version (validated). Adds to the session; the caller commits."""
    version = TariffVersion(
        effective_from=effective_from or utcnow(),
        bands=json.dumps(validate(document), sort_keys=True),
        note=note,
    )
    session.add(version)
    session.flush()
    return version


def ensure_seeded(session) -> TariffVersion | None:
    """Store the built-in defaults as the first version when none exists (None otherwise)."""
    if session.execute(select(TariffVersion.id).limit(1)).first() is not None:
        return None
    return add_version(session, default_document(), effective_from=datetime(2000, 1, 1), note="defaults")


def versions(session) -> list[TariffVersion]:
    return list(
        session.execute(
            select(TariffVersion).order_by(TariffVersion.effective_from, TariffVersion.id)
        ).scalars()
    )
