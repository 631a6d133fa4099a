"""A payout through the merchant API names its recipient only as a counted name look-up of the
paying merchant (or agent): the menus' rule and allowance (``fraud.grant_look_ups``,
``NAME_LOOKUP_LIMIT_BUSINESS``, keyed on the owner's normalised number), taken once when the
API accepts the payout and recorded with it (``payee_named``). Beyond the allowance the money
still moves; the event, the API's transactions and the mini statement name nobody. Through the
real API, worker code, Redis and database; attacks from outside at the end."""

import json
from datetime import timedelta

from sqlalchemy import select

from tests.api_helpers import execute_all, fund_merchant, get, make_key, many_customers, post
from tests.escrow_helpers import at_once, sms_to
from tests.ussd_helpers import available, fresh, local
from ussd_app import fraud
from ussd_app.api.idempotency import IdempotencyRecord
from ussd_app.clock import utcnow
from ussd_app.events.models import Event
from ussd_app.extensions import db
from ussd_app.payments.emoney import issue_float
from ussd_app.users import User, find_by_phone
from ussd_app.ussd.flows.my_account import statement_lines

THROTTLED = "END Too many look-ups. Try again in 60 min."


def posted_names() -> dict[str, str | None]:
    """{transaction code: the recipient's name} of every payout.posted event written."""
    db.session.expire_all()
    events = db.session.execute(select(Event).where(Event.type == "payout.posted")).scalars()
    data = [json.loads(e.payload)["data"] for e in events]
    db.session.commit()
    return {d["transaction"]: d["recipient"]["name"] for d in data}


def listed(client, key: str) -> dict[str, str | None]:
    page = get(client, "/transactions", key, limit=500).json
    return {t["transaction"]: t["counterparty"]["name"] for t in page["data"] if t["type"] == "payout"}


def left(phone: str, limit: int) -> int:
    """How many more look-ups ``phone`` may make now of ``limit`` (nothing counted)."""
    return max(n for n in range(limit + 1) if n == 0 or fraud.lookup_delay_or_block(phone, n, limit) == 0)


def test_within_the_allowance_the_name_shows_beyond_it_the_payout_is_paid_and_names_nobody(
    client, config, merchant, customer, second_customer
):
    config(NAME_LOOKUP_LIMIT_BUSINESS=2)
    fund_merchant(merchant.phone, 100_00)
    key = make_key(merchant)
    codes = []
    for phone in (customer.phone, second_customer.phone, customer.phone):
        made = post(client, "/payouts", key, {"phone": phone, "amount": 1, "reference": "x"})
        assert made.status_code == 202 and made.json["fee"] == 0, made.json
        codes.append(made.json["transaction"])
    assert execute_all() == 3
    assert available(customer.account_id) == 2  # the third payout was paid all the same
    named = {codes[0]: "Juma Otieno", codes[1]: "Wanjiru Kamau", codes[2]: None}
    assert posted_names() == named
    assert listed(client, key) == named
    for code, name in named.items():
        one = get(client, f"/transactions/{code}", key).json
        assert one["status"] == "posted" and one["counterparty"]["name"] == name
        assert one["counterparty"]["phone"].startswith("+2547120")
    # The merchant's own mini statement (USSD, after the PIN) names nobody it was not granted.
    lines = statement_lines(db.session, db.session.get(User, merchant.id), "en")
    by_code = {line.split()[1]: line for line in lines}
    assert by_code[codes[0]].endswith("Juma Otieno") and by_code[codes[1]].endswith("Wanjiru Kamau")
    assert by_code[codes[2]].endswith("+2547120***11"), by_code[codes[2]]
    # Nor does texting a code to the short code (the fake-receipt check, for its parties only).
    for n, code in enumerate(codes):
        fields = {"from": merchant.phone, "to": "22384", "text": code, "id": f"at-check-{n}"}
        assert client.post("/sms/inbound", data=fields).status_code == 200
    replies = [s for s in sms_to(merchant.phone) if " is genuine: " in s]
    assert [r.split(" to ")[1].split(" on ")[0] for r in replies] == [
        "JUMA OTIENO +254712000111",
        "WANJIRU KAMAU +254712000222",
        "+254712000111",
    ], replies
    # The customer's side is not the merchant's look-up: the payout names its payer to them.
    customer_lines = statement_lines(db.session, db.session.get(User, customer.id), "en")
    assert any(codes[2] in line and line.endswith("Mama Mboga") for line in customer_lines)


def test_the_allowance_is_the_owners_number_however_spelt_shared_with_its_menus_and_its_keys(
    client, config, agent, customer, second_customer
):
    """The agent's look-ups in the menus (its number sent as 254..., 07..., with spaces) and its
    two keys' payouts draw on one allowance: its E.164 number's."""
    config(NAME_LOOKUP_LIMIT_BUSINESS=3)
    issue_float(db.session, db.session.get(User, agent.id), 100_00)
    db.session.commit()
    till_app, back_office = make_key(agent, name="till"), make_key(agent, name="office")
    assert "Deposit to Juma Otieno" in fresh(client, "254700000101", "1", local(customer.phone))[1]
    first = post(client, "/payouts", till_app, {"phone": local(customer.phone), "amount": 1}).json
    second = post(client, "/payouts", back_office, {"phone": "254712000222", "amount": 1}).json
    third = post(client, "/payouts", till_app, {"phone": second_customer.phone, "amount": 1}).json
    execute_all()
    assert posted_names() == {
        first["transaction"]: "Juma Otieno",
        second["transaction"]: "Wanjiru Kamau",
        third["transaction"]: None,  # the fourth look-up of three
    }
    assert fresh(client, "0700 000 101", "1", local(second_customer.phone))[1] == THROTTLED
    assert fraud.lookup_delay_or_block("+254700000101", 1, 3) > 0


def test_a_replayed_payout_counts_its_look_up_once(app, client, config, merchant, customer):
    """The same Idempotency-Key sent again, at once with itself, and after its remembered answer
    was purged: one look-up, and the name it was granted."""
    config(NAME_LOOKUP_LIMIT_BUSINESS=3)
    fund_merchant(merchant.phone, 100_00)
    key = make_key(merchant)
    body = {"phone": customer.phone, "amount": 1}
    first = post(client, "/payouts", key, body, "pay-1")
    assert post(client, "/payouts", key, body, "pay-1").headers["Idempotent-Replayed"] == "true"
    answers = at_once(
        app, *[lambda: post(app.test_client(), "/payouts", key, body, "pay-2") for _ in range(4)]
    )
    assert {a.status_code for a in answers} <= {202, 409} and 202 in {a.status_code for a in answers}
    db.session.query(IdempotencyRecord).delete()
    db.session.commit()
    again = post(client, "/payouts", key, body, "pay-1")
    assert again.status_code == 202 and again.json["id"] == first.json["id"]
    assert left(merchant.phone, 3) == 1  # pay-1 and pay-2: two look-ups
    execute_all()
    assert set(posted_names().values()) == {"Juma Otieno"} and len(posted_names()) == 2


def test_a_purged_replay_of_a_payout_beyond_the_allowance_stays_nameless(client, config, merchant, customer):
    """Its first answer (no name) is kept: a look-up freed later does not name it on a replay."""
    config(NAME_LOOKUP_LIMIT_BUSINESS=0)
    fund_merchant(merchant.phone, 100_00)
    key = make_key(merchant)
    body = {"phone": customer.phone, "amount": 1}
    code = post(client, "/payouts", key, body, "late").json["transaction"]
    config(NAME_LOOKUP_LIMIT_BUSINESS=300)
    db.session.query(IdempotencyRecord).delete()
    db.session.commit()
    assert post(client, "/payouts", key, body, "late").json["transaction"] == code
    execute_all()
    assert posted_names() == {code: None}
    assert fraud.lookup_delay_or_block(merchant.phone, 300, 300) == 0  # nothing counted


def test_a_batch_counts_each_distinct_recipient_once_as_many_as_are_left_in_row_order(
    client, config, merchant
):
    config(NAME_LOOKUP_LIMIT_BUSINESS=4)
    a, b, c, d = many_customers(4)
    fund_merchant(merchant.phone, 100_00)
    key = make_key(merchant)
    assert post(client, "/payouts", key, {"phone": a, "amount": 1}).status_code == 202  # one used
    # The same customer spelt three ways is one recipient; a refused row is no look-up.
    rows = [a, local(b), "0712999999", "254" + b[4:], c, b, d]
    batch = {"payouts": [{"phone": phone, "amount": 1, "reference": f"r{n}"} for n, phone in enumerate(rows)]}
    answer = post(client, "/payouts/batch", key, batch, "payroll")
    assert (answer.json["accepted"], answer.json["rejected"]) == (6, 1), answer.json
    # Four distinct recipients (a, b, c, d), three look-ups left: a, b and c named, d not.
    again = post(client, "/payouts/batch", key, batch, "payroll")
    assert again.json == answer.json and again.headers["Idempotent-Replayed"] == "true"
    execute_all()
    names = posted_names()
    code = {r["row"]: r["transaction"] for r in answer.json["results"] if r["status"] == "accepted"}
    assert [names[code[n]] for n in (1, 2, 4, 5, 6, 7)] == [
        "Payee N0",
        "Payee N1",
        "Payee N1",
        "Payee N2",
        "Payee N1",
        None,
    ]
    assert left(merchant.phone, 4) == 0
    # The batch's key replayed after its answer was purged counts nothing either.
    db.session.query(IdempotencyRecord).delete()
    db.session.commit()
    config(NAME_LOOKUP_LIMIT_BUSINESS=5)
    assert post(client, "/payouts/batch", key, batch, "payroll").json == answer.json
    assert left(merchant.phone, 5) == 1


def test_a_locked_merchant_and_a_refused_payout_take_no_look_up(client, config, merchant, customer):
    config(NAME_LOOKUP_LIMIT_BUSINESS=2)
    key = make_key(merchant)
    owner = find_by_phone(db.session, merchant.phone)
    owner.locked_until = utcnow() + timedelta(hours=1)
    db.session.commit()
    locked = post(client, "/payouts", key, {"phone": customer.phone, "amount": 1})
    assert locked.status_code == 403 and locked.json["error"]["code"] == "account_locked"
    batch = {"payouts": [{"phone": customer.phone, "amount": 1}]}
    assert post(client, "/payouts/batch", key, batch).status_code == 403
    owner.locked_until = None
    db.session.commit()
    for body in ({"phone": "0712999999", "amount": 1}, {"phone": merchant.phone, "amount": 1}):
        assert post(client, "/payouts", key, body).status_code == 422  # unknown number, own number
    assert left(merchant.phone, 2) == 2
    # Paid without the money: refused by the worker, named nowhere (its look-up was taken).
    code = post(client, "/payouts", key, {"phone": customer.phone, "amount": 1}).json["transaction"]
    execute_all()
    seen = get(client, f"/transactions/{code}", key).json
    assert seen["status"] == "rejected" and seen["counterparty"]["name"] is None
    assert left(merchant.phone, 2) == 1


def _checked(client, merchant, code: str, n: int) -> str:
    """What the fake-receipt check (the code texted to the short code) answers the merchant."""
    fields = {"from": merchant.phone, "to": "22384", "text": code, "id": f"at-refused-{n}"}
    assert client.post("/sms/inbound", data=fields).status_code == 200
    return [s for s in sms_to(merchant.phone) if s.startswith(f"{code} is genuine: ")][-1]


def test_a_refused_or_unsent_payout_names_no_one_in_the_receipt_check_even_with_its_look_up(
    client, config, merchant, customer, second_customer
):
    """A merchant with an empty wallet pays numbers KES 0.01: the worker refuses each (nothing
    moves, nothing paid), and the API and events name no one. Texting the payout's code to the
    short code named the holder ("JUMA OTIENO +254712000111") when its look-up was granted: a
    name for nothing paid, free of the menus' cancel rule (a name seen and not paid for slows
    the next look-up), 300 an hour; and a payout recorded before 0020_payee_named counts as
    granted without any look-up. The receipt check says the number then, as the API does,
    until the ledger accepted it; a posted payout's granted name is still said."""
    config(NAME_LOOKUP_LIMIT_BUSINESS=10)
    key = make_key(merchant)
    code = post(client, "/payouts", key, {"phone": customer.phone, "amount": 1}).json["transaction"]
    # Queued (the worker not there yet): nothing to name either.
    assert _checked(client, merchant, code, 0).startswith(f"{code} is genuine: KES 0.01 to +254712000111 on ")
    execute_all()
    seen = get(client, f"/transactions/{code}", key).json
    assert seen["status"] == "rejected" and seen["counterparty"]["name"] is None
    answer = _checked(client, merchant, code, 1)
    assert answer.startswith(f"{code} is genuine: KES 0.01 to +254712000111 on "), answer
    assert answer.endswith("Status: failed."), answer
    # Funded, the same look-up rule names the one that posted.
    fund_merchant(merchant.phone, 100_00)
    paid = post(client, "/payouts", key, {"phone": second_customer.phone, "amount": 1}).json["transaction"]
    execute_all()
    answer = _checked(client, merchant, paid, 2)
    assert answer.startswith(f"{paid} is genuine: KES 0.01 to WANJIRU KAMAU +254712000222 on "), answer


def _clash_with(owner_account_id: int, idempotency_key: str, suffix: str = "") -> None:
    """A request already holding the transaction code the payout under the newest key and
    ``idempotency_key`` would get (``suffix``: a batch row's, ".2"): its insert then fails in
    the database (the unique code), as a commit fails when the database does (a failover, a
    timeout), after the view ran."""
    from sqlalchemy import insert

    from ussd_app.api.idempotency import derived_id
    from ussd_app.api.keys import ApiKey
    from ussd_app.payments.models import TransferRequest, transaction_code

    key_id = max(k.id for k in db.session.execute(select(ApiKey)).scalars())
    code = transaction_code(derived_id(key_id, idempotency_key) + suffix)
    db.session.execute(
        insert(TransferRequest.__table__).values(
            id="clash-" + code,
            code=code,
            kind="payout",
            debit_account_id=owner_account_id,
            credit_account_id=owner_account_id,
            amount=1,
            fee=0,
            commission=0,
            payee_fee=0,
            status="rejected",
            attempts=0,
            created_at=utcnow(),
            payee_named=False,
        )
    )
    db.session.commit()


def test_a_payout_or_batch_whose_transaction_fails_gives_its_look_ups_back(
    client, config, agent, customer, second_customer
):
    """The agent's payout (or batch) is refused by the database after its look-ups were counted
    in Redis: nothing recorded, no name told, the API answers 500 and
    the agent's system retries. Each try spent the look-ups for good: two failed tries and
    the agent's own deposit screen said "Too many look-ups. Try again in 60 min." for the
    hour, and the payout retried once the database was back named nobody. A transaction that
    does not commit gives its look-ups back; one that commits keeps them."""
    config(NAME_LOOKUP_LIMIT_BUSINESS=2)
    issue_float(db.session, db.session.get(User, agent.id), 100_00)
    db.session.commit()
    key = make_key(agent)
    _clash_with(agent.account_id, "pay-juma")
    for _ in range(3):  # the agent's system retries
        failed = post(client, "/payouts", key, {"phone": customer.phone, "amount": 1}, "pay-juma")
        assert failed.status_code == 500, failed.json
    batch = {"payouts": [{"phone": p.phone, "amount": 1} for p in (customer, second_customer)]}
    _clash_with(agent.account_id, "batch", ".2")
    assert post(client, "/payouts/batch", key, batch, "batch").status_code == 500
    assert left(agent.phone, 2) == 2
    assert "Deposit to Juma Otieno" in fresh(client, agent.phone, "1", local(customer.phone))[1]
    # Committed: kept (the deposit's look-up and this payout's are the two of the hour).
    paid = post(client, "/payouts", key, {"phone": second_customer.phone, "amount": 1}).json
    execute_all()
    assert posted_names()[paid["transaction"]] == "Wanjiru Kamau"
    assert left(agent.phone, 2) == 0


def test_a_batchs_answers_go_by_binary_copy_and_only_a_bool_is_taken(client, config, merchant, monkeypatch):
    """PostgreSQL: the batch's rows still go by binary COPY with the new boolean column (its
    SQLAlchemy type has a bind processor, which kept a table off COPY), and COPY refuses a value
    that is not a bool as the array INSERT does (psycopg's bool field takes any value's truth)."""
    import pytest
    from sqlalchemy.exc import StatementError

    from ussd_app import database
    from ussd_app.payments.models import TransferRequest

    if not database.is_postgres(db.session):
        pytest.skip("binary COPY: PostgreSQL only")
    config(NAME_LOOKUP_LIMIT_BUSINESS=1)
    key = make_key(merchant)
    phones = many_customers(2)
    copied = []
    monkeypatch.setattr(database, "_copy_listeners", [lambda _connection, table: copied.append(table)])
    answer = post(client, "/payouts/batch", key, {"payouts": [{"phone": p, "amount": 1} for p in phones]})
    assert answer.json["accepted"] == 2 and copied == ["transfer_requests"]
    ids = [r["id"] for r in answer.json["results"]]
    flags = dict(db.session.execute(select(TransferRequest.id, TransferRequest.payee_named)).all())
    assert [flags[i] for i in ids] == [True, False]
    row = {
        c.name: getattr(db.session.get(TransferRequest, ids[0]), c.key) for c in TransferRequest.__table__.c
    }
    db.session.commit()
    for copy in (True, False):
        with monkeypatch.context() as patch:
            if not copy:
                patch.setattr(database, "_copy_types", lambda *a: None)  # the array INSERT
            bad = {**row, "id": f"odd-{copy}", "code": f"ODD{int(copy)}", "payee_named": "no"}
            with pytest.raises(StatementError):
                database.insert_rows(db.session, TransferRequest.__table__, [bad])
        db.session.rollback()
