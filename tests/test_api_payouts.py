"""POST /api/v1/payouts: B2C from the merchant's wallet, each an ordinary transfer with its
fee, limits and the customer's receipt; Idempotency-Key on every POST."""

import json

from sqlalchemy import func, select

from tests.api_helpers import execute_all, fund_merchant, get, ledger_check, make_key, post
from tests.escrow_helpers import at_once, sms_to
from tests.ussd_helpers import available
from ussd_app.api.idempotency import IdempotencyRecord
from ussd_app.extensions import db
from ussd_app.payments.models import RequestKind, TransferRequest
from ussd_app.tariffs import quote


def payouts() -> int:
    db.session.expire_all()
    count = db.session.execute(
        select(func.count()).where(TransferRequest.kind == RequestKind.PAYOUT.value)
    ).scalar_one()
    db.session.commit()
    return count


def test_a_payout_posts_with_its_fee_and_the_customer_gets_a_receipt(
    client, runner, merchant, agent, customer
):
    fund_merchant(merchant.phone, 5_000_00)
    key = make_key(merchant)
    response = post(
        client, "/payouts", key, {"phone": "0712000111", "amount": 1_500_00, "reference": "SALARY"}
    )
    assert response.status_code == 202, response.json
    payout = response.json
    assert payout["status"] == "queued" and payout["phone"] == "+254712000111"
    assert payout["currency"] == "KES" and payout["fee"] == quote("payout", 1_500_00) > 0
    assert execute_all() == 1
    fee = payout["fee"]
    assert available(customer.account_id) == 1_500_00
    assert available(merchant.account_id) == 5_000_00 - 1_500_00 - fee
    [receipt] = sms_to(customer.phone)
    assert receipt.startswith(f"{payout['transaction']} Confirmed. You have received KES 1,500.00 from MAMA")
    assert not [s for s in sms_to(merchant.phone) if payout["transaction"] in s]  # it reads the API
    seen = get(client, f"/transactions/{payout['transaction']}", key).json
    assert seen["status"] == "posted" and seen["direction"] == "out" and seen["amount"] == 1_500_00
    assert seen["fee"] == fee and seen["counterparty"]["phone"] == "+2547120***11"
    ledger_check(runner)


def test_without_the_money_it_is_rejected_and_nothing_moves(client, merchant, customer):
    key = make_key(merchant)
    code = post(client, "/payouts", key, {"phone": customer.phone, "amount": 100}).json["transaction"]
    execute_all()
    seen = get(client, f"/transactions/{code}", key).json
    assert seen["status"] == "rejected" and seen["result"] == "exceeds_credits"
    assert available(customer.account_id) == 0 and sms_to(merchant.phone) == []


def test_the_same_idempotency_key_and_body_replays_the_first_answer(client, merchant, customer):
    key = make_key(merchant)
    body = {"phone": customer.phone, "amount": 250_00}
    first = post(client, "/payouts", key, body, "order-1")
    again = post(client, "/payouts", key, {"amount": 250_00, "phone": customer.phone}, "order-1")
    assert first.status_code == again.status_code == 202
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert payouts() == 1
    other = post(client, "/payouts", key, {**body, "amount": 251_00}, "order-1")
    assert other.status_code == 422 and other.json["error"]["code"] == "idempotency_key_reused"
    assert payouts() == 1


def test_every_post_needs_an_idempotency_key(client, merchant, customer):
    key = make_key(merchant)
    response = client.post(
        "/api/v1/payouts",
        json={"phone": customer.phone, "amount": 100},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 422 and response.json["error"]["code"] == "idempotency_key_missing"
    bad = post(client, "/payouts", key, {"phone": customer.phone, "amount": 100}, "has spaces")
    assert bad.status_code == 422 and payouts() == 0


def test_a_refusal_is_not_remembered_so_the_key_can_be_sent_again(client, merchant, customer):
    key = make_key(merchant)
    refused = post(client, "/payouts", key, {"phone": "0712999999", "amount": 100}, "k1")
    assert refused.status_code == 422 and refused.json["error"]["code"] == "recipient_not_found"
    assert post(client, "/payouts", key, {"phone": "0712999999", "amount": 100}, "k1").status_code == 422
    assert db.session.query(IdempotencyRecord).count() == 0


def test_two_identical_payouts_at_once_with_one_key_make_one_payout(app, client, merchant, customer):
    fund_merchant(merchant.phone, 1_000_00)
    key = make_key(merchant)
    body = {"phone": customer.phone, "amount": 100_00}
    answers = at_once(
        *[app], *[lambda: post(app.test_client(), "/payouts", key, body, "same") for _ in range(4)]
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(202) >= 1 and set(statuses) <= {202, 409}
    firsts = [a for a in answers if a.status_code == 202 and "Idempotent-Replayed" not in a.headers]
    assert len(firsts) == 1
    assert all(a.json == firsts[0].json for a in answers if a.status_code == 202)
    assert payouts() == 1
    execute_all()
    assert available(customer.account_id) == 100_00 and len(sms_to(customer.phone)) == 1


def test_a_retry_after_the_remembered_answer_is_gone_still_pays_once(client, merchant, customer):
    """The transfer id derives from (key, Idempotency-Key): even with the idempotency row
    purged, the same request is the same transfer request."""
    fund_merchant(merchant.phone, 1_000_00)
    key = make_key(merchant)
    body = {"phone": customer.phone, "amount": 100_00}
    first = post(client, "/payouts", key, body, "lost-answer").json
    db.session.query(IdempotencyRecord).delete()
    db.session.commit()
    second = post(client, "/payouts", key, body, "lost-answer").json
    assert second["id"] == first["id"] and payouts() == 1
    execute_all()
    assert available(customer.account_id) == 100_00


def test_bad_input_is_refused_with_a_clear_code_never_a_500(client, merchant, customer, config):
    key = make_key(merchant)
    cases = [
        ({"phone": "+12025550123", "amount": 100}, "invalid_phone"),  # not our country
        ({"phone": "0201234567", "amount": 100}, "invalid_phone"),  # a landline
        ({"phone": customer.phone, "amount": 0}, "invalid_request"),
        ({"phone": customer.phone, "amount": -5}, "invalid_request"),
        ({"phone": customer.phone, "amount": "100"}, "invalid_request"),
        ({"phone": customer.phone, "amount": 1.5}, "invalid_request"),
        ({"phone": customer.phone, "amount": 10**12}, "invalid_request"),
        ({"phone": customer.phone, "amount": 100, "extra": 1}, "invalid_request"),
        ({"phone": customer.phone, "amount": 100, "reference": "x" * 65}, "invalid_request"),
        ({"phone": customer.phone, "amount": 100, "currency": "USD"}, "currency_not_supported"),
        ({"phone": merchant.phone, "amount": 100}, "recipient_not_found"),  # not a customer
        ([1, 2], "invalid_request"),
    ]
    for body, code in cases:
        response = post(client, "/payouts", key, body)
        assert response.status_code == 422 and response.json["error"]["code"] == code, (body, response.json)
    assert (
        post(client, "/payouts", key, "{not json", **{"Content-Type": "application/json"}).status_code == 400
    )
    assert post(client, "/payouts", key, "phone=1", **{"Content-Type": "text/plain"}).status_code == 415
    config(API_MAX_BODY_BYTES=100)
    big = post(client, "/payouts", key, {"phone": customer.phone, "amount": 100, "reference": "x" * 60})
    assert big.status_code == 413 and big.json["error"]["code"] == "body_too_large"
    assert payouts() == 0


def test_a_collect_only_key_cannot_pay_out(client, merchant, customer):
    key = make_key(merchant, scopes=("collect", "read"))
    response = post(client, "/payouts", key, {"phone": customer.phone, "amount": 100})
    assert response.status_code == 403 and payouts() == 0


def test_a_batch_answers_each_row_and_records_the_good_ones(
    client, runner, merchant, customer, second_customer
):
    fund_merchant(merchant.phone, 1_000_00)
    key = make_key(merchant)
    rows = [
        {"phone": customer.phone, "amount": 100_00, "reference": "r1"},
        {"phone": "0712999999", "amount": 100},
        {"phone": "+12025550123", "amount": 100},
        {"phone": merchant.phone, "amount": 100},
        {"phone": "0712000222", "amount": 200_00},
    ]
    answer = post(client, "/payouts/batch", key, {"payouts": rows})
    assert answer.status_code == 202, answer.json
    batch = answer.json
    assert (batch["count"], batch["accepted"], batch["rejected"]) == (5, 2, 3)
    errors = [r["error"]["code"] if r["error"] else None for r in batch["results"]]
    assert errors == [None, "recipient_not_found", "invalid_phone", "recipient_not_found", None]
    assert [r["row"] for r in batch["results"]] == [1, 2, 3, 4, 5]
    malformed = post(
        client, "/payouts/batch", key, {"payouts": [rows[0], rows[1], {"phone": "0712000222", "amount": 0}]}
    )
    assert malformed.status_code == 422 and malformed.json["error"]["message"].startswith("row 3: amount")
    execute_all()
    assert available(customer.account_id) == 100_00 and available(second_customer.account_id) == 200_00
    ledger_check(runner)


def test_a_batch_as_csv(client, merchant, customer, second_customer):
    fund_merchant(merchant.phone, 1_000_00)
    key = make_key(merchant)
    body = "phone,amount,reference\n0712000111,5000,jan\n+254712000222,7000,\n0712999999,1,x\n"
    answer = post(client, "/payouts/batch", key, body, **{"Content-Type": "text/csv"})
    assert answer.status_code == 202, answer.json
    assert [r["status"] for r in answer.json["results"]] == ["accepted", "accepted", "rejected"]
    bad = post(
        client, "/payouts/batch", key, "phone,amount\n0712000111,abc\n", **{"Content-Type": "text/csv"}
    )
    assert bad.status_code == 422 and bad.json["error"]["message"].startswith("row 1: amount")
    again = post(
        client, "/payouts/batch", key, "phone,amount\n0712000111,5000\n", **{"Content-Type": "text/csv"}
    )
    assert again.status_code == 202
    wrong = post(client, "/payouts/batch", key, "who,what\n1,2\n", **{"Content-Type": "text/csv"})
    assert wrong.status_code == 400 and wrong.json["error"]["code"] == "invalid_csv"
    execute_all()
    assert available(customer.account_id) == 100_00 and available(second_customer.account_id) == 70_00


def test_the_answer_is_json_even_for_an_empty_or_odd_batch(client, merchant):
    key = make_key(merchant)
    for body in ({"payouts": []}, {"payouts": {}}, {}, json.loads("[]")):
        response = post(client, "/payouts/batch", key, body)
        assert response.status_code in (400, 422) and "error" in response.json


def test_a_csv_row_is_paid_exactly_as_the_file_shows_or_refused(client, merchant, customer):
    """A row with more or fewer cells than the header, a header naming a column twice (or an
    unknown one), or an amount in anything but ASCII digits is refused whole, naming the row:
    never paid as some other amount."""
    fund_merchant(merchant.phone, 1_000_00)
    key = make_key(merchant)
    csv_type = {"Content-Type": "text/csv"}
    cases = [
        ("phone,amount\n0712000111,150,000\n", 400, "invalid_csv", "row 1"),
        ("phone,amount\n0712000111,100\n0712000111\n", 400, "invalid_csv", "row 2"),
        ("phone,amount,amount\n0712000111,150,000\n", 400, "invalid_csv", "amount"),
        ("phone,amount,tip\n0712000111,150,5\n", 400, "invalid_csv", "tip"),
        ("phone,amount\n0712000111,\u00b2\n", 422, "invalid_request", "row 1: amount"),
        ("phone,amount\n0712000111,\u0661\u0660\u0660\n", 422, "invalid_request", "row 1: amount"),
    ]
    for body, status, code, named in cases:
        response = post(client, "/payouts/batch", key, body, **csv_type)
        assert response.status_code == status, (body, response.json)
        assert response.json["error"]["code"] == code and named in response.json["error"]["message"], (
            body,
            response.json,
        )
    assert payouts() == 0
    execute_all()
    assert available(customer.account_id) == 0


def test_a_moneyless_payout_never_measures_the_customers_balance(client, merchant, customer, config):
    """A payout the owner cannot pay is refused for that (exceeds_credits), not for the
    customer's balance limit; and a payout never posted names no one, only the masked number."""
    config(LIMITS_BASIC_MAJOR="1000,2000,5000")
    fund_merchant(customer.phone, 4_500_00)
    key = make_key(merchant)
    code = post(client, "/payouts", key, {"phone": customer.phone, "amount": 600_00}).json["transaction"]
    execute_all()
    seen = get(client, f"/transactions/{code}", key).json
    assert (seen["status"], seen["result"]) == ("rejected", "exceeds_credits")
    assert seen["counterparty"] == {"name": None, "phone": "+2547120***11"}
    assert available(customer.account_id) == 4_500_00


def test_a_phone_with_anything_but_ascii_digits_and_separators_is_refused(client, merchant, customer):
    """A NUL, a control character or another script's digits is not read past: the number is
    refused (422 invalid_phone), never paid as the digits left over."""
    fund_merchant(merchant.phone, 1_000_00)
    key = make_key(merchant)
    for phone in (
        "0712000111\u0000",
        "\u00000712000111",
        "0712000111\n",
        "07120\t00111",
        "\u0660\u0667\u0661\u0662\u0660\u0660\u0660\u0661\u0661\u0661",  # Arabic-Indic digits
        "\uff10\uff17\uff11\uff12\uff10\uff10\uff10\uff11\uff11\uff11",  # full-width digits
    ):
        answer = post(client, "/payouts", key, {"phone": phone, "amount": 100})
        assert answer.status_code == 422, (phone, answer.json)
        assert answer.json["error"]["code"] == "invalid_phone"
        batch = post(client, "/payouts/batch", key, {"payouts": [{"phone": phone, "amount": 100}]})
        assert batch.json["results"][0]["error"]["code"] == "invalid_phone", (phone, batch.json)
    separators = post(client, "/payouts", key, {"phone": "+254 (712) 000-111", "amount": 100})
    assert separators.status_code == 202 and separators.json["phone"] == customer.phone
    assert payouts() == 1


def test_a_json_body_naming_a_key_twice_is_refused(client, merchant, customer):
    """``{"amount": 100, "amount": 5000}`` is not read as its last value: 400 invalid_json."""
    fund_merchant(merchant.phone, 1_000_00)
    key = make_key(merchant)
    json_type = {"Content-Type": "application/json"}
    twice = f'{{"phone": "{customer.phone}", "amount": 100, "amount": 5000}}'
    answer = post(client, "/payouts", key, twice, **json_type)
    assert answer.status_code == 400 and answer.json["error"]["code"] == "invalid_json"
    assert "amount" in answer.json["error"]["message"]
    nested = f'{{"payouts": [{{"phone": "{customer.phone}", "amount": 1, "amount": 5000}}]}}'
    batch = post(client, "/payouts/batch", key, nested, **json_type)
    assert batch.status_code == 400 and batch.json["error"]["code"] == "invalid_json"
    assert payouts() == 0


def test_a_batch_streamed_past_the_cap_is_refused_never_read_cut(client, config, merchant, customer):
    """A CSV batch sent chunked (no Content-Length) and longer than API_MAX_BODY_BYTES is
    refused whole (413), as one with a Content-Length is: read cut at the cap, its last row's
    amount 5000 would have been paid as 50. At the cap it is read."""
    import io
    import uuid

    from werkzeug.test import EnvironBuilder, run_wsgi_app

    from tests.api_helpers import auth

    fund_merchant(merchant.phone, 1_000_00)
    key = make_key(merchant)
    head = "phone,amount\n0712000111,100\n"
    row = "0712000111,5000\n"

    def streamed(cap: int) -> tuple[str, dict]:
        config(API_MAX_BODY_BYTES=cap)
        body = (head + row).encode()
        headers = {**auth(key), "Idempotency-Key": uuid.uuid4().hex}
        builder = EnvironBuilder(
            method="POST", path="/api/v1/payouts/batch", content_type="text/csv", headers=headers
        )
        environ = builder.get_environ()
        environ.pop("CONTENT_LENGTH", None)
        environ.update({"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True})
        app_iter, status, _ = run_wsgi_app(client.application, environ, buffered=True)
        return status, json.loads(b"".join(app_iter))

    cut_in_the_amount = len(head) + len("0712000111,50")
    status, answer = streamed(cut_in_the_amount)
    assert status.startswith("413") and answer["error"]["code"] == "body_too_large", (status, answer)
    assert payouts() == 0
    status, answer = streamed(len(head) + len(row))
    assert status.startswith("202") and answer["accepted"] == 2, (status, answer)
    execute_all()
    assert available(customer.account_id) == 100 + 5000
