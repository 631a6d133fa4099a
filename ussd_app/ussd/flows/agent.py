"""An agent's own menu: deposit (cash-in) for a customer, commission earned, registering a
customer, unlocking a customer's PIN with a one-time code sent to the locked phone, and raising
a customer whose ID card the agent checked to the full tier. Float balance and last
transactions are My account's screens (an agent's wallet is the e-float).

Deposit: the customer's number, the amount, a confirm screen with the customer's registered
name, the agent's PIN; the transfer id is minted at the confirm screen, as for sending money.
"""

import re
from datetime import UTC, datetime

from flask import current_app
from sqlalchemy import func, select

from ... import unlock_codes
from ...extensions import db
from ...i18n import t
from ...payments.models import RequestKind, RequestStatus, TransferRequest
from ...sms import receipts
from ...sms.outbox import add_sms
from ...users import Role, Tier, UserError, create_user, find_by_phone
from ..engine import N_, Choice, Option, Retry, Screen, Step
from ..pin_guard import OperatorLock, is_locked, is_operator_locked, unlock_pin
from . import common, fraud_checks, tail
from .registration import post_held_sends

ID_LIMIT = 20


def id_number(text: str) -> str | None:
    text = text.strip().upper()
    return text if text.isascii() and text.isalnum() and 5 <= len(text) <= ID_LIMIT else None


def _customer(ctx, key: str) -> tuple[str, object]:
    phone = ctx.data[key]
    if phone == ctx.user.phone:
        return "self", None
    user = find_by_phone(db.session, phone)
    if user is None:
        return "unknown", None
    if user.role != Role.CUSTOMER.value:
        return "not_customer", None
    return "ok", user


# -- deposit -------------------------------------------------------------------------------


def _look_up(ctx, key: str) -> tuple[str, object]:
    """``_customer``, counted as a name look-up (throttled: ``fraud_checks``): the answer tells
    the agent whether the number is on Tuma and whose it is."""
    if ctx.data[key] != ctx.user.phone and not fraud_checks.lookup_allowed(ctx):
        return "throttled", None
    outcome, user = _customer(ctx, key)
    if user is not None:
        fraud_checks.name_shown(ctx, ctx.data[key])  # a cancel until the flow records its request
    return outcome, user


def find_depositor(ctx) -> str:
    outcome, user = _look_up(ctx, "customer_phone")
    if user is not None:
        ctx.data["customer_name"] = common.shown_name(user)
        ctx.data["customer_account"] = user.account_id
    return outcome


def quote_deposit(ctx) -> str:
    from ...payments.submit import mint_request_id

    ctx.data.update(fee=0, amount_text=common.money(ctx.data["amount"]), transfer_id=mint_request_id())
    return "ok"


def record_deposit(ctx) -> str:
    """After the agent's PIN: the deposit is recorded (the agent's float must cover it)."""
    outcome = common.record_payment(
        ctx,
        kind=RequestKind.DEPOSIT.value,
        debit_account_id=ctx.user.account_id,
        credit_account_id=ctx.data["customer_account"],
    )
    if outcome == "ok":
        fraud_checks.name_used(ctx, ctx.data["transfer_id"])
    return outcome


# -- commission ----------------------------------------------------------------------------


def commission_earned(ctx) -> str:
    total = db.session.execute(
        select(func.coalesce(func.sum(TransferRequest.commission), 0)).where(
            TransferRequest.credit_account_id == ctx.user.account_id,
            TransferRequest.kind == RequestKind.WITHDRAWAL.value,
            TransferRequest.status == RequestStatus.ACCEPTED.value,
        )
    ).scalar_one()
    ctx.data["commission_text"] = common.money(int(total))
    return "ok"


# -- register a customer -------------------------------------------------------------------


def check_new_number(ctx) -> str:
    return "taken" if find_by_phone(db.session, ctx.data["new_phone"]) is not None else "ok"


def register_customer(ctx) -> str:
    data = ctx.data
    try:
        user = create_user(
            db.session,
            phone=data["new_phone"],
            name=f"{data['new_first']} {data['new_last']}",
            role=Role.CUSTOMER,
            pin=None,  # the customer chooses it by dialling; the agent never knows it
            id_number=data["new_id"],
        )
    except UserError:
        return "taken"
    post_held_sends(ctx, user)
    code = common.service_code()
    add_sms(
        db.session,
        phone=user.phone,
        body=t(
            user.language,
            receipts.OPENED_BY_AGENT,
            domain="sms",
            first_name=user.first_name,
            agent=ctx.user.name,
            code=code,
        ),
    )
    return "ok"


# -- unlock a customer's PIN ---------------------------------------------------------------
#
# Works for every customer, with or without an ID number on record: the agent types the
# registered name, Tuma sends a one-time code to the locked phone, the customer tells the agent
# the code (ussd_app/unlock_codes.py). The name is never shown before it is typed right.

_FULL_NAME = re.compile(r"[A-Za-z][A-Za-z' \-]{0,81}")

UNLOCK_CODE_SMS = (
    "Tuma: agent {agent} {agent_phone} asks to unlock your PIN. Code {code}, valid {minutes} min. "
    "Tell it only to an agent you are with now."
)


def full_name(text: str) -> str | None:
    text = " ".join(text.split())
    return text if _FULL_NAME.fullmatch(text) else None


def unlock_code(text: str) -> str | None:
    text = text.strip()
    return text if text.isascii() and text.isdigit() and len(text) == unlock_codes.DIGITS else None


def _same_name(typed: str, registered: str) -> bool:
    return " ".join(typed.split()).casefold() == " ".join(registered.split()).casefold()


def find_locked(ctx) -> str:
    outcome, user = _look_up(ctx, "locked_phone")
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
        add_sms(
            db.session,
            phone=user.phone,
            body=t(
                user.language,
                UNLOCK_CODE_SMS,
                domain="sms",
                agent=receipts.sms_name(c.user),
                agent_phone=c.user.phone,
                code=code,
                minutes=-(-current_app.config["UNLOCK_CODE_SECONDS"] // 60),
            ),
        )
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


# -- raise a customer to the full tier after checking their ID card ------------------------

TIER_RAISED_SMS = (
    "Tuma: agent {agent} {agent_phone} checked your ID on {date}. Your account is now on the full "
    "tier, with higher limits."
)


def find_to_verify(ctx) -> str:
    outcome, user = _look_up(ctx, "verify_phone")
    if user is None:
        return outcome
    if user.tier == Tier.FULL.value:
        return "full"
    ctx.data["verify_name"] = common.shown_name(user)
    return "ok"


def check_verify_id(ctx) -> str:
    user = find_by_phone(db.session, ctx.data["verify_phone"])
    if user is not None and user.id_number and user.id_number != ctx.data["verify_id"]:
        return "mismatch"  # an ID number on record is never replaced from a phone
    return "ok"


def raise_tier(ctx) -> str:
    def run(c) -> str:
        from ...admin.models import record

        user = find_by_phone(db.session, c.data["verify_phone"])
        if user is None:
            return "error"
        db.session.refresh(user, with_for_update=True)
        if user.id_number and user.id_number != c.data["verify_id"]:
            return "mismatch"
        was = user.tier
        user.id_number = c.data["verify_id"]
        user.tier = Tier.FULL.value
        # Where tier changes are audited (the back office's own changes go there too).
        record(db.session, None, "tier.raise", user.phone, by_agent=c.user.phone, was=was, now=user.tier)
        date, _ = receipts.when(datetime.now(UTC).replace(tzinfo=None))
        add_sms(
            db.session,
            phone=user.phone,
            body=t(
                user.language,
                TIER_RAISED_SMS,
                domain="sms",
                agent=receipts.sms_name(c.user),
                agent_phone=c.user.phone,
                date=date,
            ),
        )
        fraud_checks.name_used(c, f"tier:{user.id}:{c.data['verify_phone']}")
        return "ok"

    return common.pin_then(ctx, run)


FLOW = {
    # deposit
    "deposit": Screen(
        "the customer's phone number, for a cash deposit",
        N_("Deposit\nEnter the customer's phone number"),
        choices=(Choice(common.phone_number, "find_depositor", save="customer_phone"),),
        otherwise=N_("Not a valid phone number."),
    ),
    "find_depositor": Step(
        "look up the customer",
        find_depositor,
        {
            "ok": "deposit_amount",
            "self": Retry("deposit", N_("Enter the customer's number, not yours.")),
            "unknown": Retry("deposit", N_("{customer_phone} is not registered with Tuma.")),
            "not_customer": Retry("deposit", N_("{customer_phone} is not a customer account.")),
            "throttled": "fraud.throttled",
        },
    ),
    "deposit_amount": Screen(
        "the amount deposited",
        N_("Deposit to {customer_name}\nEnter amount"),
        choices=(Choice(common.amount, "quote_deposit", save="amount"),),
        otherwise=N_("Enter a whole amount, like 500."),
    ),
    "quote_deposit": Step("mint the transfer id", quote_deposit, {"ok": "deposit_confirm"}),
    **tail.money_tail(
        record_deposit,
        what="the deposit",
        confirm=N_("Deposit {amount_text} to {customer_name} {customer_phone}?"),
        resume=N_("Continue depositing {amount_text} to {customer_name}?"),
        ask=N_("Enter your PIN to deposit {amount_text} to {customer_name}"),
        done=N_("Depositing {amount_text} to {customer_name}. You will both receive an SMS shortly."),
        short=N_("Not enough float to deposit {amount_text}. Your float balance is {balance_text}."),
        names=tail.Names(
            confirm="deposit_confirm",
            pin="deposit_pin",
            submit="submit_deposit",
            done="deposit_done",
            short="float_short",
        ),
    ),
    # commission
    "commission_pin": Screen(
        "PIN before the commission earned",
        N_("Enter your PIN to see your commission"),
        choices=(Choice(common.pin_format, "check_commission_pin"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "check_commission_pin": common.pin_step("commission_earned", "commission_pin"),
    "commission_earned": Step(
        "add up commission on posted withdrawals", commission_earned, {"ok": "commission"}
    ),
    "commission": Screen("commission earned", N_("Commission earned: {commission_text}."), end=True),
    # register a customer
    "register": Screen(
        "the new customer's phone number",
        N_("Register customer\nEnter their phone number"),
        choices=(Choice(common.phone_number, "check_new_number", save="new_phone"),),
        otherwise=N_("Not a valid phone number."),
    ),
    "check_new_number": Step(
        "refuse a number that is registered already",
        check_new_number,
        {"ok": "register_first", "taken": Retry("register", N_("{new_phone} is already registered."))},
    ),
    "register_first": Screen(
        "the new customer's first name",
        N_("Enter their first name"),
        choices=(Choice(common.name, "register_last", save="new_first"),),
        otherwise=N_("Use letters only, up to 20."),
    ),
    "register_last": Screen(
        "the new customer's last name",
        N_("Enter their last name"),
        choices=(Choice(common.name, "register_id", save="new_last"),),
        otherwise=N_("Use letters only, up to 20."),
    ),
    "register_id": Screen(
        "the new customer's ID number, as on their ID card",
        N_("Enter their ID number"),
        choices=(Choice(id_number, "register_confirm", save="new_id"),),
        otherwise=N_("An ID number is 5 to 20 letters or digits."),
    ),
    "register_confirm": Screen(
        "confirm the new customer's details",
        N_("Register {new_first} {new_last} {new_phone} ID {new_id}?"),
        options=(Option(N_("Confirm"), "register_pin"), Option(N_("Cancel"), "cancelled")),
    ),
    "register_pin": Screen(
        "the agent's PIN",
        N_("Enter your PIN to register the customer"),
        choices=(Choice(common.pin_format, "check_register_pin"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "check_register_pin": common.pin_step("create_customer", "register_pin"),
    "create_customer": Step(
        "open the customer's account without a PIN and invite them by SMS",
        register_customer,
        {"ok": "registered", "taken": "register_taken"},
    ),
    "registered": Screen(
        "the customer is registered",
        N_("{new_first} {new_last} is registered. They should dial now to choose their PIN."),
        end=True,
    ),
    "register_taken": Screen(
        "the number registered meanwhile", N_("This number is already registered."), end=True
    ),
    # unlock a customer's PIN
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
    # raise a customer to the full tier
    "verify_id": Screen(
        "the customer's phone number, to check their ID card",
        N_("Verify customer ID\nEnter the customer's phone number"),
        choices=(Choice(common.phone_number, "find_to_verify", save="verify_phone"),),
        otherwise=N_("Not a valid phone number."),
    ),
    "find_to_verify": Step(
        "look up the customer; refuse one already on the full tier",
        find_to_verify,
        {
            "ok": "verify_id_number",
            "self": Retry("verify_id", N_("Enter the customer's number, not yours.")),
            "unknown": Retry("verify_id", N_("{verify_phone} is not registered with Tuma.")),
            "not_customer": Retry("verify_id", N_("{verify_phone} is not a customer account.")),
            "full": Retry("verify_id", N_("{verify_phone} is already on the full tier.")),
            "throttled": "fraud.throttled",
        },
    ),
    "verify_id_number": Screen(
        "the ID number on the customer's ID card",
        N_("Check the ID card of {verify_name}\nEnter the ID number"),
        choices=(Choice(id_number, "check_verify_id", save="verify_id"),),
        otherwise=N_("An ID number is 5 to 20 letters or digits."),
    ),
    "check_verify_id": Step(
        "an ID number on record must match",
        check_verify_id,
        {"ok": "verify_confirm", "mismatch": "id_mismatch"},
    ),
    "verify_confirm": Screen(
        "confirm raising the customer to the full tier",
        N_("Raise {verify_name} {verify_phone} ID {verify_id} to the full tier?"),
        options=(Option(N_("Confirm"), "verify_pin"), Option(N_("Cancel"), "cancelled")),
    ),
    "verify_pin": Screen(
        "the agent's PIN",
        N_("Enter your PIN to confirm you checked the ID card"),
        choices=(Choice(common.pin_format, "raise_tier"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "raise_tier": Step(
        "check the agent's PIN, then raise the tier (audited) and tell the customer",
        raise_tier,
        common.pin_exits("verify_pin", ok="tier_raised", mismatch="id_mismatch"),
    ),
    "tier_raised": Screen(
        "the customer is on the full tier",
        N_("{verify_name} is now on the full tier."),
        end=True,
    ),
    "id_mismatch": Screen(
        "the ID number does not match the one on record",
        N_("The ID number does not match our records. Nothing was changed."),
        end=True,
    ),
}

# Only mobile numbers of our own country can be customers (issue 15 item 9).
FLOW["find_depositor"] = common.mobile_only("customer_phone", "deposit", FLOW["find_depositor"])
FLOW["check_new_number"] = common.mobile_only("new_phone", "register", FLOW["check_new_number"])
FLOW["find_locked"] = common.mobile_only("locked_phone", "unlock", FLOW["find_locked"])
FLOW["find_to_verify"] = common.mobile_only("verify_phone", "verify_id", FLOW["find_to_verify"])
# No limit of the customer's is said before the agent's PIN: their balance room is theirs
# alone (common.within_limits). The worker refuses a deposit over it and SMSes both.


SAMPLE = {
    "customer_phone": "+" + "9" * 15,
    "customer_name": "W" * common.SHOWN_NAME_LIMIT,
    "customer_account": 1,
    "commission_text": "KES 10,000,000.00",
    "new_phone": "+" + "9" * 15,
    "new_first": "W" * common.NAME_LIMIT,
    "new_last": "W" * common.NAME_LIMIT,
    "new_id": "W" * ID_LIMIT,
    "locked_phone": "+" + "9" * 15,
    "locked_name": "W" * common.SHOWN_NAME_LIMIT,
    "code_tries_left": 9,
    "verify_phone": "+" + "9" * 15,
    "verify_name": "W" * common.SHOWN_NAME_LIMIT,
    "verify_id": "W" * ID_LIMIT,
}
