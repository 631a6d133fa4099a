"""An agent's own menu: deposit (cash-in) for a customer, commission earned, registering a
customer, unlocking a customer's PIN after checking their ID number. Float balance and last
transactions are My account's screens (an agent's wallet is the e-float).

Deposit: the customer's number, the amount, a confirm screen with the customer's registered
name, the agent's PIN; the transfer id is minted at the confirm screen, as for sending money.
"""

from sqlalchemy import func, select

from ...extensions import db
from ...i18n import t
from ...payments.models import RequestKind, RequestStatus, TransferRequest
from ...sms import receipts
from ...sms.outbox import add_sms
from ...users import Role, UserError, create_user, find_by_phone
from ..engine import N_, Choice, Option, Retry, Screen, Step
from ..pin_guard import is_locked, unlock_pin
from . import common, fraud_checks, tail
from .registration import release_held_sends

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
            TransferRequest.status == RequestStatus.POSTED.value,
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
    release_held_sends(ctx, user)
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


def find_locked(ctx) -> str:
    outcome, user = _look_up(ctx, "locked_phone")
    if user is None:
        return outcome
    if not is_locked(user):
        return "not_locked"
    ctx.data["locked_name"] = common.shown_name(user)
    return "ok"


def unlock_customer(ctx) -> str:
    def run(c) -> str:
        user = find_by_phone(db.session, c.data["locked_phone"])
        if user is None or not user.id_number or user.id_number != c.data.pop("locked_id", None):
            return "mismatch"
        unlock_pin(db.session, user)
        fraud_checks.name_used(c, f"unlock:{user.id}:{c.data['locked_phone']}")
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
            "ok": "unlock_id",
            "self": Retry("unlock", N_("Enter the customer's number, not yours.")),
            "unknown": Retry("unlock", N_("{locked_phone} is not registered with Tuma.")),
            "not_customer": Retry("unlock", N_("{locked_phone} is not a customer account.")),
            "not_locked": Retry("unlock", N_("The PIN of {locked_phone} is not locked.")),
            "throttled": "fraud.throttled",
        },
    ),
    "unlock_id": Screen(
        "the ID number on the customer's ID card",
        N_("Check the ID card of {locked_name}\nEnter the ID number"),
        choices=(Choice(id_number, "unlock_pin", save="locked_id"),),
        otherwise=N_("An ID number is 5 to 20 letters or digits."),
    ),
    "unlock_pin": Screen(
        "the agent's PIN",
        N_("Enter your PIN to unlock {locked_name}"),
        choices=(Choice(common.pin_format, "unlock_customer"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "unlock_customer": Step(
        "check the agent's PIN and the ID number, then lift the lock",
        unlock_customer,
        common.pin_exits("unlock_pin", ok="unlocked", mismatch="id_mismatch"),
    ),
    "unlocked": Screen(
        "the PIN is unlocked", N_("The PIN of {locked_name} is unlocked. They can dial again."), end=True
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
# Limits said before the PIN, not after it (issue 15 item 16).
FLOW["quote_deposit"] = common.within_limits(
    FLOW["quote_deposit"], "deposit_amount", kind="deposit", payer=None, payee="customer"
)


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
}
