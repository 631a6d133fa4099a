"""People: customers, agents, merchants and causes, each with one wallet account in the ledger."""

import dataclasses
import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, bindparam, func, inspect, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from . import country, phones, pins, reads
from .database import among
from .extensions import db
from .ledger import Account, AccountKind, open_account

# An operator's lock (``User.locked_until``): a time no PIN-tries lock reaches, so it never runs
# out, and only an operator lifts it (``ussd.pin_guard``).
OPERATOR_LOCK_UNTIL = datetime(9999, 12, 31)


class Role(enum.StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    MERCHANT = "merchant"
    # A creator or cause that takes tips and donations (``payments/tips.py``) under its code
    # (stored as ``till``, in the same namespace as merchants' numbers); never paid as a till.
    CAUSE = "cause"


class Tier(enum.StrEnum):
    """KYC tiers; each has its own limits (``ussd_app.limits``)."""

    BASIC = "basic"  # registered themselves over USSD
    FULL = "full"  # an agent has checked an ID


class Language(enum.StrEnum):
    ENGLISH = "en"
    KISWAHILI = "sw"


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # E.164. ``active_history``: the number a user moves from is known even when it was not
    # loaded (ussd/caller.py replaces that number's token, so its open sessions forget him).
    phone: Mapped[str] = mapped_column(String(20), unique=True, active_history=True)
    first_name: Mapped[str] = mapped_column(String(40))
    last_name: Mapped[str] = mapped_column(String(40), default="")
    role: Mapped[str] = mapped_column(String(12))
    language: Mapped[str] = mapped_column(String(2), default=Language.ENGLISH.value)
    tier: Mapped[str] = mapped_column(String(12), default=Tier.BASIC.value, server_default=Tier.BASIC.value)
    # Buy-goods till or pay-bill business number, for merchants; the code people tip, for causes.
    till: Mapped[str | None] = mapped_column(String(10), unique=True, default=None)
    # How a merchant's number is paid: "till" (buy goods) or "paybill" (with an account reference).
    business_kind: Mapped[str | None] = mapped_column(String(8), default=None)
    # National ID number, recorded when an agent registers the customer; checked before an
    # agent unlocks the customer's PIN.
    id_number: Mapped[str | None] = mapped_column(String(20), default=None)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)
    pin_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    pin_failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())

    account: Mapped[Account] = relationship()

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


def is_operator_locked(user) -> bool:
    """Locked by an operator (the back office), not by wrong PINs: only an operator lifts it.
    (``limits._operator_locked`` asks the same of many wallets in SQL.)"""
    return user.locked_until is not None and user.locked_until >= OPERATOR_LOCK_UNTIL


class UserError(ValueError):
    """A user could not be created; the message says why, for the operator or the screen."""


_BY_PHONE = None


def find_by_phone(session, phone: str) -> User | None:
    # One statement built once, the number bound at each call (building the select cost about
    # as many Python calls as loading the row: a USSD session's first hop runs this).
    global _BY_PHONE
    if _BY_PHONE is None:
        _BY_PHONE = select(User).where(User.phone == bindparam("phone"))
    return session.execute(_BY_PHONE, {"phone": phone}).scalar_one_or_none()


@dataclass(frozen=True)
class Holder:
    """A number's holder as a screen that names them needs it: a plain row, not the ORM
    object (send money's recipient hop reads one on every look-up)."""

    role: str
    account_id: int
    first_name: str
    last_name: str

    name = User.name


_HOLDER = None


def holder_by_phone(session, phone: str) -> Holder | None:
    """``phone``'s holder (role, wallet, name) in one prebuilt statement; None if nobody's. A
    menu hop's read (``reads.first``: one round trip when ``session`` has no transaction open)."""
    global _HOLDER
    if _HOLDER is None:
        t = User.__table__
        _HOLDER = select(t.c.role, t.c.account_id, t.c.first_name, t.c.last_name).where(
            t.c.phone == bindparam("phone")
        )
    row = reads.first(session, _HOLDER, {"phone": phone})
    return Holder(*row) if row is not None else None


def find_by_account(session, account_id: int) -> User | None:
    """The holder of a wallet; None for a house account."""
    return session.execute(select(User).where(User.account_id == account_id)).scalar_one_or_none()


def holders(session, account_ids) -> dict[int, User]:
    """{account id: holder} for many wallets, in one query (house accounts are left out)."""
    ids = set(account_ids)
    if not ids:
        return {}
    users = session.execute(select(User).where(among(session, User.account_id, ids))).scalars()
    return {u.account_id: u for u in users}


# A holder as a transfer batch reads it (``holder_rows``): the user's columns under their
# attribute names and ``name``, without the ORM's per-object state (no identity map entry, no
# ``account`` relationship: ``sms.receipts.People`` reads balances from the ledger). Never
# the PIN's hash (nothing that reads these wants it), and no repr that would show the rest.
_USER_ATTRIBUTES = [a for a in inspect(User).column_attrs if a.key != "pin_hash"]
HolderRow = dataclasses.make_dataclass(
    "HolderRow",
    [attribute.key for attribute in _USER_ATTRIBUTES],
    slots=True,
    eq=False,
    repr=False,
    namespace={"name": User.name},
)


def holder_rows(session, account_ids) -> dict:
    """``holders`` as ``HolderRow``s, for code that only reads them (a transfer batch's
    receipts, limits and events): a batch of 500 transfers reads up to 1,000 holders."""
    ids = set(account_ids)
    if not ids:
        return {}
    columns = [attribute.columns[0] for attribute in _USER_ATTRIBUTES]
    rows = session.execute(select(*columns).where(among(session, User.account_id, ids)))
    return {user.account_id: user for user in (HolderRow(*row) for row in rows)}


def find_by_till(session, till: str) -> User | None:
    return session.execute(select(User).where(User.till == till)).scalar_one_or_none()


def find_cause(session, code: str) -> User | None:
    """The cause whose code is ``code``; None for a merchant's till or any other number."""
    user = find_by_till(session, code)
    return user if user is not None and user.role == Role.CAUSE.value else None


class BusinessKind(enum.StrEnum):
    TILL = "till"  # buy goods
    PAYBILL = "paybill"  # pay bill, with an account reference


def find_business(session, number: str, kind: "BusinessKind | str") -> User | None:
    """The merchant whose till (or pay-bill number) is ``number``, if it is paid that way."""
    user = find_by_till(session, number)
    if user is None or user.role != Role.MERCHANT.value or (user.business_kind or "till") != kind:
        return None
    return user


def create_user(
    session,
    *,
    phone: str,
    name: str,
    role: Role | str,
    pin: str | None,
    till: str | None = None,
    language: Language | str | None = None,  # None: the country's first (country.first_language)
    paybill: bool = False,
    id_number: str | None = None,
) -> User:
    """Open a wallet and its holder. Adds to the session; the caller commits."""
    try:
        # Only a mobile of our own country can dial in and receive SMS (issue 15 item 9).
        phone = phones.normalize_mobile(phone)
    except phones.NotLocalMobile as exc:
        raise UserError(f"not a mobile number of {phones.country_name()}: {phone!r}") from exc
    except phones.InvalidPhone as exc:
        raise UserError(f"not a valid phone number: {phone!r}") from exc
    role = Role(role)
    first, _, last = " ".join((name or "").split()).partition(" ")
    if not first or len(first) > 40 or len(last) > 40:
        raise UserError("a name is 1 to 40 characters for first and for last name")
    if pin is not None and not pins.is_valid_pin(pin):
        raise UserError("a PIN is exactly 4 digits")
    if till is not None:
        if role not in (Role.MERCHANT, Role.CAUSE):
            raise UserError("only merchants and causes have a till number")
        if not (till.isascii() and till.isdigit() and 5 <= len(till) <= 7):
            raise UserError("a till number is 5 to 7 digits")
    if paybill and till is None:
        raise UserError("a pay-bill merchant needs a business number")
    if role == Role.CAUSE and (till is None or paybill):
        raise UserError("a cause needs a code people tip (--till, 5 to 7 digits), and takes no bills")
    if id_number is not None and not (
        id_number.isascii() and id_number.isalnum() and 5 <= len(id_number) <= 20
    ):
        raise UserError("an ID number is 5 to 20 letters or digits")
    if language is not None and not country.offers(Language(language).value):
        offered = ", ".join(country.languages())
        raise UserError(f"{country.profile().name} offers {offered}, not {Language(language).value}")
    if find_by_phone(session, phone) is not None:
        raise UserError(f"{phone} is already registered")
    if till is not None and find_by_till(session, till) is not None:
        raise UserError(f"till {till} is already taken")
    account = open_account(session, AccountKind(role.value))
    user = User(
        phone=phone,
        first_name=first,
        last_name=last,
        role=role.value,
        language=Language(language or country.first_language()).value,
        till=till,
        business_kind=(BusinessKind.PAYBILL if paybill else BusinessKind.TILL).value
        if till and role == Role.MERCHANT
        else None,
        id_number=id_number,
        account_id=account.id,
        pin_hash=pins.hash_pin(pin) if pin is not None else None,
        pin_failures=0,
    )
    session.add(user)
    session.flush()
    return user
