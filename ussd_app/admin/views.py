"""The back-office pages. Reads go straight to the models; each change is one transaction
with its audit row, and every POST has passed the CSRF check (``admin/__init__.py``)."""

import logging
from datetime import UTC, date, datetime, timedelta

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import aliased

from .. import phones
from ..extensions import db
from ..ledger import Account, AccountKind, RejectedTransfer, Transfer, TransferFlags, house_account
from ..money import InvalidAmount, format_amount, parse_major
from ..payments.emoney import FloatError, check_ledger, issue_float_and_commit
from ..payments.models import RequestStatus, TransferRequest, TrustDeposit
from ..queues import ALL_QUEUES, get_queue
from ..sms.outbox import OutboxMessage, OutboxStatus
from ..users import Role, User, find_by_phone
from . import SESSION_KEY, bp, charts, current_operator, login_required, operator_sessions, seams, throttle
from .models import AuditEntry, find_operator, normalize_email, record, utcnow, verify_sign_in

log = logging.getLogger(__name__)

PAGE = 100
# An operator's lock: a PIN lock that never runs out until an operator lifts it.
OPERATOR_LOCK_UNTIL = datetime(9999, 12, 31)


def money(minor: int) -> str:
    return format_amount(int(minor or 0), current_app.config["CURRENCY"])


def _text(raw: str | None, limit: int) -> str:
    """A form field's or search box's text, without control characters (PostgreSQL refuses
    NUL), trimmed to ``limit``."""
    return "".join(c for c in (raw or "") if c.isprintable()).strip()[:limit]


@bp.app_template_filter("money")
def _money_filter(minor):
    return money(minor)


def audit(action: str, target=None, **detail) -> None:
    record(db.session, current_operator().id, action, target, **detail)


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/admin") and not target.startswith("//"):
        return target
    return url_for("admin.dashboard")


# -- signing in and out ------------------------------------------------------------------


SIGN_IN_UNAVAILABLE = (
    "Sign-in is unavailable for a moment (the session store cannot be reached). Try again shortly."
)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method != "POST":
        return render_template("admin/login.html", error=None)
    email = normalize_email(_text(request.form.get("email"), 200))
    password = (request.form.get("password") or "")[:1000]
    try:
        attempt = throttle.take(email, throttle.client_address())
    except Exception as exc:  # Redis down: no throttle, no session store, so no sign-in
        log.error("admin sign-in: throttle unavailable: %s", type(exc).__name__)
        return render_template("admin/login.html", error=SIGN_IN_UNAVAILABLE), 503
    operator = find_operator(db.session, email)
    # The target is the operator's email, never what was typed when no operator has it: a
    # password typed in the wrong box must not land in the audit log in clear.
    target = operator.email if operator else "(no such operator)"
    if attempt.refused:
        log.warning("admin sign-in throttled (%s)", attempt.refused_by)
        error = (
            f"Too many failed sign-ins for this account or from this network. "
            f"Sign-in is paused: try again in {attempt.minutes} minute{'s' if attempt.minutes != 1 else ''}."
        )
        return (
            render_template("admin/login.html", error=error),
            429,
            {"Retry-After": str(attempt.retry_after)},
        )
    if not verify_sign_in(operator, password):
        why = (
            "unknown email"
            if operator is None
            else ("deactivated" if not operator.active else "wrong password")
        )
        record(db.session, operator.id if operator else None, "login.refused", target, why=why)
        if attempt.locks:  # this failure filled a limit: once per lock, never per refusal
            minutes = current_app.config.get("ADMIN_SIGNIN_LOCK_MINUTES") or 15
            record(
                db.session,
                operator.id if operator else None,
                "login.locked",
                target,
                by=attempt.locks,
                minutes=minutes,
            )
        db.session.commit()
        log.warning("admin sign-in refused")
        return render_template("admin/login.html", error="Wrong email or password."), 401
    try:
        throttle.give_back(attempt)
        token = operator_sessions.start(operator.id)
    except Exception as exc:
        log.error("admin sign-in: session store unavailable: %s", type(exc).__name__)
        return render_template("admin/login.html", error=SIGN_IN_UNAVAILABLE), 503
    session.clear()  # a fresh session: nothing carried over from before sign-in
    session[SESSION_KEY] = token
    operator.last_login_at = utcnow()
    record(db.session, operator.id, "login", operator.email)
    db.session.commit()
    return redirect(_safe_next(request.args.get("next")))


@bp.post("/logout")
@login_required
def logout():
    audit("logout", current_operator().email)
    db.session.commit()
    operator_sessions.end(session.get(SESSION_KEY), current_operator().id)
    session.clear()
    return redirect(url_for("admin.login"))


# -- dashboard ---------------------------------------------------------------------------


def _hour_bucket(column):
    if db.engine.dialect.name == "postgresql":
        return func.to_char(func.date_trunc("hour", column), text("'YYYY-MM-DD HH24:00'"))
    return func.strftime("%Y-%m-%d %H:00", column)


def open_holds_by_code(session) -> list[tuple[str, int, int]]:
    """Escrow held right now: (flow code, holds, amount) over pending transfers not resolved."""
    resolution = aliased(Transfer)
    return [
        (code, count, int(amount))
        for code, count, amount in session.execute(
            select(Transfer.code, func.count(), func.coalesce(func.sum(Transfer.amount), 0))
            .outerjoin(resolution, resolution.pending_id == Transfer.id)
            .where(Transfer.flags.op("&")(int(TransferFlags.PENDING)) != 0, resolution.id.is_(None))
            .group_by(Transfer.code)
            .order_by(Transfer.code)
        )
    ]


@bp.get("/")
@login_required
def dashboard():
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    since = now - timedelta(hours=23)
    labels = [(since + timedelta(hours=i)).strftime("%Y-%m-%d %H:00") for i in range(24)]
    index = {label: i for i, label in enumerate(labels)}
    bucket = _hour_bucket(TransferRequest.created_at)
    rows = db.session.execute(
        select(
            bucket,
            TransferRequest.kind,
            func.count(),
            func.coalesce(func.sum(TransferRequest.amount), 0),
            func.coalesce(func.sum(TransferRequest.fee), 0),
        )
        .where(TransferRequest.created_at >= since, TransferRequest.status == RequestStatus.POSTED.value)
        .group_by(bucket, TransferRequest.kind)
    ).all()
    counts: dict[str, list[int]] = {}
    values: dict[str, list[int]] = {}
    fees = [0] * 24
    for hour, kind, count, amount, fee in rows:
        i = index.get(hour)
        if i is None:
            continue
        counts.setdefault(kind, [0] * 24)[i] += count
        values.setdefault(kind, [0] * 24)[i] += int(amount)
        fees[i] += int(fee)
    fee_account = house_account(db.session, AccountKind.FEES)
    sms = dict(
        db.session.execute(
            select(OutboxMessage.status, func.count())
            .where(OutboxMessage.created_at >= since)
            .group_by(OutboxMessage.status)
        ).all()
    )
    handed = sum(sms.get(s, 0) for s in ("sent", "delivered", "failed"))
    queues = _queue_summary()
    return render_template(
        "admin/dashboard.html",
        count_chart=charts.stacked_bars(labels, counts, title="Transfers per hour, by kind (24 h, UTC)"),
        value_chart=charts.stacked_bars(labels, values, title="Value per hour, by kind", fmt=money),
        fee_chart=charts.stacked_bars(
            labels, {"fees": fees} if any(fees) else {}, title="Fees earned per hour", fmt=money
        ),
        fees_24h=sum(fees),
        fees_balance=fee_account.credits_posted - fee_account.debits_posted,
        holds=open_holds_by_code(db.session),
        queues=queues,
        sms=sms,
        delivery_rate=(sms.get("delivered", 0) / handed) if handed else None,
        handed=handed,
    )


# -- ledger ------------------------------------------------------------------------------


def trust_figures(session) -> dict:
    trust = house_account(session, AccountKind.TRUST)
    trust_balance = trust.debits_posted - trust.credits_posted
    circulation = int(
        session.execute(
            select(func.coalesce(func.sum(Account.credits_posted - Account.debits_posted), 0)).where(
                Account.id != trust.id
            )
        ).scalar_one()
    )
    deposits = int(session.execute(select(func.coalesce(func.sum(TrustDeposit.amount), 0))).scalar_one())
    by_kind = session.execute(
        select(
            Account.kind,
            func.count(),
            func.coalesce(func.sum(Account.credits_posted - Account.debits_posted), 0),
            func.coalesce(func.sum(Account.debits_pending), 0),
        )
        .where(Account.id != trust.id)
        .group_by(Account.kind)
        .order_by(Account.kind)
    ).all()
    return {
        "trust": trust_balance,
        "circulation": circulation,
        "deposits": deposits,
        "by_kind": [(k, n, int(b), int(h)) for k, n, b, h in by_kind],
    }


@bp.get("/ledger")
@login_required
def ledger():
    figures = trust_figures(db.session)
    findings = check_ledger(db.session)
    return render_template(
        "admin/ledger.html", findings=findings, ok=all(f.ok for f in findings), figures=figures
    )


# -- accounts ----------------------------------------------------------------------------


def _people_matching(q: str) -> list[User]:
    q = _text(q, 60)
    if not q:
        return list(db.session.execute(select(User).order_by(User.id.desc()).limit(PAGE)).scalars())
    conditions = []
    try:
        conditions.append(User.phone == phones.normalize(q))
    except phones.InvalidPhone:
        pass
    digits = "".join(c for c in q if c.isdigit())
    if len(digits) >= 4:
        conditions.append(User.phone.like(f"%{digits}%"))
    pattern = f"%{q.lower()}%"
    conditions.append(func.lower(User.first_name + " " + User.last_name).like(pattern))
    if q.isdigit():
        conditions.append(User.till == q)
    return list(
        db.session.execute(select(User).where(or_(*conditions)).order_by(User.id).limit(PAGE)).scalars()
    )


def lock_state(user: User) -> str | None:
    if user.locked_until is None or user.locked_until <= utcnow():
        return None
    if user.locked_until >= OPERATOR_LOCK_UNTIL:
        return "locked by an operator"
    return f"PIN lock until {user.locked_until:%Y-%m-%d %H:%M} UTC"


@bp.get("/accounts")
@login_required
def accounts():
    q = request.args.get("q", "")
    people = _people_matching(q)
    provider = seams.tier_provider()
    return render_template(
        "admin/accounts.html",
        q=q,
        people=people,
        lock_state=lock_state,
        tier_of=seams.tier_of,
        tiers=provider.tiers if provider else [],
    )


def _person(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


@bp.post("/accounts/<int:user_id>/lock")
@login_required
def lock(user_id):
    user = _person(user_id)
    reason = _text(request.form.get("reason"), 200)
    if not reason:
        flash("Say why the account is locked.", "error")
        return redirect(url_for("admin.accounts", q=user.phone))
    user.locked_until = OPERATOR_LOCK_UNTIL
    audit("account.lock", user.phone, reason=reason)
    db.session.commit()
    flash(f"Locked {user.name} {user.phone}.", "ok")
    return redirect(url_for("admin.accounts", q=user.phone))


@bp.post("/accounts/<int:user_id>/unlock")
@login_required
def unlock(user_id):
    from ..ussd.pin_guard import unlock_pin

    user = _person(user_id)
    was = lock_state(user)
    unlock_pin(db.session, user)
    audit("account.unlock", user.phone, was=was)
    db.session.commit()
    flash(f"Unlocked {user.name} {user.phone}.", "ok")
    return redirect(url_for("admin.accounts", q=user.phone))


@bp.post("/accounts/<int:user_id>/tier")
@login_required
def upgrade_tier(user_id):
    user = _person(user_id)
    provider = seams.tier_provider()
    tier = (request.form.get("tier") or "").strip()
    document = _text(request.form.get("id_document"), 60)
    if provider is None:
        flash("Tiers cannot be changed here yet.", "error")
    elif tier not in provider.tiers or not document:
        flash("Choose a tier and record the ID document checked (or why the tier is lowered).", "error")
    else:
        old = provider.tier_of(user)
        try:
            provider.upgrade(db.session, user, tier, current_operator().id, document)
            audit("account.tier", user.phone, old_tier=old, new_tier=tier, id_document=document)
            db.session.commit()
            flash(f"{user.name} {user.phone}: tier {old} → {tier}.", "ok")
            _warn_over_balance_limit(user, tier)
        except ValueError as exc:
            db.session.rollback()
            flash(f"Refused: {exc}", "error")
    return redirect(url_for("admin.accounts", q=user.phone))


def _warn_over_balance_limit(user: User, tier: str) -> None:
    from ..limits import tier_limits

    balance = user.account.credits_posted - user.account.debits_posted
    limit = tier_limits(tier).max_balance
    if balance > limit:
        flash(
            f"{user.name} holds {money(balance)}, over the {tier} tier's balance limit of {money(limit)}: "
            "they cannot receive money until their balance is below it.",
            "error",
        )


# -- transfers ---------------------------------------------------------------------------


@bp.get("/transfers")
@login_required
def transfers():
    q = _text(request.args.get("q"), 64)
    day = _text(request.args.get("date"), 10)
    query = select(TransferRequest).order_by(TransferRequest.created_at.desc()).limit(PAGE)
    error = None
    if q:
        conditions = [TransferRequest.code == q.upper(), TransferRequest.id == q]
        try:
            person = find_by_phone(db.session, phones.normalize(q))
        except phones.InvalidPhone:
            person = None
        if person is not None:
            conditions += [
                TransferRequest.debit_account_id == person.account_id,
                TransferRequest.credit_account_id == person.account_id,
            ]
        query = query.where(or_(*conditions))
    if day:
        try:
            start = datetime.combine(date.fromisoformat(day), datetime.min.time())
            query = query.where(
                TransferRequest.created_at >= start, TransferRequest.created_at < start + timedelta(days=1)
            )
        except ValueError:
            error = "A date is YYYY-MM-DD."
    rows = list(db.session.execute(query).scalars())
    if len(rows) == 1 and q and rows[0].code == q.upper():
        return redirect(url_for("admin.transfer", code=rows[0].code))
    return render_template(
        "admin/transfers.html", q=q, day=day, rows=rows, error=error, holders=_holders(rows)
    )


def _holders(requests) -> dict[int, str]:
    """account id -> 'Name +2547...' (or the house account's kind) for the accounts shown."""
    ids = {r.debit_account_id for r in requests} | {r.credit_account_id for r in requests}
    if not ids:
        return {}
    names = {
        u.account_id: f"{u.name} {u.phone}"
        for u in db.session.execute(select(User).where(User.account_id.in_(ids))).scalars()
    }
    for account in db.session.execute(select(Account).where(Account.id.in_(ids))).scalars():
        names.setdefault(account.id, f"[{account.kind}]")
    return names


def transfer_trail(session, request_row: TransferRequest) -> dict:
    """Everything that happened to one transfer request: its ledger transfers (holds, posts,
    voids), rejections, SMS and operator actions, in time order where they have one."""
    legs = list(
        session.execute(
            select(Transfer).where(Transfer.user_data == request_row.id).order_by(Transfer.created_at)
        ).scalars()
    )
    hold_ids = [t.id for t in legs if t.is_pending]
    if hold_ids:
        known = {t.id for t in legs}
        legs += [
            t
            for t in session.execute(
                select(Transfer).where(Transfer.pending_id.in_(hold_ids)).order_by(Transfer.created_at)
            ).scalars()
            if t.id not in known
        ]
    rejected = list(
        session.execute(
            select(RejectedTransfer).where(RejectedTransfer.user_data == request_row.id)
        ).scalars()
    )
    sms = list(
        session.execute(
            select(OutboxMessage).where(OutboxMessage.request_id == request_row.id).order_by(OutboxMessage.id)
        ).scalars()
    )
    deposit = session.execute(
        select(TrustDeposit).where(TrustDeposit.request_id == request_row.id)
    ).scalar_one_or_none()
    audits = list(
        session.execute(
            select(AuditEntry)
            .where(
                or_(
                    AuditEntry.target == request_row.code,
                    AuditEntry.target.like(f"%:{request_row.code}"),  # decisions: "<source>:<code>"
                )
            )
            .order_by(AuditEntry.id)
        ).scalars()
    )
    return {"legs": legs, "rejected": rejected, "sms": sms, "deposit": deposit, "audits": audits}


def leg_kind(t: Transfer) -> str:
    if t.flags & TransferFlags.PENDING:
        return "hold"
    if t.flags & TransferFlags.POST_PENDING_TRANSFER:
        return "post"
    if t.flags & TransferFlags.VOID_PENDING_TRANSFER:
        return "void"
    return "posted"


def micros(us: int | None) -> str:
    if not us:
        return ""
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@bp.get("/transfers/<code>")
@login_required
def transfer(code):
    row = db.session.execute(
        select(TransferRequest).where(TransferRequest.code == code.upper()[:10])
    ).scalar_one_or_none()
    if row is None:
        abort(404)
    trail = transfer_trail(db.session, row)
    ids = {row.debit_account_id, row.credit_account_id}
    ids |= {t.debit_account_id for t in trail["legs"]} | {t.credit_account_id for t in trail["legs"]}
    holders = _holders([row])
    for account in db.session.execute(select(Account).where(Account.id.in_(ids))).scalars():
        holders.setdefault(account.id, f"[{account.kind}]")
    return render_template(
        "admin/transfer.html", r=row, trail=trail, holders=holders, leg_kind=leg_kind, micros=micros
    )


# -- disputes and reversals --------------------------------------------------------------


@bp.get("/disputes")
@login_required
def disputes():
    pending = []
    for source in seams.decision_sources().values():
        pending += source.pending(db.session)
    return render_template("admin/disputes.html", pending=pending, sources=seams.decision_sources())


@bp.post("/disputes/<source>/<decision_id>")
@login_required
def decide(source, decision_id):
    provider = seams.decision_sources().get(source)
    verdict = request.form.get("decision")
    note = _text(request.form.get("note"), 200)
    if provider is None or verdict not in ("approve", "refuse"):
        abort(404)
    try:
        outcome = provider.decide(db.session, decision_id, verdict == "approve", current_operator().id, note)
        audit(f"decision.{verdict}", f"{source}:{decision_id}"[:100], note=note, outcome=outcome)
        db.session.commit()
        flash(outcome, "ok")
    except ValueError as exc:
        db.session.rollback()
        flash(f"Refused: {exc}", "error")
    return redirect(url_for("admin.disputes"))  # a decision's receipts rang the sender at commit


# -- SMS ---------------------------------------------------------------------------------


@bp.get("/sms")
@login_required
def sms():
    status = request.args.get("status", "")
    phone = _text(request.args.get("phone"), 30)
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(PAGE)
    if status in {s.value for s in OutboxStatus}:
        query = query.where(OutboxMessage.status == status)
    else:
        status = ""
    if phone:
        try:
            query = query.where(OutboxMessage.phone == phones.normalize(phone))
        except phones.InvalidPhone:
            flash("Not a phone number.", "error")
    counts = dict(
        db.session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all()
    )
    rows = list(db.session.execute(query).scalars())
    request_ids = {m.request_id for m in rows if m.request_id}
    codes = (
        {
            r.id: r.code
            for r in db.session.execute(
                select(TransferRequest).where(TransferRequest.id.in_(request_ids))
            ).scalars()
        }
        if request_ids
        else {}
    )
    return render_template(
        "admin/sms.html",
        rows=rows,
        status=status,
        phone=phone,
        counts=counts,
        statuses=list(OutboxStatus),
        codes=codes,
    )


@bp.post("/sms/<int:message_id>/retry")
@login_required
def retry_sms(message_id):
    from ..queues import Bell, ring_after_commit

    message = db.session.get(OutboxMessage, message_id)
    if message is None:
        abort(404)
    if message.status != OutboxStatus.FAILED.value:
        flash(f"Message {message.id} is {message.status}: only failed messages are retried.", "error")
        return redirect(url_for("admin.sms", status="failed"))
    was = message.failure_reason
    message.status = OutboxStatus.PENDING.value
    message.attempts = 0  # a fresh set of attempts
    message.next_attempt_at = None
    message.claim_token = None
    message.claimed_at = None
    audit("sms.retry", str(message.id), phone=message.phone, was=was)
    ring_after_commit(db.session, Bell.SMS)  # pending again: the sender hears it once committed
    db.session.commit()
    flash(f"Message {message.id} to {message.phone} will be sent again.", "ok")
    return redirect(url_for("admin.sms", status="failed"))


# -- e-float -----------------------------------------------------------------------------


@bp.route("/float", methods=["GET", "POST"])
@login_required
def float_issue():
    form = {"phone": "", "amount": "", "reference": ""}
    error = None
    if request.method == "POST":
        form = {k: _text(request.form.get(k), 64) for k in form}
        try:
            minor = parse_major(form["amount"])
            agent = find_by_phone(db.session, phones.normalize(form["phone"]))
            if agent is None:
                raise FloatError(f"no account for {form['phone']}")
            if agent.role != Role.AGENT.value:
                raise FloatError(f"{agent.name} is a {agent.role}, not an agent")
            if not form["reference"]:
                raise FloatError("record the trust bank deposit's reference")
            phone = agent.phone

            def audited(issued):
                audit("float.issue", issued.code, phone=phone, amount=minor, reference=issued.reference)

            # Once per reference, whatever races; committed with its audit row (payments/emoney.py).
            issued = issue_float_and_commit(db.session, agent.id, minor, form["reference"], also=audited)
        except InvalidAmount:
            db.session.rollback()
            error = "The amount is a whole number of shillings, more than 0."
        except phones.InvalidPhone:
            db.session.rollback()
            error = "Not a phone number."
        except FloatError as exc:
            db.session.rollback()
            error = str(exc)
        else:
            flash(f"{issued.code}: issued {money(minor)} to {agent.name} {agent.phone}.", "ok")
            return redirect(url_for("admin.float_issue"))
    deposits = list(
        db.session.execute(select(TrustDeposit).order_by(TrustDeposit.id.desc()).limit(20)).scalars()
    )
    return render_template("admin/float.html", form=form, error=error, deposits=deposits), (
        400 if error else 200
    )


# -- queues ------------------------------------------------------------------------------


def _queue_summary() -> list[dict]:
    summary = []
    for name in ALL_QUEUES:
        queue = get_queue(name)
        summary.append(
            {
                "name": name,
                "waiting": queue.count,
                "running": queue.started_job_registry.count,
                "failed": queue.failed_job_registry.count,
                "scheduled": queue.scheduled_job_registry.count,
            }
        )
    return summary


@bp.get("/queues")
@login_required
def queues():
    failed = []
    for name in ALL_QUEUES:
        queue = get_queue(name)
        for job_id in queue.failed_job_registry.get_job_ids(0, 19):
            job = queue.fetch_job(job_id)
            if job is None:
                continue
            last = (job.exc_info or "").strip().splitlines()[-1:] or [""]
            failed.append(
                {
                    "queue": name,
                    "id": job.id,
                    "func": job.func_name,
                    "ended": job.ended_at,
                    "error": last[0][:200],
                }
            )
    return render_template("admin/queues.html", queues=_queue_summary(), failed=failed, workers=_workers())


def _workers() -> list[dict]:
    """The rq workers registered in Redis (each refreshes its key while alive)."""
    from rq import Worker

    from ..queues import get_redis

    found = []
    for worker in Worker.all(connection=get_redis()):
        job = worker.get_current_job_id()
        found.append(
            {
                "name": worker.name,
                "queues": ", ".join(worker.queue_names()),
                "state": worker.get_state(),
                "job": job or "",
                "seen": worker.last_heartbeat,
                "done": worker.successful_job_count,
                "failed": worker.failed_job_count,
            }
        )
    return sorted(found, key=lambda w: w["name"])


@bp.post("/queues/<name>/requeue/<job_id>")
@login_required
def requeue(name, job_id):
    if name not in ALL_QUEUES:
        abort(404)
    try:
        get_queue(name).failed_job_registry.requeue(job_id[:100])
    except Exception as exc:  # the job is gone or not failed any more
        flash(f"Could not requeue {job_id[:100]}: {type(exc).__name__}", "error")
        return redirect(url_for("admin.queues"))
    audit("job.requeue", job_id[:100], queue=name)
    db.session.commit()
    flash(f"Requeued {job_id[:100]}.", "ok")
    return redirect(url_for("admin.queues"))


# -- audit log ---------------------------------------------------------------------------


@bp.get("/audit")
@login_required
def audit_log():
    rows = db.session.execute(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(200)).scalars().all()
    from .models import Operator

    names = {o.id: o.email for o in db.session.execute(select(Operator)).scalars()}
    return render_template("admin/audit.html", rows=rows, names=names)
