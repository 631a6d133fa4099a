"""GET /api/v1/transactions: the key owner's statement, keyset-paginated; GET /balance; a key
never sees another wallet's transfers."""

from datetime import UTC, datetime, timedelta

from tests.api_helpers import execute_all, fund_merchant, get, make_key, post


def test_pages_cover_every_posted_transfer_once_in_order(client, merchant, customer, second_customer):
    fund_merchant(merchant.phone, 1_000_00)
    key = make_key(merchant)
    for n in range(6):
        phone = customer.phone if n % 2 else second_customer.phone
        assert post(client, "/payouts", key, {"phone": phone, "amount": 10_00 + n}).status_code == 202
    execute_all()
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = get(client, "/transactions", key, **params).json
        seen += page["data"]
        pages += 1
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert pages == 3 and len(seen) == 7  # the deposit that funded the merchant, then six payouts
    assert len({t["transaction"] for t in seen}) == 7
    assert [t["posted_at"] for t in seen] == sorted(t["posted_at"] for t in seen)
    assert seen[0]["direction"] == "in" and {t["direction"] for t in seen[1:]} == {"out"}
    balance = get(client, "/balance", key).json
    fees = sum(t["fee"] for t in seen[1:])
    assert balance == {
        "available": 1_000_00 - sum(10_00 + n for n in range(6)) - fees,
        "held": 0,
        "currency": "KES",
    }
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert get(client, "/transactions", key, since=later).json["data"] == []
    assert len(get(client, "/transactions", key, until=later).json["data"]) == 7


def test_another_wallet_is_invisible_and_bad_cursors_are_refused(client, merchant, agent, customer):
    fund_merchant(merchant.phone, 100_00)
    code = post(client, "/payouts", make_key(merchant), {"phone": customer.phone, "amount": 100}).json[
        "transaction"
    ]
    execute_all()
    other = make_key(agent)
    assert get(client, f"/transactions/{code}", other).status_code == 404
    assert get(client, "/transactions/ZZZZZZZZZZ", other).status_code == 404
    assert all(t["transaction"] != code for t in get(client, "/transactions", other).json["data"])
    for params in ({"cursor": "garbage!"}, {"limit": 0}, {"limit": 501}, {"since": "yesterday"}, {"x": "1"}):
        response = get(client, "/transactions", other, **params)
        assert response.status_code == 422 and response.json["error"]["code"] == "invalid_request", params


def test_money_held_for_the_merchant_reads_pending_not_posted(client, merchant):
    from tests.escrow_helpers import funded_customer
    from ussd_app.extensions import db
    from ussd_app.payments.submit import mint_request_id, record_request

    buyer = funded_customer()
    hold = record_request(
        db.session,
        request_id=mint_request_id(),
        kind="protected_purchase",
        debit_account_id=buyer,
        credit_account_id=merchant.account_id,
        amount=300_00,
        hold_seconds=3600,
    )
    code = hold.code
    db.session.commit()
    execute_all()
    key = make_key(merchant)
    seen = get(client, f"/transactions/{code}", key).json
    assert (seen["status"], seen["posted_at"], seen["direction"]) == ("pending", None, "in")
    assert get(client, "/balance", key).json["available"] == 0
