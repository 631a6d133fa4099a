"""Issuing e-float: a trust bank deposit's reference issues e-float exactly once, from the CLI
and from the back office, one submission or many at once, on SQLite and PostgreSQL."""

import functools
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from tests.admin_helpers import csrf_token, login, operator, post
from tests.helpers import wait_for
from tests.ussd_helpers import available, person
from tests.worker_helpers import ROOT, worker_env
from ussd_app.cli import run_check
from ussd_app.database import is_postgres
from ussd_app.extensions import db
from ussd_app.payments.emoney import normalize_reference, reference_key
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
    # Punctuation says nothing about which deposit is meant (issue 15 attack on item 2).
    assert normalize_reference("FT-12/34") == normalize_reference("FT 12.34") == "FT1234"
    assert normalize_reference("   ") is None
    assert normalize_reference(None) is None


# -- look-alike spellings of one reference (attack on issue 15 item 2) ------------------------

LOOK_ALIKES = [
    ("BANK-REF-001", "BANK\u2010REF\u2010001"),  # Unicode hyphen
    ("BANK-REF-001", "\uff22\uff21\uff2e\uff2b-REF-001"),  # fullwidth letters
    ("BANKREF001", "bankref\uff10\uff10\uff11"),  # fullwidth digits, lower case
    ("BANK-REF-001", "BANK\u2013REF\u2013001"),  # en dash
    ("BANK-REF-001", "BANK\u2014REF\u2014001"),  # em dash
    ("BANK-REF-001", "BANK\u2212REF\u2212001"),  # minus sign
    ("PGRACE_28142", "PGRACE-28142"),
    ("BANKREF001", "BANK REF 001"),
    ("BANKREF001", "BANK-REF-001"),
    ("BANK-REF-001", "bank/ref.001"),
    ("FT-1234", "FT-\u0661\u0662\u0663\u0664"),  # Arabic-Indic digits
    ("BANK-REF-001", "\U0001d401\U0001d400\U0001d40d\U0001d40a REF 001"),  # mathematical bold
]


@pytest.mark.parametrize(("first", "again"), LOOK_ALIKES)
def test_a_look_alike_spelling_of_a_reference_is_the_same_deposit_on_the_cli(
    backend_app, agent, first, again
):
    runner = backend_app.test_cli_runner()
    issued = cli_issue(runner, first)
    assert issued.exit_code == 0, issued.output
    code = issued.output.split()[0]
    repeat = cli_issue(runner, again)
    assert repeat.exit_code != 0, repeat.output
    assert f"deposit {first} has already been issued: {code}" in repeat.output, repeat.output
    assert issues() == 1
    assert available(agent.account_id) == 50_000_00
    assert run_check()


def test_a_look_alike_spelling_is_refused_by_the_back_office(backend_app, agent):
    client = backend_app.test_client()
    operator()
    login(client)
    form = {"phone": "0712500111", "amount": "25000", "reference": "BANK-REF-001"}
    assert post(client, "/admin/float", form, "/admin/float").status_code == 302
    for again in ("BANK\u2010REF\u2010001", "\uff22\uff21\uff2e\uff2b-REF-001", "BANK_REF_001", "bankref001"):
        answer = post(client, "/admin/float", {**form, "reference": again}, "/admin/float")
        assert answer.status_code == 400, again
        assert "deposit BANK-REF-001 has already been issued" in answer.get_data(as_text=True)
    assert issues() == 1
    assert available(agent.account_id) == 25_000_00
    assert run_check()


@pytest.mark.parametrize(
    ("reference", "said"),
    [
        ("---", "no letter or digit"),
        ("\u2014 _ \u2013", "no letter or digit"),
        ("\u0412\u0410NK-REF-001", "only the letters A-Z and digits"),  # Cyrillic VE and A
        ("\u3392" * 30, "at most 64 letters and digits"),  # one character, three letters (MHz)
    ],
)
def test_a_reference_that_cannot_name_a_deposit_is_refused(backend_app, agent, reference, said):
    answer = cli_issue(backend_app.test_cli_runner(), reference)
    assert answer.exit_code != 0
    assert said in answer.output, answer.output
    assert issues() == 0


def test_the_migration_keys_references_as_the_app_does():
    """The migration keeps its own copy of the key (migrations never import app code)."""
    import importlib.util

    path = os.path.join(ROOT, "migrations", "versions", "0009_ledger.py")
    spec = importlib.util.spec_from_file_location("m0009", path)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    for first, again in LOOK_ALIKES:
        assert migration._key(first) == migration._key(again) == reference_key(first), again
    assert migration._key("---") is None and migration._key(None) is None


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


def test_ledger_check_reports_look_alike_references_stored_before_the_key_ignored_punctuation(
    backend_app, agent
):
    runner = backend_app.test_cli_runner()
    assert cli_issue(runner, "BANK-REF-001").exit_code == 0
    assert cli_issue(runner, "OTHER-1").exit_code == 0
    assert run_check()
    # Issued before this fix: the key then kept dashes, so the look-alike had a key of its own.
    db.session.execute(
        text(
            "UPDATE trust_deposits SET bank_reference = :typed, reference_key = :old "
            "WHERE bank_reference = 'OTHER-1'"
        ),
        {"typed": "BANK\u2010REF\u2010001", "old": "BANK\u2010REF\u2010001"},
    )
    db.session.commit()
    result = runner.invoke(args=["ledger", "check"])
    assert result.exit_code == 1, result.output
    assert (
        "FAIL each bank reference issued once: BANK-REF-001 = BANK\u2010REF\u2010001 (2 deposits)"
        in result.output
    )


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


# -- issues without a reference (attack on issue 15 item 2) ----------------------------------


def cli_issue_without_reference(runner, amount="50000", phone="0712500111"):
    return runner.invoke(args=["float", "issue", "--phone", phone, "--amount", amount])


def test_a_repeated_issue_without_a_reference_is_refused_for_a_day(backend_app, agent):
    runner = backend_app.test_cli_runner()
    first = cli_issue_without_reference(runner)
    assert first.exit_code == 0, first.output
    code = first.output.split()[0]

    again = cli_issue_without_reference(runner)  # the same command, run again
    assert again.exit_code != 0, again.output
    assert f"without a reference ({code}) at " in again.output
    assert "UTC: give the bank reference with --reference to issue another" in again.output
    assert available(agent.account_id) == 50_000_00

    # Another amount, or the bank reference, is another deposit.
    assert cli_issue_without_reference(runner, amount="20000").exit_code == 0
    assert cli_issue(runner, "FT-9").exit_code == 0
    assert issues() == 3
    assert available(agent.account_id) == 120_000_00

    # A day later the same command issues again.
    db.session.execute(
        text("UPDATE transfer_requests SET created_at = :then WHERE code = :code"),
        {"then": datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=24, minutes=1), "code": code},
    )
    db.session.commit()
    assert cli_issue_without_reference(runner).exit_code == 0
    assert available(agent.account_id) == 170_000_00
    assert run_check()


def test_the_same_command_run_at_once_without_a_reference_issues_once(backend_app, agent):
    """Several CLI processes at the same moment. On PostgreSQL a gate holds the trust account's
    row so every process is started and waiting before any can issue."""
    postgres = is_postgres(db.session)
    runs = 3
    env = worker_env()
    answers: list = [None] * runs

    def run(i):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "wsgi",
                "float",
                "issue",
                "--phone",
                AGENT,
                "--amount",
                "700",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        answers[i] = (done.returncode, done.stdout + done.stderr)

    gate = db.engine.connect()
    try:
        if postgres:
            gate.begin()
            gate.execute(text("SELECT id FROM accounts WHERE kind = 'trust' FOR UPDATE"))
        threads = [threading.Thread(target=run, args=(i,)) for i in range(runs)]
        for t in threads:
            t.start()
        if postgres:
            wait_for(
                functools.partial(all_waiting, gate, runs),
                timeout=120,
                message="every run to wait on the gate",
            )
            gate.rollback()
    finally:
        gate.close()
    for t in threads:
        t.join()
    assert [status for status, _ in answers].count(0) == 1, answers
    for status, said in answers:
        if status:
            assert "give the bank reference with --reference to issue another" in said, said
    assert issues() == 1
    assert available(agent.account_id) == 700_00
    assert run_check()
