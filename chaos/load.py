"""The load and the checks shared by ``make chaos`` (chaos/harness.py, one machine) and
``make cluster-test`` (chaos/cluster/, hosts in network namespaces).

``LoadAndChecks`` is mixed into each harness, which provides ``self.s`` (its settings: seed,
transfers, log, quiesce_timeout, ...), ``self.rng``, ``self.env`` (the app's environment, for
``ledger check``), ``self.supervise()`` (restart what died, as a process supervisor would) and
``self.ussd_url()`` (where a phone's hops go). It holds what the callers were told: the request
ids seen accepted (``accepted``) and the USSD sends a caller saw "Sending ..." for
(``ussd_accepted``), and afterwards checks them against the database (``verify``).
"""

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIN = "2580"

# The app's settings under load, on one machine and on the cluster.
LOAD_ENV = {
    "AT_API_KEY": "chaos",
    "PIN_PEPPER": "chaos-pepper",
    "SECRET_KEY": "chaos",
    # Rules that would hold or refuse a load generator's transfers on purpose.
    "TUMA_VELOCITY_MAX_COUNT": "0",
    "TUMA_VELOCITY_MAX_VALUE_MAJOR": "0",
    "TUMA_WEBHOOK_RATE_PER_MINUTE": "0",
    "TUMA_SIM_SWAP_THRESHOLD_MAJOR": "1000000000",
    "TUMA_LIMITS_BASIC_MAJOR": "1000000,100000000,100000000",
    # Recovery on a short clock, so the run reaches quiescence in seconds.
    "TUMA_REQUEUE_AFTER_SECONDS": "3",
    "TUMA_MAINTENANCE_INTERVAL_SECONDS": "2",
    "TUMA_TRANSFER_BATCH_SIZE": "50",
    "TUMA_SMS_CONNECT_TIMEOUT_SECONDS": "1",
    "TUMA_SMS_READ_TIMEOUT_SECONDS": "2",
    "TUMA_SMS_CLAIM_TIMEOUT_SECONDS": "8",
    "TUMA_SMS_RETRY_BASE_SECONDS": "1",
    "TUMA_SMS_RETRY_MAX_SECONDS": "4",
    "TUMA_SMS_MAX_ATTEMPTS": "1000",
    # Holds that fall due during the run: purchases paid, unregistered sends refunded.
    "TUMA_PROTECTED_HOLD_SECONDS": "6",
    "TUMA_SUSPENSE_HOLD_SECONDS": "10",
}


@dataclass
class Report:
    transfers: int = 0
    faults: Counter = field(default_factory=Counter)
    lost: list = field(default_factory=list)
    doubled: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    ledger_ok: bool = False
    by_status: dict = field(default_factory=dict)
    by_kind: dict = field(default_factory=dict)
    ussd: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.ledger_ok and not self.lost and not self.doubled and not self.problems

    def summary(self) -> str:
        return (
            f"{self.transfers} transfers, {sum(self.faults.values())} faults injected, "
            f"{len(self.lost)} lost, {len(self.doubled)} doubled, "
            f"ledger check {'passed' if self.ledger_ok else 'FAILED'}"
        )


class LoadAndChecks:
    # HTTP statuses a hop may get while a host or a database is failing over (a load balancer
    # with no healthy server, a web worker that lost its database): a dropped session to the
    # phone, not a fault of the service. None of them on one machine.
    outage_statuses: tuple = ()

    def init_load(self) -> None:
        self.report = Report()
        self.accepted: set[str] = set()  # request ids the harness saw committed
        self.ussd_accepted: list[tuple[int, int]] = []  # (payer account, amount) seen accepted
        self.ussd_asked: set[tuple[int, int]] = set()  # (payer account, amount) a PIN was sent for
        self.ussd_lock = threading.Lock()

    def populate(self) -> None:
        from ussd_app.extensions import db
        from ussd_app.payments.emoney import issue_float
        from ussd_app.payments.models import RequestKind
        from ussd_app.payments.submit import record_request
        from ussd_app.pins import hash_pin
        from ussd_app.users import create_user

        session = db.session
        pin_hash = hash_pin(PIN)  # one hash for everyone: hashing each would take minutes
        rng = self.rng
        self.agents = []
        for i in range(3):
            agent = create_user(session, phone=f"+25470090{i:04d}", name=f"Agent {i}", role="agent", pin=None)
            agent.pin_hash = pin_hash
            self.agents.append(agent)
        session.flush()
        for agent in self.agents:
            issue_float(session, agent, 50_000_000_00, f"CHAOS-{agent.id}")
        self.merchants = []
        for i in range(3):
            m = create_user(
                session,
                phone=f"+25470091{i:04d}",
                name=f"Shop {i}",
                role="merchant",
                pin=None,
                till=f"77{i:04d}",
            )
            m.pin_hash = pin_hash
            self.merchants.append(m)
        self.customers = []
        for i in range(60):
            c = create_user(session, phone=f"+25471{i:07d}", name=f"Customer {i}", role="customer", pin=None)
            c.pin_hash = pin_hash
            self.customers.append(c)
        session.flush()
        for c in self.customers:
            record_request(
                session,
                request_id=f"seed-{c.account_id}",
                kind=RequestKind.DEPOSIT.value,
                debit_account_id=rng.choice(self.agents).account_id,
                credit_account_id=c.account_id,
                amount=20_000_00,
            )
        session.commit()
        self.accounts = {
            "agents": [a.account_id for a in self.agents],
            "merchants": [m.account_id for m in self.merchants],
            "customers": [(c.account_id, c.phone) for c in self.customers],
        }
        self.unregistered = [f"+25472{i:07d}" for i in range(max(40, self.s.transfers // 20))]
        self.registered_later: list[str] = []
        self.report.transfers += len(self.customers)
        self.accepted.update(f"seed-{c.account_id}" for c in self.customers)

    def _registered(self, phone: str) -> bool:
        from ussd_app.extensions import db
        from ussd_app.users import find_by_phone

        try:
            found = find_by_phone(db.session, phone) is not None
            db.session.rollback()
            return found
        except Exception:
            db.session.rollback()
            return False

    def ussd_send(self, seq: int) -> str:
        """A customer sends money through the real webhook, hop by hop, as a phone would; a
        session that fails before the PIN is sent is dialled again (a person would). The last
        session's outcome ("accepted ..." when the caller was told it is being sent)."""
        rng = random.Random(self.s.seed * 1_000_003 + seq)
        customers = self.accounts["customers"]
        payer, payer_phone = rng.choice(customers)
        _, payee_phone = rng.choice([c for c in customers if c[0] != payer])
        amount_major = 1000 + seq  # unique: how the accepted transfer is found afterwards
        for attempt in range(5):
            outcome = self.ussd_session(
                f"chaos-{self.s.seed}-{seq}-{attempt}", payer, payer_phone, payee_phone, amount_major
            )
            self.report.ussd[outcome] += 1
            if outcome not in ("connection failed", "ended early (told to dial again)"):
                return outcome
            time.sleep(0.5 + attempt)  # a person dials again a little later
        return outcome

    def ussd_session(self, session_id, payer, payer_phone, payee_phone, amount_major) -> str:
        import requests

        inputs: list[str] = []
        url = self.ussd_url()
        # A person reads the resume offer ("Continue sending KES 1,613.00 to Juma?"): yes only
        # to this send's own amount, no to anything else (another send of the same phone).
        own = f"Continue sending KES {amount_major:,}.00 "
        script = [None, "1", "0" + payee_phone[4:], str(amount_major), "1", PIN]
        while script:
            value = script.pop(0)
            if value is not None:
                inputs.append(value)
            if value == PIN:  # the caller asks for this send (whatever the answer, if any)
                with self.ussd_lock:
                    self.ussd_asked.add((payer, amount_major * 100))
            self.report.ussd["hops"] += 1
            try:
                response = requests.post(
                    url,
                    data={
                        "sessionId": session_id,
                        "serviceCode": "*384*7#",
                        "phoneNumber": payer_phone,
                        "networkCode": "63902",
                        "text": "*".join(inputs),
                    },
                    timeout=20,
                )
            except requests.RequestException:
                # At the PIN hop the request may have been recorded: the outcome is unknown to
                # the phone (the database has the truth), so it is not dialled again.
                return "no answer to the PIN (outcome unknown)" if value == PIN else "connection failed"
            body = response.text
            if response.status_code in self.outage_statuses:
                self.report.ussd[f"HTTP {response.status_code} (an outage)"] += 1
                return "no answer to the PIN (outcome unknown)" if value == PIN else "connection failed"
            if response.status_code >= 500:
                self.report.problems.append(f"USSD hop answered HTTP {response.status_code}")
                return "HTTP 5xx"
            if response.status_code != 200 or not body.startswith(("CON ", "END ")):
                self.report.problems.append(f"USSD hop answered {response.status_code} {body[:60]!r}")
                return "malformed answer"
            if value is None and body.endswith("\n1. Yes\n2. No, start again"):
                # Then the script goes on (on a resumed confirm screen, only "1" and the PIN
                # count; the number and amount are refused as invalid choices).
                script.insert(0, "1" if body.startswith("CON " + own) else "2")
                continue
            if body.startswith("END "):
                if value == PIN and body.startswith("END Sending"):
                    # What the customer was told is sent: after a dropped session the phone may
                    # have been offered an earlier one back (the resume), with its own amount.
                    told = re.match(r"END Sending KES ([\d,]+)\.(\d\d) ", body)
                    amount = int(told.group(1).replace(",", "")) * 100 + int(told.group(2))
                    with self.ussd_lock:
                        self.ussd_accepted.append((payer, amount))
                        self.ussd_asked.add((payer, amount))
                    self.report.transfers += 1
                    return "accepted" if amount == amount_major * 100 else "accepted (a resumed session)"
                if value == PIN and body.startswith("END Not enough money"):
                    # The payer's balance less their sends still queued does not cover it:
                    # nothing recorded (payments/submit.py: spendable_statement).
                    return "told at the PIN: not enough money (nothing sent)"
                if value == PIN:
                    self.report.ussd[f"  told at the PIN: {body[4:70]!r}"] += 1  # what, for the report
                    return "ended at the PIN (outcome unknown)"
                return "ended early (told to dial again)"
        return "no final screen"

    # -- afterwards ---------------------------------------------------------------------------
    def quiesce(self) -> None:
        from sqlalchemy import func, select

        from ussd_app.database import db_clock_us
        from ussd_app.extensions import db
        from ussd_app.payments.holds import due_holds
        from ussd_app.payments.models import RequestStatus, TransferRequest
        from ussd_app.sms.outbox import OutboxMessage

        deadline = time.monotonic() + self.s.quiesce_timeout
        quiet_since = None
        last = None
        while time.monotonic() < deadline:
            self.supervise()
            try:
                queued = db.session.execute(
                    select(func.count()).where(TransferRequest.status == RequestStatus.QUEUED.value)
                ).scalar_one()
                unsent = db.session.execute(
                    select(func.count()).where(OutboxMessage.status != "sent")
                ).scalar_one()
                due = len(due_holds(db.session, db_clock_us(db.session), 10))
                db.session.rollback()
            except Exception:
                db.session.rollback()
                time.sleep(0.5)
                continue
            if (queued, unsent, due) != last:
                self.s.log(f"  waiting: {queued} queued, {unsent} SMS unsent, {due} holds due")
                last = (queued, unsent, due)
            if queued or unsent or due:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 1.5:
                return
            time.sleep(0.5)
        self.report.problems.append(
            f"no quiescence after {self.s.quiesce_timeout:.0f} s: {queued} queued, {unsent} SMS unsent, {due} holds due"
        )

    def verify(self) -> None:
        from sqlalchemy import func, select

        from ussd_app.extensions import db
        from ussd_app.ledger import Transfer
        from ussd_app.payments.legs import HouseAccounts, legs_for
        from ussd_app.payments.models import HoldState, RequestStatus, TransferRequest
        from ussd_app.sms.outbox import OutboxMessage

        session = db.session
        r = self.report
        requests = {t.id: t for t in session.execute(select(TransferRequest)).scalars()}
        r.by_status = dict(Counter(t.status for t in requests.values()))
        r.by_kind = dict(Counter(t.kind for t in requests.values()))
        final = {RequestStatus.ACCEPTED.value, RequestStatus.REJECTED.value}
        for rid in sorted(self.accepted):
            if rid not in requests:
                r.lost.append(f"{rid}: accepted but not in the database")
        for t in requests.values():
            if t.status not in final:
                r.lost.append(f"{t.id} ({t.kind}, {t.amount}): never executed, still {t.status}")
        # USSD sends seen accepted: each is a send request of that payer and (unique) amount.
        sends = Counter(
            (t.debit_account_id, t.amount)
            for t in requests.values()
            if t.kind == "send" and t.amount >= 1000_00
        )
        for payer, amount in self.ussd_accepted:
            if sends[(payer, amount)] == 0:
                r.lost.append(f"USSD send of {amount} from account {payer}: accepted, not recorded")
            elif sends[(payer, amount)] > 1:
                r.doubled.append(
                    f"USSD send of {amount} from account {payer}: recorded {sends[(payer, amount)]} times"
                )
        # Nothing posted that nobody asked for: every USSD send in the database had its PIN typed.
        for payer, amount in sends:
            if (payer, amount) not in self.ussd_asked:
                r.problems.append(
                    f"USSD send of {amount} from account {payer}: recorded, nobody asked for it"
                )
        # Postings per request: exactly its legs when posted, none when rejected.
        legs = Counter(
            dict(session.execute(select(Transfer.user_data, func.count()).group_by(Transfer.user_data)).all())
        )
        house = HouseAccounts(session)
        for t in requests.values():
            want = len(legs_for(t, house)) if t.status == RequestStatus.ACCEPTED.value else 0
            if t.kind == "float_issue":
                continue  # issued by the operator command, its legs counted by the ledger check
            if legs[t.id] > want:
                r.doubled.append(f"{t.id} ({t.kind}): {legs[t.id]} transfers, expected {want}")
            elif legs[t.id] < want:
                r.lost.append(f"{t.id} ({t.kind}): {legs[t.id]} transfers, expected {want}")
        # Holds: resolved at most once, and a resolved hold has its posted resolution.
        for t in requests.values():
            if t.hold_state in (HoldState.POSTED.value, HoldState.VOIDED.value):
                resolution = requests.get(f"{t.id}.r")
                if resolution is None or resolution.status != RequestStatus.ACCEPTED.value:
                    r.lost.append(f"hold {t.id} is {t.hold_state} without an accepted resolution")
        # SMS: every executed request told someone, and everything written was handed over.
        with_sms = set(
            session.execute(
                select(OutboxMessage.transfer_request_id).where(
                    OutboxMessage.transfer_request_id.is_not(None)
                )
            ).scalars()
        )
        for t in requests.values():
            if t.status in final and t.id not in with_sms:
                r.problems.append(f"{t.id} ({t.kind}, {t.status}) has no SMS")
        by_sms_status = dict(
            session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all()
        )
        self.sms_status = by_sms_status
        unsent = sum(n for status, n in by_sms_status.items() if status != "sent")
        if unsent:
            r.problems.append(f"{unsent} SMS not sent after the gateway healed: {by_sms_status}")
        dupes = session.execute(
            select(func.count()).select_from(
                select(OutboxMessage.transfer_request_id, OutboxMessage.phone)
                .where(OutboxMessage.transfer_request_id.is_not(None))
                .group_by(OutboxMessage.transfer_request_id, OutboxMessage.phone, OutboxMessage.body)
                .having(func.count() > 1)
                .subquery()
            )
        ).scalar_one()
        if dupes:
            r.doubled.append(f"{dupes} receipts written twice")
        session.rollback()
        check = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "ledger", "check"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        r.ledger_ok = check.returncode == 0
        if not r.ledger_ok:
            r.problems.append("ledger check: " + check.stdout[-2000:] + check.stderr[-2000:])


def stop_group(proc: subprocess.Popen | None, sig=signal.SIGKILL, wait: float = 20) -> None:
    """Signal a process started in a session of its own and all its children (``killpg``), and
    wait for it; SIGKILL if it has not gone in ``wait`` seconds. Nothing for one already gone."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
