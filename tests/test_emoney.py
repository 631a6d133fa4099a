"""Issuing e-float: a trust bank deposit's reference issues e-float exactly once, from the CLI
and from the back office, one submission or many at once, on SQLite and PostgreSQL."""

import functools
import subprocess
import sys
import threading

import pytest
from sqlalchemy import func, select, text

from tests.admin_helpers import csrf_token, login, operator, post
from tests.helpers import wait_for
from tests.ussd_helpers import available, person
from tests.worker_helpers import ROOT, worker_env
from ussd_app.cli import run_check
from ussd_app.database import is_postgres
from ussd_app.extensions import db
from ussd_app.payments.emoney import normalize_reference
from ussd_app.payments.models import RequestKind, TransferRequest, TrustDeposit

AGENT = "+254712500111"


@pytest.fixture
def agent(backend_app):
    return person(AGENT, "Amina Agent", role="agent", pin="1111")


def issues() -> int:
    """How many float issues the database holds (requests and deposits must agree)."""
    db.session.rollback()
    kind = TransferRequest.kind == RequestKind.FLOAT_ISSUE
    requests = db.session.execute(select(func.count()).select_from(TransferRequest).where(kind)).scalar_one()
    deposits = db.session.execute(select(func.count()).select_from(TrustDeposit)).scalar_one()
    assert requests == deposits
    return deposits


def all_waiting(connection, n: int) -> bool:
    """Whether ``n`` transactions wait for a lock on PostgreSQL."""
    query = text("SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted")
    return connection.execute(query).scalar_one() >= n


def cli_issue(runner, reference, amount="50000", phone="0712500111"):
    return runner.invoke(
        args=["float", "issue", "--phone", phone, "--amount", amount, "--reference", reference]
    )


def test_the_cli_issues_a_reference_once_and_names_the_earlier_issue(backend_app, agent):
    runner = backend_app.test_cli_runner()
    first = cli_issue(runner, "FT-2026-001")
    assert first.exit_code == 0, first.output
    code = first.output.split()[0]

    # The same deposit again, typed the way people type it: refused, naming the first issue.
    for spelling in ("FT-2026-001", "  ft-2026-001 ", "Ft-2026-001", "FT-2026 -001"):
        again = cli_issue(runner, spelling, amount="100")
        assert again.exit_code != 0, again.output
        assert "FT-2026-001" in again.output and code in again.output, again.output
        assert "already" in again.output

    assert issues() == 1
    assert available(agent.account_id) == 50_000_00
    assert run_check()
    # Another deposit is another reference.
    assert cli_issue(runner, "FT-2026-002", amount="10").exit_code == 0
    assert available(agent.account_id) == 50_010_00


def test_the_back_office_refuses_the_same_reference_with_a_message(backend_app, agent):
    client = backend_app.test_client()
    operator()
    login(client)
    form = {"phone": "0712500111", "amount": "25000", "reference": "BANK-77"}
    assert post(client, "/admin/float", form, "/admin/float").status_code == 302
    code = db.session.execute(select(TransferRequest.code)).scalar_one()

    again = post(client, "/admin/float", {**form, "reference": " bank-77"}, "/admin/float")
    assert again.status_code == 400
    page = again.get_data(as_text=True)
    assert "BANK-77" in page and code in page and "already" in page
    assert issues() == 1
    assert available(agent.account_id) == 25_000_00
    assert run_check()


def test_the_reference_is_kept_in_one_form():
    assert normalize_reference("  ft 12\t 34x ") == "FT1234X"
    assert normalize_reference("FT-12/34") != normalize_reference("FT-123/4")
    assert normalize_reference("   ") is None
    assert normalize_reference(None) is None


def test_many_submissions_at_once_issue_once(backend_app, agent):
    """The CLI (processes) and the back office's form, several of each at the same moment, for
    the same deposit, several rounds: each round issues once, the others are refused, never a
    500 or a deadlock. On PostgreSQL a gate makes the race certain: a transaction holds the
    trust account's row, so every submission passes the "issued before?" look-up and then
    waits on that row; only when all are waiting does the gate open."""
    app = backend_app
    postgres = is_postgres(db.session)
    rounds, per_round = 3, 4
    env = worker_env()
    operator()
    clients = []
    for _ in range(per_round - 1):
        client = app.test_client()
        login(client)
        clients.append(client)
    db.session.commit()

    for n in range(rounds):
        reference = f"RACE-{n}"
        answers: list = [None] * per_round
        tokens = [csrf_token(client, "/admin/float") for client in clients]
        db.session.commit()

        def submit(i, reference=reference, answers=answers, tokens=tokens):
            # No app context of the thread's own: each request and each command pushes one and
            # ends its database session with it, as in production.
            if i:  # through the back office ...
                form = {"phone": AGENT, "amount": "1000", "reference": reference}
                response = clients[i - 1].post("/admin/float", data={**form, "csrf_token": tokens[i - 1]})
                answers[i] = (response.status_code, response.get_data(as_text=True))
            else:  # ... and through the CLI, in a process of its own
                command = ["float", "issue", "--phone", AGENT, "--amount", "1000", "--reference", reference]
                done = subprocess.run(
                    [sys.executable, "-m", "flask", "--app", "wsgi", *command],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                answers[i] = (done.returncode, done.stdout + done.stderr)

        gate = db.engine.connect()
        everyone_waits = functools.partial(all_waiting, gate, per_round)
        try:
            if postgres:
                gate.begin()
                gate.execute(text("SELECT id FROM accounts WHERE kind = 'trust' FOR UPDATE"))
            threads = [threading.Thread(target=submit, args=(i,)) for i in range(per_round)]
            for t in threads:
                t.start()
            if postgres:
                wait_for(everyone_waits, message="every submission to wait on the gate")
                gate.rollback()
        finally:
            gate.close()
        for t in threads:
            t.join()
        won = [answer for answer in answers if answer[0] in (0, 302)]
        assert len(won) == 1, answers
        for status, text_ in answers:
            if status not in (0, 302):  # refused by name, as a page or a CLI error, never a 500
                assert status in (1, 400) and f"deposit {reference} has already been issued" in text_, text_

    assert issues() == rounds
    assert available(agent.account_id) == rounds * 1_000_00
    assert run_check()


def test_ledger_check_reports_a_reference_issued_twice_before_the_constraint(backend_app, agent):
    runner = backend_app.test_cli_runner()
    assert cli_issue(runner, "OLD-1").exit_code == 0
    assert cli_issue(runner, "OLD-2").exit_code == 0
    # Data from before the unique constraint: two deposits under one reference (as typed then).
    db.session.execute(
        text(
            "UPDATE trust_deposits SET bank_reference = 'old-1 ', reference_key = NULL "
            "WHERE bank_reference = 'OLD-2'"
        )
    )
    db.session.commit()
    result = runner.invoke(args=["ledger", "check"])
    assert result.exit_code == 1, result.output
    assert "FAIL each bank reference issued once" in result.output
    assert "OLD-1" in result.output
