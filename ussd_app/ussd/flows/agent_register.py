"""Who a customer is, vouched for by an agent in person: registering a new customer (the
customer chooses the PIN by dialling; the agent never knows it), and raising a customer whose
ID card the agent checked to the full tier. Part of the agent's flow (``agent.py``): the states
are ``agent.<name>``; both confirm screens' Cancel is the flow's ``cancelled`` screen (in
``agent_deposit``'s tail)."""

from ... import notices
from ...extensions import db
from ...users import Role, Tier, UserError, create_user, find_by_phone
from ..engine import N_, Choice, Option, Retry, Screen, Step
from . import common, fraud_checks
from .agent_lookup import look_up
from .registration import post_held_sends

ID_LIMIT = 20


def id_number(text: str) -> str | None:
    text = text.strip().upper()
    return text if text.isascii() and text.isalnum() and 5 <= len(text) <= ID_LIMIT else None


# -- register a customer -------------------------------------------------------------------


def check_new_number(ctx) -> str:
    # The answer tells the agent whether the number is on Tuma: a look-up like the deposit's
    # (counted and throttled, ``fraud_checks``), with no name shown (so no cancel). The agent's
    # own number tells nothing about anyone else: not a look-up (as in ``agent_lookup``).
    if ctx.data["new_phone"] == ctx.user.phone:
        return "taken"
    if not fraud_checks.lookup_allowed(ctx):
        return "throttled"
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
    notices.opened_by_agent(db.session, user, ctx.user)
    return "ok"


# -- raise a customer to the full tier after checking their ID card ------------------------


def find_to_verify(ctx) -> str:
    outcome, user = look_up(ctx, "verify_phone")
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
        notices.tier_raised(db.session, user, c.user)
        fraud_checks.name_used(c, f"tier:{user.id}:{c.data['verify_phone']}")
        return "ok"

    return common.pin_then(ctx, run)


STATES = {
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
        {
            "ok": "register_first",
            "taken": Retry("register", N_("{new_phone} is already registered.")),
            "throttled": "fraud.throttled",
        },
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
STATES["check_new_number"] = common.mobile_only("new_phone", "register", STATES["check_new_number"])
STATES["find_to_verify"] = common.mobile_only("verify_phone", "verify_id", STATES["find_to_verify"])

SAMPLE = {
    "new_phone": "+" + "9" * 15,
    "new_first": "W" * common.NAME_LIMIT,
    "new_last": "W" * common.NAME_LIMIT,
    "new_id": "W" * ID_LIMIT,
    "verify_phone": "+" + "9" * 15,
    "verify_name": "W" * common.SHOWN_NAME_LIMIT,
    "verify_id": "W" * ID_LIMIT,
}
