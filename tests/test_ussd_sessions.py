"""Sessions as people use them (issue 15, items 10, 17, 18): going back forgets what the
abandoned branch chose, the resume offer says what it would continue and never continues
money already recorded, and the screens people misread."""

import json

import pytest
from sqlalchemy import func, select

from tests.helpers import fund
from tests.ussd_helpers import Phone, options, person, put_session_doc, screen, session_doc
from ussd_app.extensions import db
from ussd_app.i18n import LANGUAGES
from ussd_app.payments.models import RequestKind, TransferRequest
from ussd_app.users import create_user
from ussd_app.ussd import gsm7, sessions
from ussd_app.ussd.conversation import Conversation
from ussd_app.ussd.engine import RESUME, Choice, Context, Engine, Option, Screen, Step
from ussd_app.ussd.flows import MODULES, engine

PIN = "8642"
OFFER = "\n1. Yes\n2. No, start again"


@pytest.fixture
def juma(customer, second_customer):
    """The cast's customer with KES 50,000, and someone to send to."""
    fund(customer.account_id, 5_000_000)
    return customer


@pytest.fixture
def shops(app):
    for phone, name, number, paybill in (
        ("+254700000002", "Mama Mboga", "123456", False),
        ("+254700000003", "Kisumu Water", "888880", True),
    ):
        create_user(
            db.session, phone=phone, name=name, role="merchant", pin="2222", till=number, paybill=paybill
        )
    db.session.commit()


def requests_of(kind: RequestKind | None = None) -> list[TransferRequest]:
    db.session.expire_all()
    query = select(TransferRequest).where(TransferRequest.kind != RequestKind.DEPOSIT.value)
    if kind is not None:
        query = select(TransferRequest).where(TransferRequest.kind == kind.value)
    return list(db.session.execute(query).scalars())


def sends_of(amount: int) -> int:
    db.session.expire_all()
    return db.session.execute(
        select(func.count()).where(
            TransferRequest.kind == RequestKind.SEND.value, TransferRequest.amount == amount
        )
    ).scalar_one()


def stored_data(phone: Phone) -> dict:
    return sessions.load(phone.session_id).data


# -- item 10: going back forgets the abandoned branch ------------------------------------------


def test_plain_confirm_after_backing_out_of_protection_pays_the_merchant(client, juma, shops):
    phone = Phone(client, "0712000111")
    assert "3. Pay with protection" in phone.walk("5", "123456", "700")
    assert screen(phone.send("3")).startswith(
        "Enter your PIN to pay KES 700.00 to Mama Mboga with protection"
    )
    assert "3. Pay with protection" in phone.send("0")  # back on the confirm screen
    assert screen(phone.send("1")) == "Enter your PIN to pay KES 700.00 to Mama Mboga"
    assert phone.send(PIN).startswith("END Paying KES 700.00 to Mama Mboga. You will receive an SMS")
    [payment] = requests_of()
    assert payment.kind == RequestKind.BUY_GOODS.value  # what the screen said: a plain payment
    assert payment.hold_state is None and payment.hold_seconds is None


def test_a_resumed_session_does_not_carry_protection_either(client, juma, shops):
    dropped = Phone(client, "0712000111")
    dropped.walk("5", "123456", "700", "3", "0")  # protection chosen, then backed out of; drops
    again = Phone(client, "0712000111")
    assert screen(again.dial()) == "Continue paying KES 700.00 to Mama Mboga?" + OFFER
    assert "3. Pay with protection" in again.send("1")
    again.send("1")
    assert again.send(PIN).startswith("END Paying KES 700.00 to Mama Mboga.")
    [payment] = requests_of()
    assert payment.kind == RequestKind.BUY_GOODS.value and payment.hold_state is None


def test_protection_chosen_after_going_back_still_holds(client, juma, shops):
    phone = Phone(client, "0712000111")
    phone.walk("5", "123456", "700", "1", "0")  # plain Confirm, back, then protection
    phone.send("3")
    assert phone.send(PIN).startswith("END Paying KES 700.00 to Mama Mboga, held until you confirm")
    [payment] = requests_of()
    assert payment.kind == RequestKind.PROTECTED_PURCHASE.value


def _toy_engine() -> Engine:
    def choose(kind):
        def run(ctx):
            ctx.data["kind"] = kind
            return "ok"

        return run

    return Engine(
        {
            "toy": {
                "home": Screen("home", "Home", options=(Option("Go", "amount"),)),
                "amount": Screen("amount", "Amount", choices=(Choice(str.strip, "confirm", save="amount"),)),
                "confirm": Screen(
                    "confirm",
                    "Pay {amount}",
                    options=(Option("Plain", "plain"), Option("Special", "special")),
                ),
                "plain": Step("plain", choose("plain"), {"ok": "done"}),
                "special": Step("special", choose("special"), {"ok": "special_next"}),
                "special_next": Screen("special", "Special {amount}", options=(Option("Done", "done"),)),
                "done": Screen("done", "Done {kind}", end=True),
            }
        }
    )


def test_going_back_restores_the_data_as_that_screen_showed_it():
    toy = _toy_engine()
    ctx = Context(phone="+254712000111", lang="en", home="toy.home")
    conv, _ = toy.begin(ctx)
    toy.handle(conv, ctx, "1")
    toy.handle(conv, ctx, "50")
    at_confirm = dict(ctx.data)
    toy.handle(conv, ctx, "2")  # the special branch sets "kind"
    assert ctx.data["kind"] == "special"
    assert toy.handle(conv, ctx, "0").text.startswith("Pay 50")
    assert ctx.data == at_confirm  # the branch's choice is forgotten
    assert toy.handle(conv, ctx, "0").text == "Amount"
    assert ctx.data == {}  # and so is the amount typed on the screen we went back to
    # Stored and read back (as between two requests), the marks still work.
    conv = Conversation.from_json(json.loads(json.dumps(conv.to_json())))
    toy.handle(conv, ctx, "70")
    toy.handle(conv, ctx, "2")
    toy.handle(conv, ctx, "0")
    assert toy.handle(conv, ctx, "1").text == "Done plain"


def test_walking_in_circles_keeps_the_stored_session_bounded():
    toy = Engine(
        {
            "toy": {
                "home": Screen("home", "Home", options=(Option("Go", "a"),)),
                "a": Screen("a", "A", options=(Option("To B", "b"),)),
                "b": Screen("b", "B {n}", options=(Option("To A", "a"),)),
            }
        }
    )
    ctx = Context(phone="+254712000111", lang="en", home="toy.home", data={"n": "x" * 500})
    conv, _ = toy.begin(ctx)
    toy.handle(conv, ctx, "1")
    for _ in range(200):
        toy.handle(conv, ctx, "1")
    assert len(conv.history) == len(conv.marks) == 30
    assert len(json.dumps(conv.to_json())) < 30 * 600
    toy.handle(conv, ctx, "0")
    assert conv.state in ("toy.a", "toy.b") and len(conv.history) == 29


# Inputs tried on every screen by the walk below: menu numbers and one valid value of each
# kind a screen asks for (never a PIN: a PIN screen is where a walk stops).
TRIES = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0712000222", "0712000999", "123456", "888880"]
TRIES += ["ACC1", "700", "Juma", "Rent", "#"]


def _clone(redis, session_id: str, new_id: str) -> None:
    doc = session_doc(redis, session_id)
    doc["last_text_digest"] = None
    put_session_doc(redis, new_id, doc, ex=600)


def test_back_from_every_state_forgets_what_was_chosen_after_it(app, client, juma, shops, redis, config):
    """Walk every flow from each role's home through the real webhook: from every screen
    reached, each input that moves forward, then "0", must land on the same screen with the
    flow's data exactly as that screen showed it."""
    config(NAME_LOOKUP_LIMIT=10_000, NAME_CANCEL_LIMIT=10_000, WEBHOOK_RATE_PER_MINUTE=100_000)
    agent = person("+254700000101", "Ali Agent", pin="1111", role="agent")
    fund(agent.account_id, 1_000_000)
    merchant_phone = "0700000002"
    counter = iter(range(1_000_000))
    checked: set[tuple[str, str]] = set()
    for number in ("0712000111", "0700000101", merchant_phone):
        start = Phone(client, number, append=False)
        start.dial()
        frontier, seen = [start.session_id], {sessions.load(start.session_id).conversation.state}
        while frontier:
            here = frontier.pop()
            was = sessions.load(here)
            for value in TRIES:
                probe = f"walk-{next(counter)}"
                _clone(redis, here, probe)
                phone = Phone(client, number, append=False, session_id=probe)
                phone.send(value)
                now = sessions.load(probe)
                conv = now.conversation
                if conv.ended or len(conv.history) != len(was.conversation.history) + 1:
                    continue  # not a step forward (invalid, a page, an END, or home)
                if (was.conversation.state, conv.state) not in checked:
                    checked.add((was.conversation.state, conv.state))
                    back_probe = f"walk-{next(counter)}"
                    _clone(redis, probe, back_probe)
                    Phone(client, number, append=False, session_id=back_probe).send("0")
                    back = sessions.load(back_probe)
                    assert back.conversation.state == was.conversation.state, (value, conv.state)
                    lasting = set(engine.lasting)
                    assert {k: v for k, v in back.data.items() if k not in lasting} == {
                        k: v for k, v in was.data.items() if k not in lasting
                    }, (was.conversation.state, value, conv.state)
                state = engine.state(conv.state)
                if conv.state not in seen and not state.secret:
                    seen.add(conv.state)
                    frontier.append(probe)
    states = {a for a, _ in checked}
    # The walk reached the flows that matter here (a wiring change that hides them fails).
    for name in ("pay.till_confirm", "pay.confirm", "send_money.confirm", "send_money.unregistered"):
        assert name in states, sorted(states)
    assert len(checked) > 40, len(checked)


# -- item 17: the resume offer -----------------------------------------------------------------


def test_the_resume_offer_says_what_would_be_continued(client, juma):
    Phone(client, "0712000111").walk("1", "0712000222", "1613")  # drops at the confirm screen
    again = Phone(client, "0712000111")
    assert screen(again.dial()) == "Continue sending KES 1,613.00 to Wanjiru Kamau?" + OFFER


def test_the_resume_offer_in_kiswahili(client, app):
    user = person("+254712000111", "Juma Otieno", pin=PIN, language="sw")
    person("+254712000222", "Wanjiru Kamau", pin="9753")
    fund(user.account_id, 5_000_000)
    Phone(client, "0712000111").walk("1", "0712000222", "1613")
    body = screen(Phone(client, "0712000111").dial())
    assert body == "Endelea kutuma KES 1,613.00 kwa Wanjiru Kamau?\n1. Ndiyo\n2. Hapana, anza upya"


def test_an_agents_deposit_is_offered_back_by_what_it_does(client, juma):
    agent = person("+254700000101", "Ali Agent", pin="1111", role="agent")
    fund(agent.account_id, 1_000_000)
    Phone(client, "0700000101").walk("1", "0712000111", "5000")  # drops at the confirm screen
    again = Phone(client, "0700000101")
    assert screen(again.dial()) == "Continue depositing KES 5,000.00 to Juma Otieno?" + OFFER
    assert screen(again.send("1")).startswith("Deposit KES 5,000.00 to Juma Otieno +254712000111?")


def test_a_resumed_final_step_carries_the_id_minted_in_the_first_session(client, juma):
    first = Phone(client, "0712000111")
    first.walk("1", "0712000222", "1613")
    minted = stored_data(first)["transfer_id"]
    again = Phone(client, "0712000111")
    again.dial()
    again.send("1")
    again.send("1")
    assert again.send(PIN).startswith("END Sending KES 1,613.00 to Wanjiru Kamau")
    [send] = requests_of(RequestKind.SEND)
    assert send.id == minted


def test_money_recorded_meanwhile_is_never_continued(client, juma):
    """The doubling of chaos seed 386423519: a second session of the phone took the offer of a
    send the first session then completed; its habitual "1" must not walk to that confirm."""
    first = Phone(client, "0712000111")
    first.walk("1", "0712000222", "1613")  # at the confirm screen
    second = Phone(client, "0712000111")
    assert "Continue sending KES 1,613.00" in second.dial()  # offered while still unfinished
    first.send("1")
    assert first.send(PIN).startswith("END Sending KES 1,613.00")  # recorded; then it drops
    # A new dial is not offered what was recorded ...
    assert options(Phone(client, "0712000111").dial())["1"] == "Send money"
    # ... and the session that was offered it before is not walked to its confirm screen: it
    # ends, so the habitual inputs that follow start nothing.
    assert second.send("1") == "END What you started last time is already done. Check your SMS."
    for value in ("1", "0712000222", "1613", "1", PIN):
        assert second.send(value).startswith("END What you started last time is already done.")
    assert sends_of(161_300) == 1


def test_dial_walk_to_pin_submit_drop_redial_and_a_habitual_one_records_one_transfer(client, juma):
    first = Phone(client, "0712000111")
    first.walk("1", "0712000222", "1613", "1")
    assert first.send(PIN).startswith("END Sending KES 1,613.00")  # the answer is lost: a drop
    again = Phone(client, "0712000111")
    assert options(again.dial())["1"] == "Send money"
    assert screen(again.send("1")) == "Send money\nEnter the recipient's phone number"
    assert sends_of(161_300) == 1


def test_a_stale_offer_taken_by_two_sessions_records_once(client, juma):
    first = Phone(client, "0712000111")
    first.walk("1", "0712000222", "1613")  # drops at the confirm screen
    a, b = Phone(client, "0712000111"), Phone(client, "0712000111")
    a.dial()
    b.dial()  # both offered the same unfinished send
    for phone in (a, b):
        phone.send("1")
        phone.send("1")
    assert a.send(PIN).startswith("END Sending KES 1,613.00")
    assert b.send(PIN).startswith("END")
    assert sends_of(161_300) == 1


def test_no_offer_from_a_confirm_screen_that_cannot_say_what_it_continues(client, juma):
    """A screen one input away from a PIN is offered back only with its own question."""
    for name in engine._before_pin:
        state = engine.state(name)
        if not state.secret and name.split(".")[0] != "home":
            ctx = Context(phone="+254712000111", lang="en", home="home.customer", data={})
            conv = Conversation(state=name, history=["home.customer_menu"])
            snapshot = engine.snapshot(conv, ctx)
            if state.resume is None:
                assert snapshot is None, name


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_resume_question_fits_160_characters(app, lang):
    data = {}
    for module in MODULES.values():
        data.update(module.SAMPLE)
    for name, state in engine.states.items():
        if not isinstance(state, Screen) or state.resume is None:
            continue
        ctx = Context(phone="+254712345678", lang=lang, home="home.customer", data={})
        snapshot = {"home": "home.customer", "state": name, "history": [], "data": data}
        for reason in (None, "Invalid choice."):
            reply = engine.compose(Conversation(state=RESUME, resume=snapshot, reason=reason), ctx)
            assert reply.text.endswith(OFFER if lang == "en" else "\n1. Ndiyo\n2. Hapana, anza upya")
            assert gsm7.fits(reply.text), (name, lang, gsm7.length(reply.text))


# -- item 18: screens people misread -----------------------------------------------------------


def test_pay_bill_confirm_shows_the_account_number(client, juma, shops):
    body = Phone(client, "0712000111").walk("6", "888880", "acc-42", "1200")
    assert screen(body) == (
        "Pay KES 1,200.00 to Kisumu Water (888880) for account ACC-42?\nFee: KES 0.00\n1. Confirm\n2. Cancel"
    )


def test_unregistered_send_confirm_shows_the_number_once(client, juma):
    body = Phone(client, "0712000111").walk("1", "0712000999", "1", "500")
    assert screen(body).startswith("Send KES 500.00 to +254712000999?\nFee: ")
    assert screen(body).count("712000999") == 1


def test_registered_send_confirm_shows_name_and_number(client, juma):
    body = Phone(client, "0712000111").walk("1", "0712000222", "500")
    assert screen(body).startswith("Send KES 500.00 to Wanjiru Kamau +254712000222?\nFee: ")


@pytest.mark.parametrize(
    "lang,two,one",
    [
        ("en", "Wrong PIN. 2 tries left.", "Wrong PIN. 1 try left."),
        ("sw", "PIN si sahihi. Majaribio 2 yamebaki.", "PIN si sahihi. Jaribio 1 limebaki."),
    ],
)
def test_the_last_try_is_singular_in_both_languages(client, app, lang, two, one):
    user = person("+254712000111", "Juma Otieno", pin=PIN, language=lang)
    person("+254712000222", "Wanjiru Kamau", pin="9753")
    fund(user.account_id, 5_000_000)
    phone = Phone(client, "0712000111")
    phone.walk("1", "0712000222", "100", "1")
    assert screen(phone.send("1111")).startswith(two + "\n")
    assert screen(phone.send("2222")).startswith(one + "\n")


def test_the_first_screen_speaks_both_languages(client):
    phone = Phone(client, "0712000999")
    body = screen(phone.dial())
    assert body == "Welcome to Tuma. Choose language\nKaribu Tuma. Chagua lugha\n1. English\n2. Kiswahili"
    assert gsm7.fits(body)
    wrong = screen(phone.send("7"))
    assert wrong.startswith("Choose 1 or 2. / Chagua 1 au 2.\nWelcome to Tuma.") and gsm7.fits(wrong)
    assert screen(phone.send("2")) == "Jisajili\nWeka jina lako la kwanza"


def test_a_newcomer_who_chose_kiswahili_is_offered_back_in_kiswahili(client):
    Phone(client, "0712000999").walk("2", "Amina")  # drops at the last name
    body = screen(Phone(client, "0712000999").dial())
    assert body == "Endelea kujisajili kama Amina?\n1. Ndiyo\n2. Hapana, anza upya"


ODD_DATA = {
    "name": "Wanjirũ Ñandú €",  # non-ASCII: written as UTF-8, not escaped
    "nul": "a\x00b",
    "big": 2**70,
    "at": 1796251707.723726,
    "items": [["1", "x"], ["2", None]],
    "empty": {},
}


@pytest.mark.parametrize("lone", [False, True])
def test_a_stored_session_reads_back_as_json_would_read_it(lone):
    """The session's JSON (pydantic_core's, compact) is the document json.dumps gives: read
    back the same, by json as by the session, odd text included; a session stored as
    json.dumps wrote it (the earlier form) is read the same; and a lone surrogate (a gateway's
    JSON may carry one), which pydantic_core refuses, is written and read by json."""
    data = {**ODD_DATA, "lone": "\ud800"} if lone else dict(ODD_DATA)
    stored = sessions.StoredSession(
        phone="+254712000111",
        conversation=Conversation(state="toy.a", history=["toy.home"], marks=[dict(data)]),
        data=data,
        last_text="d" * 64,
        last_reply="CON Ñandú\n1. Yes",
        answered_at=1796251709.3277485,
        caller={"user_id": 7, "at": 1796251706.588876, "locked_until": None},
    )
    raw = stored.to_json()
    text = raw.decode() if isinstance(raw, bytes) else raw
    assert (", " not in text) != lone  # compact unless json wrote it
    expected = json.loads(json.dumps(json.loads(raw)))
    for written in (raw, json.dumps(json.loads(raw))):  # this form, and json's
        again = sessions.StoredSession.from_json(written)
        assert again == stored
        assert json.loads(again.to_json()) == expected
