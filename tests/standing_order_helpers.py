"""What the standing order tests share: setting one up by USSD (the PIN once), instants on
people's days, the orders and runs as stored."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from tests.ussd_helpers import CUSTOMER_MENU_ITEMS, Phone, local
from ussd_app.extensions import db
from ussd_app.payments import standing_orders as so
from ussd_app.payments.models import TransferRequest

# The customer menu's item for this feature (ussd_app/ussd/flows/home.py).
STANDING_ORDERS = next(key for key, name in CUSTOMER_MENU_ITEMS.items() if name == "Standing orders")
ZONE = ZoneInfo("Africa/Nairobi")  # the tests' TIMEZONE (the default)


def today() -> date:
    return so.local_date()


def instant(day: date, hour: int = 6, minute: int = 0) -> str:
    """``hour``:``minute`` on ``day`` in Nairobi, as the ISO-8601 instant ``--at`` takes."""
    return datetime.combine(day, time(hour, minute), tzinfo=ZONE).isoformat()


def utc(day: date, hour: int = 6, minute: int = 0) -> datetime:
    """The same instant as naive UTC (what the domain's ``now`` takes)."""
    return datetime.combine(day, time(hour, minute), tzinfo=ZONE).astimezone(UTC).replace(tzinfo=None)


def ddmmyyyy(day: date) -> str:
    return day.strftime("%d%m%Y")


def set_up_to_person(
    client,
    payer_phone: str,
    pin: str,
    payee_phone: str,
    amount: int,
    *,
    runs: int = 3,
    first: str = "2",
    often: str = "1",
) -> str:
    """A standing order by USSD: to ``payee_phone``, ``amount`` (major units) ``often`` (1 daily,
    2 weekly, 3 monthly), first ``first`` (1 today, 2 tomorrow), ``runs`` payments; the PIN once.
    The END screen's text."""
    phone = Phone(client, local(payer_phone))
    confirm = phone.walk(
        STANDING_ORDERS, "1", "1", local(payee_phone), str(amount), often, first, "1", str(runs)
    )
    assert confirm.startswith("CON Pay "), confirm
    assert phone.send("1") == "CON Enter your PIN to set up the standing order"
    return phone.send(pin)


def orders() -> list[so.StandingOrder]:
    db.session.expire_all()
    found = list(db.session.execute(select(so.StandingOrder).order_by(so.StandingOrder.created_at)).scalars())
    db.session.commit()
    return found


def runs() -> list[so.StandingOrderRun]:
    db.session.expire_all()
    found = list(db.session.execute(select(so.StandingOrderRun).order_by(so.StandingOrderRun.id)).scalars())
    db.session.commit()
    return found


def requests_from(account_id: int) -> list[TransferRequest]:
    db.session.expire_all()
    found = list(
        db.session.execute(
            select(TransferRequest)
            .where(TransferRequest.debit_account_id == account_id)
            .order_by(TransferRequest.created_at)
        ).scalars()
    )
    db.session.commit()
    return found


def days_after(day: date, n: int) -> date:
    return day + timedelta(days=n)
