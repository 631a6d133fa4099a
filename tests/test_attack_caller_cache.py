"""An outside reviewer's attacks on the caller's facts cached in the USSD session
(ussd/caller.py). Each test states what should happen and fails while the hole is there.

A number moved off its holder was missed when the ``phone`` column was not loaded before it
was set. And, not the cache's doing but found scanning every key ("never a PIN, nor its hash,
in Redis"): the engine's back-navigation marks kept the PIN hash a finished PIN change or
registration saved."""

from tests.ussd_helpers import Phone
from ussd_app.extensions import db
from ussd_app.users import OPERATOR_LOCK_UNTIL, User, find_by_phone
from ussd_app.ussd import caller

JUMA, E164, PIN = "0712000111", "+254712000111", "8642"
BY_TUMA = "END Your Tuma account is locked by Tuma. Please call customer care."
TOKEN = f"{caller.PREFIX}:{E164}"


def _redis_holds(redis, needle: str) -> list[bytes]:
    """Every key of the app's Redis whose value holds ``needle`` (strings as they are, other
    types as DUMP gives them)."""
    found = []
    for key in redis.scan_iter("*"):
        raw = redis.get(key) if redis.type(key) == b"string" else redis.dump(key)
        if raw is not None and needle.encode() in raw:
            found.append(key)
    return found


def test_a_finished_pin_change_leaves_the_new_pin_hash_in_no_redis_key(app, customer, redis):
    """``save_new_pin`` pops ``_new_pin_hash`` from the flow's data, but the conversation's
    back-navigation marks (``conversation.marks``, a copy of the data at each screen) keep it:
    once the change is done, the session's Redis value holds the very argon2 hash that is now
    the user's ``pin_hash`` in the database, for the session's whole TTL (and in any RDB/AOF
    file). caller.py and the threat model say the session keeps "never a PIN, nor its hash"."""
    phone = Phone(app.test_client(), JUMA)
    assert phone.walk("2", "3", PIN, "1357", "1357") == "END Your PIN has been changed."
    db.session.rollback()
    new_hash = db.session.get(User, customer.id).pin_hash
    assert _redis_holds(redis, "$argon2") == []  # found in tuma:ussd:session:<id> (its marks)
    assert _redis_holds(redis, new_hash) == []


def test_a_finished_registration_leaves_the_pin_hash_in_no_redis_key(app, redis):
    """The same through self-registration: ``_pin_hash`` is popped from the data, kept in the
    marks, and is the new customer's ``pin_hash``."""
    phone = Phone(app.test_client(), "0712000444")
    assert phone.dial().startswith("CON Welcome to Tuma. Choose language")
    for typed in ("1", "Amina", "Hassan", "1357"):
        phone.send(typed)
    assert phone.send("1357").startswith("END ")
    db.session.rollback()
    new_hash = find_by_phone(db.session, "+254712000444").pin_hash
    assert new_hash
    assert _redis_holds(redis, new_hash) == []


def test_a_number_moved_off_its_holder_is_forgotten_by_the_old_numbers_open_session(
    app, config, customer, second_customer
):
    """``_changed`` takes the number a user moved from out of the ``phone`` attribute's history;
    SQLAlchemy keeps no old value for a column that was not loaded when it was set (any user
    object after a commit: expire_on_commit). So the old number's token is not replaced: the
    open session on the old SIM (say, the stolen phone Juma moved away from, his account locked
    as well) goes on with Juma's id, wallet and "not locked" for up to a minute, and its limit
    check before the PIN runs on Juma's wallet, saying Juma's limits."""
    config(LIMITS_BASIC_MAJOR="1000,5000,100000")
    stolen = Phone(app.test_client(), JUMA)
    assert stolen.walk("1", "0712000222").startswith("CON Send to Wanjiru Kamau")
    user_id = customer.id
    db.session.commit()  # as after any earlier commit in the writer's request: attributes expired
    juma = db.session.get(User, user_id)
    db.session.expire(juma)
    juma.phone, juma.locked_until = "+254712000999", OPERATOR_LOCK_UNTIL  # his new SIM; locked
    db.session.commit()
    reply = stolen.send("1200")
    assert "Over your limit" not in reply  # "CON Over your limit of KES 1,000.00 per transaction."
