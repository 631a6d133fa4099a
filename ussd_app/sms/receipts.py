"""Receipts: the SMS each party gets for a request, in that party's language.

The shape people already trust: transaction code, ``Confirmed.``, amount, counterparty name
and number, date and time, new balance, transaction cost.
"""

from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import select

from ..ledger import TransferResult
from ..money import format_amount
from ..users import User
from .outbox import add_sms

TEMPLATES = {
    "en": {
        "send.sender": "{code} Confirmed. {amount} sent to {name} {phone} on {date} at {time}. "
        "New balance is {balance}. Transaction cost, {fee}.",
        "send.recipient": "{code} Confirmed. You have received {amount} from {name} {phone} "
        "on {date} at {time}. New balance is {balance}.",
        "float_issue.recipient": "{code} Confirmed. E-float of {amount} issued to you on {date} "
        "at {time}. New float balance is {balance}.",
        "failed": "{code} Failed. {reason} You tried to send {amount} to {name} {phone} on {date} "
        "at {time}. Your balance is {balance}.",
        "reason.exceeds_credits": "Insufficient funds to send {amount} plus {fee} cost.",
        "reason.other": "The transfer could not be completed ({result}).",
    },
    "sw": {
        "send.sender": "{code} Imethibitishwa. {amount} imetumwa kwa {name} {phone} tarehe {date} "
        "saa {time}. Salio jipya ni {balance}. Gharama ya muamala, {fee}.",
        "send.recipient": "{code} Imethibitishwa. Umepokea {amount} kutoka kwa {name} {phone} "
        "tarehe {date} saa {time}. Salio jipya ni {balance}.",
        "float_issue.recipient": "{code} Imethibitishwa. E-float ya {amount} imetolewa kwako tarehe "
        "{date} saa {time}. Salio jipya la float ni {balance}.",
        "failed": "{code} Imeshindikana. {reason} Ulijaribu kutuma {amount} kwa {name} {phone} "
        "tarehe {date} saa {time}. Salio lako ni {balance}.",
        "reason.exceeds_credits": "Salio halitoshi kutuma {amount} pamoja na gharama ya {fee}.",
        "reason.other": "Muamala haukukamilika ({result}).",
    },
}


class People:
    """The registered holders of the accounts in a batch, looked up in one query."""

    def __init__(self, session, requests):
        ids = {r.debit_account_id for r in requests} | {r.credit_account_id for r in requests}
        self.by_account = {
            u.account_id: u for u in session.execute(select(User).where(User.account_id.in_(ids))).scalars()
        }

    def get(self, account_id: int) -> User | None:
        return self.by_account.get(account_id)


def _common(request) -> dict:
    tz = ZoneInfo(current_app.config.get("TIMEZONE", "Africa/Nairobi"))
    when = request.executed_at.replace(tzinfo=ZoneInfo("UTC")).astimezone(tz)
    currency = current_app.config["CURRENCY"]
    return {
        "code": request.code,
        "amount": format_amount(request.amount, currency),
        "fee": format_amount(request.fee, currency),
        "date": when.strftime("%d/%m/%y"),
        "time": when.strftime("%H:%M"),
    }


def _send(session, user: User, key: str, request, **fields) -> None:
    templates = TEMPLATES.get(user.language, TEMPLATES["en"])
    body = templates[key].format(**fields)
    add_sms(session, phone=user.phone, body=body, request_id=request.id)


def _balance(user: User) -> str:
    return format_amount(user.account.available, current_app.config["CURRENCY"])


def write_posted(session, request, people: People) -> None:
    common = _common(request)
    payer, payee = people.get(request.debit_account_id), people.get(request.credit_account_id)
    if request.kind == "send" and payer is not None and payee is not None:
        _send(
            session,
            payer,
            "send.sender",
            request,
            **common,
            name=payee.name.upper(),
            phone=payee.phone,
            balance=_balance(payer),
        )
    if payee is not None:
        key = f"{request.kind}.recipient"
        peer = payer or payee
        _send(
            session,
            payee,
            key,
            request,
            **common,
            name=peer.name.upper(),
            phone=peer.phone,
            balance=_balance(payee),
        )


def write_rejected(session, request, result: TransferResult, people: People) -> None:
    payer, payee = people.get(request.debit_account_id), people.get(request.credit_account_id)
    if payer is None:
        return  # e.g. an operator's float issue: the operator sees the result on the CLI
    common = _common(request)
    templates = TEMPLATES.get(payer.language, TEMPLATES["en"])
    reason_key = f"reason.{result.value}" if f"reason.{result.value}" in templates else "reason.other"
    reason = templates[reason_key].format(**common, result=result.value)
    _send(
        session,
        payer,
        "failed",
        request,
        **common,
        reason=reason,
        name=(payee.name.upper() if payee else ""),
        phone=(payee.phone if payee else ""),
        balance=_balance(payer),
    )
