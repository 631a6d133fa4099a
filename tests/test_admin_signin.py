"""Issue 15 item 3: back-office sign-in is throttled per account and per client address (429),
costs one argon2 verify whether the e-mail is an operator's or not, and every failure is in
the audit log (without the password)."""

import threading

import argon2
import pytest
from sqlalchemy import select

from tests.admin_helpers import EMAIL, PASSWORD, csrf_token, login, operator
from ussd_app.admin.models import AuditEntry
from ussd_app.extensions import db

WRONG = "not the password, a guess"


def rows(action=None):
    query = select(AuditEntry).order_by(AuditEntry.id)
    if action:
        query = query.where(AuditEntry.action == action)
    return list(db.session.execute(query).scalars())


def sign_in(client, email=EMAIL, password=WRONG, address="198.51.100.7", headers=None):
    """A sign-in as a browser at ``address`` makes it: the page (its CSRF token), then the form."""
    client.environ_base["REMOTE_ADDR"] = address
    token = csrf_token(client)
    return client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf_token": token},
        headers=headers or {},
    )


def signed_in(client) -> bool:
    return client.get("/admin/").status_code == 200


@pytest.fixture(autouse=True)
def limits(config):
    config(
        WTF_CSRF_ENABLED=True,
        ADMIN_SIGNIN_MAX_PER_ACCOUNT=5,
        ADMIN_SIGNIN_MAX_PER_ADDRESS=20,
        ADMIN_SIGNIN_LOCK_MINUTES=15,
        WEBHOOK_TRUSTED_PROXIES=0,
    )


def test_forty_wrong_passwords_for_one_account_get_five_answers_then_429(client):
    operator()
    # Other spellings of the same e-mail are the same account.
    spellings = [EMAIL, EMAIL.upper(), f"  {EMAIL} ", "Ops@Tuma.Example"]
    statuses = [
        sign_in(client, email=spellings[i % 4], address=f"203.0.113.{i}").status_code for i in range(40)
    ]
    assert statuses == [401] * 5 + [429] * 35
    refused = sign_in(client, password=PASSWORD, address="203.0.113.200")  # even the right one
    assert refused.status_code == 429
    page = refused.get_data(as_text=True)
    assert "Too many failed sign-ins" in page and "try again in 15 minutes" in page
    assert 840 <= int(refused.headers["Retry-After"]) <= 900
    assert not signed_in(client)
    # Another operator at the same addresses is not locked out.
    operator(email="other@tuma.example", name="Other Op")
    assert (
        sign_in(client, email="other@tuma.example", password=PASSWORD, address="203.0.113.1").status_code
        == 302
    )
    assert signed_in(client)


def test_one_address_trying_many_accounts_is_stopped_and_xff_does_not_help(client, config):
    config(ADMIN_SIGNIN_MAX_PER_ADDRESS=8)
    operator()
    statuses = [
        sign_in(
            client,
            email=f"guess{i}@tuma.example",
            address="192.0.2.50",
            headers={"X-Forwarded-For": f"10.9.8.{i}"},  # a client's own claim: not believed
        ).status_code
        for i in range(12)
    ]
    assert statuses == [401] * 8 + [429] * 4
    assert sign_in(client, password=PASSWORD, address="192.0.2.50").status_code == 429
    # The operator, from another address, signs in: the address lock is not theirs.
    assert sign_in(client, password=PASSWORD, address="192.0.2.51").status_code == 302


def test_behind_a_trusted_proxy_the_client_address_is_the_one_counted(client, config):
    config(ADMIN_SIGNIN_MAX_PER_ADDRESS=3, WEBHOOK_TRUSTED_PROXIES="192.0.2.1")
    operator()
    proxy = "192.0.2.1"  # every request reaches the app from the proxy
    statuses = [
        sign_in(
            client, email=f"g{i}@tuma.example", address=proxy, headers={"X-Forwarded-For": "198.51.100.9"}
        ).status_code
        for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    other = sign_in(client, password=PASSWORD, address=proxy, headers={"X-Forwarded-For": "198.51.100.10"})
    assert other.status_code == 302  # another client behind the same proxy
    assert {r.ip for r in rows("login.refused")} == {"198.51.100.9"}


def test_a_successful_sign_in_is_not_counted_as_a_failure(client):
    operator()
    for _ in range(4):
        assert sign_in(client).status_code == 401
    for _ in range(3):
        assert sign_in(client, password=PASSWORD).status_code == 302
        client.post("/admin/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    assert sign_in(client).status_code == 401  # the fifth failure
    assert sign_in(client).status_code == 429


def test_failed_sign_ins_are_audited_without_the_password(client):
    op = operator()
    sign_in(client, password="hunter2-the-wrong-one", address="198.51.100.21")
    sign_in(client, email="nobody@tuma.example", password=PASSWORD, address="198.51.100.22")
    op.active = False
    db.session.commit()
    sign_in(client, password=PASSWORD, address="198.51.100.23")
    refused = rows("login.refused")
    assert [(r.operator_id, r.target, r.ip, r.details["why"]) for r in refused] == [
        (op.id, EMAIL, "198.51.100.21", "wrong password"),
        (None, "(no such operator)", "198.51.100.22", "unknown email"),
        (op.id, EMAIL, "198.51.100.23", "deactivated"),
    ]
    for _ in range(6):  # 4 more failures make 5, then the lock
        sign_in(client, email="nobody@tuma.example", password=PASSWORD, address="198.51.100.22")
    [locked] = rows("login.locked")  # once, however many refusals follow
    assert locked.details == {"by": "account", "minutes": 15} and locked.target == "(no such operator)"
    everything = " ".join(f"{r.target} {r.detail}" for r in rows())
    assert "hunter2" not in everything and PASSWORD not in everything
    assert "nobody@tuma.example" not in everything


class CountingVerify:
    """Counts argon2 verifications (calling the real one), with the hash each was against."""

    def __init__(self, monkeypatch):
        self.hashes = []
        real = argon2.PasswordHasher.verify

        def verify(hasher, hash, password):
            self.hashes.append(hash)
            return real(hasher, hash, password)

        monkeypatch.setattr(argon2.PasswordHasher, "verify", verify)


def test_an_unknown_email_costs_the_same_argon2_verify_as_a_known_one(client, monkeypatch):
    op = operator()
    verifies = CountingVerify(monkeypatch)
    assert sign_in(client, email="nobody@tuma.example", address="198.51.100.31").status_code == 401
    assert sign_in(client, address="198.51.100.32").status_code == 401
    op.active = False
    db.session.commit()
    assert sign_in(client, password=PASSWORD, address="198.51.100.33").status_code == 401
    assert len(verifies.hashes) == 3  # one each: unknown, wrong password, deactivated
    dummy, real, _ = verifies.hashes
    assert dummy != real
    assert argon2.extract_parameters(dummy) == argon2.extract_parameters(real)
    # A throttled attempt verifies nothing at all.
    for i in range(5):
        sign_in(client, email="x@tuma.example", address=f"198.51.100.{40 + i}")
    before = len(verifies.hashes)
    assert sign_in(client, email="x@tuma.example", address="198.51.100.50").status_code == 429
    assert len(verifies.hashes) == before


def test_operators_cli_lifts_an_account_lock(client, runner):
    operator()
    for _ in range(6):
        sign_in(client)
    assert sign_in(client, password=PASSWORD).status_code == 429
    result = runner.invoke(args=["operators", "unlock-sign-in", "--email", "OPS@tuma.example"])
    assert result.exit_code == 0, result.output
    assert sign_in(client, password=PASSWORD, address="198.51.100.99").status_code == 302
    assert [r.action for r in rows()][-2:] == ["operator.unlock_sign_in", "login"]


def test_the_login_helper_still_signs_in(client):
    operator()
    assert login(client).status_code == 302


def test_guesses_sent_at_once_cannot_pass_the_limit_together(backend_app):
    """The slot is taken (INCR) before the password is checked: twelve guesses in parallel
    get five answers, on SQLite and PostgreSQL."""
    backend_app.config.update(ADMIN_SIGNIN_MAX_PER_ACCOUNT=5, ADMIN_SIGNIN_MAX_PER_ADDRESS=20)
    operator()
    clients = []
    for i in range(12):
        browser = backend_app.test_client()
        browser.environ_base["REMOTE_ADDR"] = f"203.0.113.{i}"
        clients.append((browser, csrf_token(browser)))
    start = threading.Barrier(len(clients))
    statuses = []

    def guess(browser, token):
        start.wait()
        data = {"email": EMAIL, "password": WRONG, "csrf_token": token}
        statuses.append(browser.post("/admin/login", data=data).status_code)

    threads = [threading.Thread(target=guess, args=pair) for pair in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [401] * 5 + [429] * 7
    assert len(rows("login.refused")) == 5 and len(rows("login.locked")) == 1


def test_refusals_while_locked_do_not_count_against_the_address(client, config):
    """Only real failures count: hammering a locked account does not lock out colleagues
    behind the same address (an office NAT), nor stretch the lock."""
    config(ADMIN_SIGNIN_MAX_PER_ADDRESS=8)
    operator()
    operator(email="colleague@tuma.example", name="Colleague")
    statuses = [sign_in(client, address="192.0.2.80").status_code for _ in range(15)]
    assert statuses == [401] * 5 + [429] * 10
    colleague = sign_in(client, email="colleague@tuma.example", password=PASSWORD, address="192.0.2.80")
    assert colleague.status_code == 302
