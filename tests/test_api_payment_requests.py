"""POST /api/v1/payment-requests: the customer gets an SMS and finds it in My approvals over
/ussd; paying it there is an ordinary payment to the merchant, which the API then shows."""

from tests.api_helpers import execute_all, get, make_key, post
from tests.escrow_helpers import PIN, funded_customer, sms_to
from tests.ussd_helpers import Phone, available
from worker import jobs


def test_asked_by_the_api_paid_on_the_phone(client, merchant):
    buyer = funded_customer()
    key = make_key(merchant)
    body = {"phone": "0712000111", "amount": 250_00, "reference": "ORDER-77", "description": "School fees"}
    made = post(client, "/payment-requests", key, body)
    assert made.status_code == 201, made.json
    request = made.json
    assert (request["status"], request["reference"], request["transaction"]) == ("open", "ORDER-77", None)
    assert sms_to("+254712000111")[-1] == (
        "Mama Mboga asks you for KES 250.00 for School fees. Dial *384*7# > My approvals"
    )
    phone = Phone(client, "0712000111")
    phone.dial()
    assert phone.send("3") == "CON Waiting for your approval:\n1. Pay KES 250.00 to Mama Mboga: School fees"
    phone.send("1")
    phone.send("1")
    assert phone.send(PIN) == "END Approved. You will receive an SMS confirmation."
    execute_all()
    jobs.settle_payment_requests()
    seen = get(client, f"/payment-requests/{request['id']}", key).json
    assert seen["status"] == "paid" and seen["transaction"]
    payment = get(client, f"/transactions/{seen['transaction']}", key).json
    assert (payment["direction"], payment["type"], payment["amount"]) == ("in", "buy_goods", 250_00)
    assert available(buyer) == 10_000_00 - 250_00


def test_expires_in_and_the_refusals(client, merchant, second_customer):
    key = make_key(merchant)
    body = {"phone": second_customer.phone, "amount": 100, "description": "Milk", "expires_in": 600}
    made = post(client, "/payment-requests", key, body).json
    from datetime import datetime

    created, expires = (datetime.fromisoformat(made[k]) for k in ("created", "expires_at"))
    assert (expires - created).total_seconds() == 600
    for phone, code in (("0712999999", "payer_not_found"), (merchant.phone, "payer_not_found")):
        response = post(client, "/payment-requests", key, {**body, "phone": phone})
        assert response.json["error"]["code"] == code
    bad = post(client, "/payment-requests", key, {**body, "description": "emoji 🙂"})
    assert bad.status_code == 422 and bad.json["error"]["code"] == "invalid_request"
    for _ in range(2):  # three a day to one number, as on USSD
        assert post(client, "/payment-requests", key, body).status_code == 201
    too_many = post(client, "/payment-requests", key, body)
    assert too_many.json["error"]["code"] == "too_many_requests_to_payer"


def test_another_merchants_request_is_not_found(client, merchant, agent, second_customer):
    mine = make_key(merchant)
    made = post(
        client, "/payment-requests", mine, {"phone": second_customer.phone, "amount": 100, "description": "x"}
    )
    theirs = make_key(agent)
    assert get(client, f"/payment-requests/{made.json['id']}", theirs).status_code == 404
    assert get(client, f"/payment-requests/{made.json['id']}", mine).status_code == 200
    assert get(client, "/payment-requests/nothing", mine).json["error"]["code"] == "not_found"
