"""An outsider's look at issue 19's faster menu hops, through the real /ussd webhook and the back
office: today's spending as one prebuilt statement (it must count what the ORM query counted,
kind by kind), the look-up throttle in one script (every spelling of the caller's number is one
throttle, the cancel is the caller's), the recipient read as a plain row (each kind of holder
gets its own screen), the fee a version added mid-conversation cannot change, and the cookie
sessions opened without a signer (a sent cookie still signs in, a forged or absent one gets
nothing)."""

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import case, func, select
from sqlalchemy.orm import aliased

from tests.admin_helpers import login, operator
from tests.helpers import fund, wallets
from tests.test_ussd_quote_cache import DEFAULT_FEE, NEW_FEE, dearer
from tests.ussd_helpers import Phone, is_resume_offer, person
from ussd_app import fraud, limits, tariffs
from ussd_app.clock import utcnow
from ussd_app.database import among
from ussd_app.extensions import db
from ussd_app.payments import kinds
from ussd_app.payments.models import RequestKind, RequestStatus, TransferRequest, transaction_code
from ussd_app.users import OPERATOR_LOCK_UNTIL

JUMA, WANJIRU = "+254712000111", "+254712000222"


# -- today's spending: the prebuilt statement against main's ORM query --------------------


def _old_spent_today(session, account_ids, now):
    """``limits.spent_today`` as main had it (the ORM query, built per call)."""
    ids = list(set(account_ids))
    since = limits.start_of_today(now)
    resolution = aliased(TransferRequest)
    join = (
        TransferRequest.kind.in_(limits.RESOLVED_HOLD_KINDS)
        & (resolution.pending_request_id == TransferRequest.id)
        & (resolution.status != RequestStatus.REJECTED.value)
    )
    posted = case((resolution.kind == RequestKind.ALLOWANCE_POST.value, resolution.amount), else_=0)
    counted = case(
        (TransferRequest.kind.in_(limits.RESOLVED_HOLD_KINDS) & resolution.id.is_not(None), posted),
        else_=TransferRequest.amount,
    )
    rows = session.execute(
        select(TransferRequest.debit_account_id, func.coalesce(func.sum(counted + TransferRequest.fee), 0))
        .outerjoin(resolution, join)
        .where(
            among(session, TransferRequest.debit_account_id, ids),
            TransferRequest.status == RequestStatus.ACCEPTED.value,
            TransferRequest.kind.in_(kinds.COUNTED_KINDS),
            TransferRequest.executed_at >= since,
            TransferRequest.executed_at < since + timedelta(days=1),
        )
        .group_by(TransferRequest.debit_account_id)
    )
    spent = dict.fromkeys(ids, 0)
    spent.update({a: int(total) for a, total in rows})
    return spent


def test_the_prebuilt_spending_statement_counts_what_the_orm_query_counted(app):
    """Every request kind x status x time (yesterday, midnight exactly, today, tomorrow's
    midnight) for four payers, allowance holds with posted, voided, refused and no
    resolutions: old and new sums agree for each payer, alone and together."""
    payers = wallets(4)
    [payee] = wallets(1)
    now = utcnow()
    since = limits.start_of_today(now)
    times = [
        since - timedelta(microseconds=1),
        since,
        since + timedelta(hours=3),
        since + timedelta(days=1) - timedelta(microseconds=1),
        since + timedelta(days=1),
        None,
    ]
    serial = itertools.count()

    def add(kind, payer, status, at, amount, fee=0, pending=None):
        rid = f"attack-{next(serial):06d}"
        db.session.add(
            TransferRequest(
                id=rid,
                code=transaction_code(rid),
                kind=kind,
                debit_account_id=payer,
                credit_account_id=payee,
                amount=amount,
                fee=fee,
                status=status,
                executed_at=at,
                pending_request_id=pending,
            )
        )
        return rid

    statuses = [s.value for s in RequestStatus]
    for i, (kind, status, at) in enumerate(
        itertools.product([k.value for k in RequestKind], statuses, times)
    ):
        add(kind, payers[i % 3], status, at, 1_000 + i, fee=i % 7)
    # Allowance holds and their resolutions (posted in part, voided, refused, several, none).
    for i, resolutions in enumerate(
        [
            [(RequestKind.ALLOWANCE_POST.value, RequestStatus.ACCEPTED.value, 300)],
            [(RequestKind.ALLOWANCE_VOID.value, RequestStatus.ACCEPTED.value, 5_000)],
            [(RequestKind.ALLOWANCE_POST.value, RequestStatus.REJECTED.value, 700)],
            [
                (RequestKind.ALLOWANCE_POST.value, RequestStatus.REJECTED.value, 900),
                (RequestKind.ALLOWANCE_POST.value, RequestStatus.QUEUED.value, 400),
            ],
            [],
        ]
    ):
        payer = payers[3 - (i % 2)]
        hold = add(
            RequestKind.ALLOWANCE.value,
            payer,
            RequestStatus.ACCEPTED.value,
            since + timedelta(hours=1),
            5_000,
            11,
        )
        for kind, status, amount in resolutions:
            add(kind, payer, status, since + timedelta(hours=2), amount, pending=hold)
    db.session.commit()
    for ids in [[p] for p in payers] + [payers, [*payers, payee, 987_654]]:
        new = limits.spent_today(db.session, ids, now)
        assert new == _old_spent_today(db.session, ids, now), ids
    assert all(limits.spent_today(db.session, [p], now)[p] > 0 for p in payers)


# -- the name look-up throttle, one script --------------------------------------------------


def _to_recipient(client, number: str, recipient: str) -> str:
    phone = Phone(client, number)
    if is_resume_offer(phone.dial()):
        phone.send("2")  # start again
    phone.send("1")
    return phone.send(recipient), phone


@pytest.mark.parametrize("spellings", [["+254712000111", "0712000111", "254712000111", "0712 000 111"]])
def test_every_spelling_of_the_callers_number_is_one_throttle(
    app, customer, second_customer, config, redis, spellings
):
    config(NAME_LOOKUP_LIMIT=3)
    client = app.test_client()
    bodies = []
    for number in spellings:
        body, phone = _to_recipient(client, number, "0712000222")
        bodies.append(body)
        if body.startswith("CON Enter amount") or "Wanjiru" in body:
            phone.send("0")  # leave it (a cancel, counted)
    assert sum("Wanjiru" in b for b in bodies) == 3, bodies
    assert "Wanjiru" not in bodies[3]
    assert int(redis.get(fraud._key("lookups", JUMA))) == 3
    assert not [k for k in redis.keys("tuma:fraud:lookups:*") if k.decode() != f"tuma:fraud:lookups:{JUMA}"]


def test_the_cancel_at_a_name_is_the_callers_and_counted_once(app, customer, second_customer, redis):
    client = app.test_client()
    body, phone = _to_recipient(client, "0712000111", "0712000222")
    assert "Wanjiru" in body, body
    assert int(redis.get(fraud._key("cancels", JUMA))) == 1
    assert redis.get(fraud._key("cancels", WANJIRU)) is None
    assert redis.get(fraud._key("lookups", WANJIRU)) is None
    # Back to the number screen and the same number again: still one cancel, two look-ups.
    assert "recipient's phone number" in phone.send("0")
    assert "Wanjiru" in phone.send("0712000222")
    assert int(redis.get(fraud._key("cancels", JUMA))) == 1
    assert int(redis.get(fraud._key("lookups", JUMA))) == 2


def test_a_throttled_caller_learns_nothing_and_counts_nothing(app, customer, second_customer, config, redis):
    config(NAME_LOOKUP_LIMIT=0)
    client = app.test_client()
    for recipient in ("0712000222", "0700000101", "0722000099"):  # a customer, nobody's, a stranger
        body, _ = _to_recipient(client, "0712000111", recipient)
        assert "Wanjiru" not in body and "not on Tuma" not in body and "cannot receive" not in body, body
    assert redis.get(fraud._key("cancels", JUMA)) is None
    assert redis.get(fraud._key("lookups", JUMA)) is None


# -- the recipient as a plain row ----------------------------------------------------------


def test_each_kind_of_recipient_gets_its_own_screen(app, customer, second_customer, agent, merchant):
    client = app.test_client()
    locked = person("+254712000333", "Lucy Locked", pin="1357")
    locked.locked_until = OPERATOR_LOCK_UNTIL
    db.session.commit()
    assert "Wanjiru Kamau" in _to_recipient(client, "0712000111", "0712000222")[0]
    assert "cannot receive money here" in _to_recipient(client, "0712000111", "0700000101")[0]  # agent
    assert "cannot receive money here" in _to_recipient(client, "0712000111", "0700000002")[0]  # merchant
    assert "not on Tuma" in _to_recipient(client, "0712000111", "0722000099")[0]
    assert "cannot send money to yourself" in _to_recipient(client, "0712000111", "+254 712 000 111")[0]
    # A customer locked by an operator: named as on main (the worker decides what reaches them).
    assert "Lucy Locked" in _to_recipient(client, "0712000111", "0712000333")[0]


# -- a version added or started between the amount hop and the PIN ---------------------------


def test_the_fee_recorded_is_the_fee_shown_when_a_version_comes_in_between(app, customer, second_customer):
    fund(customer.account_id, 500_000)
    client = app.test_client()
    phone = Phone(client, "0712000111")
    phone.dial(), phone.send("1"), phone.send("0712000222")
    body = phone.send("1000")
    assert DEFAULT_FEE in body, body
    tariffs.add_version(db.session, dearer(), effective_from=utcnow() - timedelta(seconds=1))
    db.session.commit()
    phone.send("1")
    phone.send("8642")
    db.session.expire_all()
    [request] = db.session.execute(select(TransferRequest).where(TransferRequest.kind == "send")).scalars()
    assert (request.amount, request.fee) == (100_000, 1_300)  # what the confirm screen said
    db.session.commit()
    # The next conversation quotes the new version.
    other = Phone(client, "0712000111")
    other.dial(), other.send("1"), other.send("0712000222")
    assert NEW_FEE in other.send("1000")


def test_a_flushed_redis_never_reads_as_an_unchanged_tariff(app, customer, second_customer, redis):
    fund(customer.account_id, 500_000)
    client = app.test_client()
    phone = Phone(client, "0712000111")
    phone.dial(), phone.send("1"), phone.send("0712000222")
    assert DEFAULT_FEE in phone.send("1000")
    phone.send("2")
    tariffs.add_version(db.session, dearer(), effective_from=utcnow() - timedelta(seconds=1))
    db.session.flush()
    db.session.info.pop("tuma_tariffs_changed", None)  # around the ORM: no stamp replaced
    db.session.commit()
    redis.flushdb()
    phone = Phone(client, "0712000111")
    phone.dial(), phone.send("1"), phone.send("0712000222")
    assert NEW_FEE in phone.send("1000")


# -- cookie sessions without a signer when no cookie came -----------------------------------


def test_the_webhook_sets_no_cookie_and_a_forged_one_signs_nobody_in(app, customer):
    client = app.test_client()
    response = client.post(
        "/ussd",
        data={"sessionId": "ATUid_cookie", "serviceCode": "*384*7#", "phoneNumber": JUMA, "text": ""},
    )
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
    assert client.get("/admin/").status_code in (302, 401, 403)
    name = app.config.get("SESSION_COOKIE_NAME", "session")
    client.set_cookie(name, "eyJvcGVyYXRvcl9pZCI6MX0.forged.signature")
    assert client.get("/admin/").status_code in (302, 401, 403)
    client.set_cookie(name, "")
    assert client.get("/admin/").status_code in (302, 401, 403)


def test_an_operator_still_signs_in_and_a_cookie_copied_keeps_working(app):
    operator()
    client = app.test_client()
    response = login(client)
    assert response.status_code in (302, 303), response.status_code
    assert client.get("/admin/").status_code == 200
    # Without the cookie: nothing.
    assert app.test_client().get("/admin/").status_code in (302, 401, 403)


# -- My approvals: the fee on the item screen against the fee recorded after the PIN ----------


def test_a_payment_request_is_charged_the_fee_its_item_screen_showed(app, customer, second_customer):
    from ussd_app.payments import payment_requests as pr
    from ussd_app.payments.submit import mint_request_id

    fund(customer.account_id, 500_000)
    pr.create(db.session, second_customer, mint_request_id(), pr.Kind.PERSONAL, [(JUMA, 100_000)], "Rent")
    db.session.commit()
    phone = Phone(app.test_client(), "0712000111")
    phone.walk("3")
    item = phone.send("1")
    assert "(fee KES 13.00)" in item, item  # the built-in tariff, KES 1,000
    tariffs.add_version(db.session, dearer(), effective_from=utcnow() - timedelta(seconds=1))
    db.session.commit()
    assert phone.send("1") == "CON Enter your PIN to approve"
    phone.send("8642")
    db.session.expire_all()
    [request] = db.session.execute(select(TransferRequest).where(TransferRequest.kind == "send")).scalars()
    db.session.commit()
    assert request.fee == 1_300, f"shown KES 13.00, recorded {request.fee}"
    # All of the price from the version that priced the screen (here the built-in defaults).
    assert (request.payee_fee, request.tariff_version_id) == (0, None)


def _asked_for(customer, second_customer, amount=100_000):
    from ussd_app.payments import payment_requests as pr
    from ussd_app.payments.submit import mint_request_id

    fund(customer.account_id, 500_000)
    [asked] = pr.create(
        db.session, second_customer, mint_request_id(), pr.Kind.PERSONAL, [(JUMA, amount)], "Rent"
    )
    db.session.commit()
    return asked.id


def _recorded_send():
    db.session.expire_all()
    [request] = db.session.execute(select(TransferRequest).where(TransferRequest.kind == "send")).scalars()
    db.session.commit()
    return request


def test_a_payment_request_with_no_tariff_change_is_charged_as_before(app, customer, second_customer):
    """Nothing changed between the list and the PIN: the fee, the version and the request's
    move are what they always were."""
    from ussd_app.payments import payment_requests as pr

    version = tariffs.add_version(db.session, dearer(), effective_from=utcnow() - timedelta(seconds=5))
    db.session.commit()
    asked = _asked_for(customer, second_customer)
    phone = Phone(app.test_client(), "0712000111")
    phone.walk("3")
    assert "(fee KES 21.00)" in phone.send("1")
    assert phone.send("1") == "CON Enter your PIN to approve"
    assert phone.send("8642").startswith("END Approved.")
    request = _recorded_send()
    assert (request.amount, request.fee, request.tariff_version_id) == (100_000, 2_100, version.id)
    assert request.id == f"{asked}.p0"
    row = db.session.get(pr.PaymentRequest, asked)
    assert (row.state, row.pay_attempts, row.transfer_request_id) == ("paying", 0, request.id)


def test_a_payment_request_is_charged_the_shown_version_when_a_cheaper_one_starts(
    app, customer, second_customer
):
    """The shown price is kept whichever way the tariff moves (as Send money's confirm screen
    quote): a dearer version shown, a cheaper one started before the PIN, the dearer fee and
    its version recorded, never a mix of two versions."""
    shown = tariffs.add_version(db.session, dearer(), effective_from=utcnow() - timedelta(seconds=5))
    db.session.commit()
    _asked_for(customer, second_customer)
    phone = Phone(app.test_client(), "0712000111")
    phone.walk("3")
    assert "(fee KES 21.00)" in phone.send("1")
    tariffs.add_version(
        db.session, tariffs.default_document(), effective_from=utcnow() - timedelta(seconds=1)
    )
    db.session.commit()
    phone.send("1")
    phone.send("8642")
    request = _recorded_send()
    assert (request.fee, request.tariff_version_id) == (2_100, shown.id)


def test_a_payment_request_approved_without_a_quote_is_priced_now(app, customer, second_customer):
    """No quote handed over (the API's path, or a session stored before quotes were kept):
    priced from the tariff in force, as before."""
    from ussd_app.payments import payment_requests as pr
    from ussd_app.users import find_by_phone
    from ussd_app.ussd import approvals

    asked = _asked_for(customer, second_customer)
    version = tariffs.add_version(db.session, dearer(), effective_from=utcnow() - timedelta(seconds=1))
    db.session.commit()
    assert approvals.decide(db.session, find_by_phone(db.session, JUMA), f"request:{asked}", approve=True)
    db.session.commit()
    request = _recorded_send()
    assert (request.fee, request.tariff_version_id) == (2_100, version.id)
    assert pr.quote(db.session, db.session.get(pr.PaymentRequest, asked))["fee"] == 2_100


# -- a tier downgraded between the confirm screen and the PIN --------------------------------


def test_a_tier_downgraded_after_the_confirm_screen_is_the_workers_final_word(
    app, customer, second_customer, config
):
    from worker import jobs

    config(LIMITS_BASIC_MAJOR="500,150000,100000", LIMITS_FULL_MAJOR="70000,300000,500000")
    customer.tier = "full"
    db.session.commit()
    fund(customer.account_id, 500_000)
    phone = Phone(app.test_client(), "0712000111")
    phone.dial(), phone.send("1"), phone.send("0712000222")
    assert DEFAULT_FEE in phone.send("1000")  # full tier: KES 1,000 allowed
    customer.tier = "basic"  # an operator downgrades him (another process would do the same)
    db.session.commit()
    phone.send("1")
    phone.send("8642")
    assert jobs.execute_transfers() == 1
    db.session.expire_all()
    [request] = db.session.execute(select(TransferRequest).where(TransferRequest.kind == "send")).scalars()
    assert (request.status, request.result) == ("rejected", limits.Result.TRANSACTION)
    db.session.commit()
    # And the next amount hop says the basic limit at once.
    again = Phone(app.test_client(), "0712000111")
    again.dial(), again.send("1"), again.send("0712000222")
    assert again.send("1000").startswith("CON Over your limit of KES 500.00 per transaction.")


def test_a_payment_requests_limits_before_the_pin_use_the_fee_the_list_showed(
    app, customer, second_customer, config
):
    """The check before the PIN counts the quoted fee: a daily limit that amount + shown fee
    fits is not refused because a dearer version started after the list."""
    from ussd_app.payments import payment_requests as pr
    from ussd_app.users import find_by_phone
    from ussd_app.ussd import approvals

    config(LIMITS_BASIC_MAJOR="5000,1013,100000")
    asked = _asked_for(customer, second_customer)
    shown = pr.quote(db.session, db.session.get(pr.PaymentRequest, asked))
    assert shown["fee"] == 1_300
    tariffs.add_version(db.session, dearer(), effective_from=utcnow() - timedelta(seconds=1))
    db.session.commit()
    juma, reference = find_by_phone(db.session, JUMA), f"request:{asked}"
    assert approvals.before_approving(db.session, juma, reference, quote=shown) is None
    assert approvals.before_approving(db.session, juma, reference) is not None  # priced now: KES 21
    db.session.commit()
