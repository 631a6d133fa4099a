"""What standing orders tell people (``payments/standing_orders.py`` decides when): the payer
when an order is set up, when a run could not be paid (one SMS per failure: the worker writes no
refusal receipt of its own for a run) and when an order ends; the payee when an order to them
starts and when it ends. Each run that is paid gets the ordinary receipts of its kind
(``messages/receipts.py``), as if it had been typed by hand.
"""

from flask import current_app

from . import money, sms_name, tell, when

# SMS (English message ids; Kiswahili in translations/sw/LC_MESSAGES/sms-standing-orders.po).
# {often} is one of OFTEN, {why} one of WHY, both in the reader's language.
PAYEE_STARTED = "{name} {phone} set up a standing order to pay you {amount} {often}, first on {date}."
PAYER_STARTED_RUNS = (
    "Standing order set up: {amount} {often} to {name}, first on {date}, {count} payments. "
    "Fee {fee} each. Dial {service_code} to change it."
)
PAYER_STARTED_UNTIL = (
    "Standing order set up: {amount} {often} to {name}, first on {date}, to {until}. "
    "Fee {fee} each. Dial {service_code} to change it."
)
RETRY = (
    "{code} Standing order: {amount} to {name} due {date} not paid. {why} "
    "We will try again at {time}. No fee."
)
SKIPPED = "{code} Standing order: {amount} to {name} due {date} not paid. {why} Skipped; next payment {next}."
SKIPPED_LAST = (
    "{code} Standing order: {amount} to {name} due {date} not paid. {why} Skipped; it was the last."
)
PAYEE_CANCELLED = "{name} {phone} cancelled the standing order paying you {amount} {often}."
PAYEE_FINISHED = (
    "The standing order from {name} {phone} paying you {amount} {often} has ended; its last date was {date}."
)
PAYER_FINISHED = "Your standing order of {amount} {often} to {name} has ended; its last date was {date}."

# How often, as the SMS says it (keyed by ``standing_orders.Frequency``).
OFTEN = {"daily": "every day", "weekly": "every week", "monthly": "every month"}
# Why a run was not paid, in a few words (keyed by the refused request's ``result``).
WHY = {
    "exceeds_credits": "Not enough money.",
    "limit_daily_exceeded": "Over your daily limit.",
    "limit_transaction_exceeded": "Over your limit per payment.",
    "limit_balance_exceeded": "They cannot receive it now.",
    "payee_locked": "They cannot take payments now.",
}
WHY_OTHER = "It could not be completed."


def _often(reader, order) -> str:
    return tell(reader, OFTEN[order.frequency])


def _day(day) -> str:
    return day.strftime("%d/%m/%y")


def payee_started(payee, payer, order) -> str:
    return tell(
        payee,
        PAYEE_STARTED,
        name=sms_name(payer),
        phone=payer.phone,
        amount=money(order.amount),
        often=_often(payee, order),
        date=_day(order.first_date),
    )


def payer_started(payer, payee, order, fee: int) -> str:
    fields = dict(
        name=sms_name(payee),
        amount=money(order.amount),
        often=_often(payer, order),
        date=_day(order.first_date),
        fee=money(fee),
        service_code=current_app.config["SERVICE_CODE"],
    )
    if order.runs_limit:
        return tell(payer, PAYER_STARTED_RUNS, count=order.runs_limit, **fields)
    return tell(payer, PAYER_STARTED_UNTIL, until=_day(order.ends_on), **fields)


def not_paid(payer, payee, order, run, request, *, retry_at=None) -> str:
    """To the payer: ``run`` was refused (``request.result`` says why); tried again at
    ``retry_at`` (naive UTC), or skipped."""
    fields = dict(
        code=request.code,
        name=sms_name(payee) if payee else "",
        amount=money(order.amount),
        date=_day(run.run_date),
        why=tell(payer, WHY.get(request.result or "", WHY_OTHER)),
    )
    if retry_at is not None:
        return tell(payer, RETRY, time=when(retry_at)[1], **fields)
    if order.next_date is None:
        return tell(payer, SKIPPED_LAST, **fields)
    return tell(payer, SKIPPED, next=_day(order.next_date), **fields)


def payee_ended(payee, payer, order, *, cancelled: bool, last_date=None) -> str:
    fields = dict(
        name=sms_name(payer), phone=payer.phone, amount=money(order.amount), often=_often(payee, order)
    )
    if cancelled:
        return tell(payee, PAYEE_CANCELLED, **fields)
    return tell(payee, PAYEE_FINISHED, date=_day(last_date), **fields)


def payer_finished(payer, payee, order, last_date) -> str:
    return tell(
        payer,
        PAYER_FINISHED,
        name=sms_name(payee),
        amount=money(order.amount),
        often=_often(payer, order),
        date=_day(last_date),
    )
