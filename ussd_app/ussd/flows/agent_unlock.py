"""An agent unlocks a customer's PIN with a one-time code sent to the locked phone. Part of
the agent's flow (``agent.py``): the states are ``agent.<name>``.

Works for every customer, with or without an ID number on record: the agent types the
registered name, Tuma sends a one-time code to the locked phone, the customer tells the agent
the code (ussd_app/unlock_codes.py). The name is never shown before it is typed right. Only
customer care lifts a lock Tuma's operators set: then no code is sent."""

import re

from ... import notices, unlock_codes
from ...extensions import db
from ...users import find_by_phone
from ..engine import N_, Choice, Retry, Screen, Step
from ..pin_guard import OperatorLock, is_locked, is_operator_locked, unlock_pin
from . import common, fraud_checks
from .agent_lookup import look_up

_FULL_NAME = re.compile(r"[A-Za-z][A-Za-z' \-]{0,81}")


def full_name(text: str) -> str | None:
    text = " ".join(text.split())
    return text if _FULL_NAME.fullmatch(text) else None


def unlock_code(text: str) -> str | None:
    text = text.strip()
    return text if text.isascii() and text.isdigit() and len(text) == unlock_codes.DIGITS else None


def _same_name(typed: str, registered: str) -> bool:
    return " ".join(typed.split()).casefold() == " ".join(registered.split()).casefold()


def find_locked(ctx) -> str:
    outcome, user = look_up(ctx, "locked_phone")
    if user is None:
        return outcome
    if not is_locked(user):
        return "not_locked"
    if is_operator_locked(user):  # only customer care lifts Tuma's own lock: no code is sent
        return "by_tuma"
    return "ok"


def check_unlock_name(ctx) -> str:
    if not unlock_codes.agent_attempt(ctx.user.phone):
        return "throttled"
    user = find_by_phone(db.session, ctx.data["locked_phone"])
    if user is None or not _same_name(ctx.data.pop("typed_name", ""), user.name):
        return "mismatch"
    ctx.data["locked_name"] = common.shown_name(user)
    return "ok"


def send_unlock_code(ctx) -> str:
    def run(c) -> str:
        user = find_by_phone(db.session, c.data["locked_phone"])
        if user is None:
            return "error"
        if is_operator_locked(user):  # locked by an operator since the number was typed
            return "by_tuma"
        code = unlock_codes.issue(c.user.phone, user.phone)
        if code is None:
            return "throttled"
        notices.unlock_code(db.session, user, c.user, code)
        return "ok"

    return common.pin_then(ctx, run)


def unlock_customer(ctx) -> str:
    user = find_by_phone(db.session, ctx.data["locked_phone"])
    if user is None:
        return "spent"
    outcome = unlock_codes.verify(ctx.user.phone, user.phone, ctx.secret or "")
    if outcome == unlock_codes.WRONG:
        ctx.data["code_tries_left"] = unlock_codes.tries_left(user.phone)
        return "wrong"
    if outcome != unlock_codes.OK:
        return "spent"
    try:
        unlock_pin(db.session, user, agent=ctx.user)  # and tells the customer by SMS
    except OperatorLock:  # locked by an operator since the code was sent
        return "by_tuma"
    fraud_checks.name_used(ctx, f"unlock:{user.id}:{ctx.data['locked_phone']}")
    return "ok"


STATES = {
    "unlock": Screen(
        "the locked customer's phone number",
        N_("Unlock PIN\nEnter the customer's phone number"),
        choices=(Choice(common.phone_number, "find_locked", save="locked_phone"),),
        otherwise=N_("Not a valid phone number."),
    ),
    "find_locked": Step(
        "look up the customer and make sure the PIN is locked",
        find_locked,
        {
            "ok": "unlock_name",
            "self": Retry("unlock", N_("Enter the customer's number, not yours.")),
            "unknown": Retry("unlock", N_("{locked_phone} is not registered with Tuma.")),
            "not_customer": Retry("unlock", N_("{locked_phone} is not a customer account.")),
            "not_locked": Retry("unlock", N_("The PIN of {locked_phone} is not locked.")),
            "by_tuma": "unlock_by_tuma",
            "throttled": "fraud.throttled",
        },
    ),
    "unlock_name": Screen(
        "the customer's registered name, as the customer says it",
        N_("Enter the customer's first and last name as registered"),
        choices=(Choice(full_name, "check_unlock_name", save="typed_name"),),
        otherwise=N_("Use letters only."),
    ),
    "check_unlock_name": Step(
        "compare the name with the registered one (counted per agent)",
        check_unlock_name,
        {
            "ok": "unlock_pin",
            "mismatch": Retry("unlock_name", N_("The name does not match. Check it with the customer.")),
            "throttled": "unlock_throttled",
        },
    ),
    "unlock_pin": Screen(
        "the agent's PIN, before a code is sent to the locked phone",
        N_("Enter your PIN to send {locked_name} an unlock code by SMS"),
        choices=(Choice(common.pin_format, "send_unlock_code"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "send_unlock_code": Step(
        "check the agent's PIN, then send a one-time code to the locked phone",
        send_unlock_code,
        common.pin_exits(
            "unlock_pin", ok="unlock_code", throttled="unlock_throttled", by_tuma="unlock_by_tuma"
        ),
    ),
    "unlock_code": Screen(
        "the one-time code the customer received by SMS",
        N_("Code sent by SMS to {locked_phone}. Ask the customer for it and enter it"),
        choices=(Choice(unlock_code, "unlock_customer"),),
        otherwise=N_("The code is 6 digits."),
        secret=True,
    ),
    "unlock_customer": Step(
        "check the code, then lift the lock and tell the customer",
        unlock_customer,
        {
            "ok": "unlocked",
            "wrong": Retry("unlock_code", N_("Wrong code. Tries left: {code_tries_left}.")),
            "spent": "unlock_spent",
            "by_tuma": "unlock_by_tuma",
        },
    ),
    "unlock_by_tuma": Screen(
        "the account is locked by an operator: no code is sent, only customer care unlocks it",
        N_("This account was locked by Tuma. Only customer care can unlock it."),
        end=True,
    ),
    "unlocked": Screen(
        "the PIN is unlocked", N_("The PIN of {locked_name} is unlocked. They can dial again."), end=True
    ),
    "unlock_spent": Screen(
        "the code expired, was used or had too many wrong tries",
        N_("That code is no longer valid. Start again to send a new one."),
        end=True,
    ),
    "unlock_throttled": Screen(
        "too many unlock attempts for this agent or customer",
        N_("Too many unlock attempts. Try again in an hour."),
        end=True,
    ),
}

# Only mobile numbers of our own country can be customers (issue 15 item 9).
STATES["find_locked"] = common.mobile_only("locked_phone", "unlock", STATES["find_locked"])

SAMPLE = {
    "locked_phone": "+" + "9" * 15,
    "locked_name": "W" * common.SHOWN_NAME_LIMIT,
    "code_tries_left": 9,
}
