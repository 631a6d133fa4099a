"""Registration of a number the service does not know: language, first and last name, a PIN
typed twice. No account exists until both PINs match; a mismatch starts the PIN again.

The language is asked only where the country offers more than one (``country.languages``):
elsewhere registration starts at the first name (``flows.home_unregistered``), in the one
language offered."""

from ... import country, notices, pins
from ...extensions import db
from ...payments import holds
from ...users import Role, UserError, create_user, find_by_phone
from ..engine import N_, Choice, Retry, Screen, Step
from . import common

# A PIN chosen anywhere (here, and a new PIN in My account) is refused when it is among the
# first guesses of whoever holds the phone (``pins.is_easy``).
EASY_PIN = N_("Choose a PIN that is not easy to guess.")


def set_language(ctx) -> str:
    ctx.lang = ctx.data["lang"]
    return "ok"


def hold_pin(ctx) -> str:
    """Keep a hash of the chosen PIN (never the PIN) until it is typed again."""
    if pins.is_easy(ctx.secret, ctx.phone):
        return "easy"
    ctx.data["_pin_hash"] = pins.hash_pin(ctx.secret)
    return "ok"


def create_account(ctx) -> str:
    held = ctx.data.pop("_pin_hash", None)
    if not held or not pins.verify_pin(held, ctx.secret):
        return "mismatch"
    if find_by_phone(db.session, ctx.phone) is not None:
        return "taken"
    try:
        user = create_user(
            db.session,
            phone=ctx.phone,
            name=f"{ctx.data['first_name']} {ctx.data['last_name']}",
            role=Role.CUSTOMER,
            pin=None,
            language=ctx.data.get("lang") or country.first_language(),
        )
    except UserError:
        return "taken"
    user.pin_hash = held  # the hash made from the first entry, now confirmed
    notices.welcome(db.session, user)
    post_held_sends(ctx, user)
    return "ok"


def post_held_sends(ctx, user) -> None:
    """Money sent to this number before it registered is posted to the new account, and the
    new customer is told it is coming."""
    posts = holds.post_to_new_customer(db.session, user)
    if posts:
        notices.money_waiting(db.session, user, sum(r.amount for r in posts))


def hold_first_pin(ctx) -> str:
    """A customer an agent registered chooses a PIN: keep its hash until it is typed again."""
    if pins.is_easy(ctx.secret, ctx.phone):
        return "easy"
    ctx.data["_pin_hash"] = pins.hash_pin(ctx.secret)
    return "ok"


def save_first_pin(ctx) -> str:
    held = ctx.data.pop("_pin_hash", None)
    if not held or not pins.verify_pin(held, ctx.secret):
        return "mismatch"
    db.session.refresh(ctx.user, with_for_update=True)
    if ctx.user.pin_hash:
        return "taken"  # chosen meanwhile, in another session
    ctx.user.pin_hash = held
    return "ok"


FLOW = {
    "language": Screen(
        "welcome; choose the language for everything after",
        # Before the language is chosen nobody knows which one to speak: this screen speaks both.
        N_("Welcome to Tuma. Choose language\nKaribu Tuma. Chagua lugha\n1. English\n2. Kiswahili"),
        choices=(Choice(common.language, "set_language", save="lang"),),
        otherwise=N_("Choose 1 or 2. / Chagua 1 au 2."),
    ),
    "set_language": Step("speak the chosen language from now on", set_language, {"ok": "first_name"}),
    "first_name": Screen(
        "first name",
        N_("Register\nEnter your first name"),
        choices=(Choice(common.name, "last_name", save="first_name"),),
        otherwise=N_("Use letters only, up to 20."),
    ),
    "last_name": Screen(
        "last name",
        N_("Enter your last name"),
        choices=(Choice(common.name, "pin", save="last_name"),),
        otherwise=N_("Use letters only, up to 20."),
        resume=N_("Continue registering as {first_name}?"),
    ),
    "pin": Screen(
        "choose a PIN",
        N_("Choose a 4-digit PIN"),
        choices=(Choice(common.pin_format, "hold_pin"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "hold_pin": Step(
        "keep a hash of the chosen PIN until it is confirmed",
        hold_pin,
        {"ok": "confirm_pin", "easy": Retry("pin", EASY_PIN)},
    ),
    "confirm_pin": Screen(
        "the chosen PIN again",
        N_("Enter the PIN again to confirm"),
        choices=(Choice(common.pin_format, "create"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "create": Step(
        "open the account once both PINs match",
        create_account,
        {
            "ok": "welcome",
            "mismatch": Retry("pin", N_("The PINs did not match. Choose a PIN again.")),
            "taken": "taken",
        },
    ),
    "welcome": Screen(
        "the account is open",
        N_("Welcome to Tuma, {first_name}! Your account is ready. Dial again to send money."),
        end=True,
    ),
    "taken": Screen("the number registered meanwhile", N_("This number is already registered."), end=True),
    # A customer registered by an agent has no PIN until they dial and choose one.
    "set_pin": Screen(
        "choose a PIN for an account an agent opened",
        N_("Welcome to Tuma, {first_name}. Choose a 4-digit PIN"),
        choices=(Choice(common.pin_format, "hold_first_pin"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "hold_first_pin": Step(
        "keep a hash of the chosen PIN until it is confirmed",
        hold_first_pin,
        {"ok": "confirm_first_pin", "easy": Retry("set_pin", EASY_PIN)},
    ),
    "confirm_first_pin": Screen(
        "the chosen PIN again",
        N_("Enter the PIN again to confirm"),
        choices=(Choice(common.pin_format, "save_first_pin"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "save_first_pin": Step(
        "set the PIN once both entries match",
        save_first_pin,
        {
            "ok": "pin_set",
            "mismatch": Retry("set_pin", N_("The PINs did not match. Choose a PIN again.")),
            "taken": "pin_set",
        },
    ),
    "pin_set": Screen("the PIN is set", N_("Your PIN is set. Dial again to use Tuma."), end=True),
}

SAMPLE = {"lang": "sw", "first_name": "W" * common.NAME_LIMIT, "last_name": "W" * common.NAME_LIMIT}
