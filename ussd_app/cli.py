"""Operator commands: ``flask --app wsgi accounts|float|ledger|tariffs|review ...``."""

import json
import sys
from datetime import UTC, datetime

import click
from flask import Blueprint

from . import tariffs
from .extensions import db
from .messages import money
from .money import InvalidAmount, parse_major
from .payments.emoney import FloatError, check_ledger, issue_float_and_commit
from .phones import InvalidPhone, normalize
from .users import Role, UserError, create_user, find_by_phone
from .ussd.pin_guard import unlock_pin

accounts_cli = Blueprint("accounts", __name__, cli_group="accounts")
float_cli = Blueprint("float", __name__, cli_group="float")
ledger_cli = Blueprint("ledger", __name__, cli_group="ledger")


@accounts_cli.cli.command("create")
@click.option("--phone", required=True, help="local or international form")
@click.option("--name", required=True, help="first and last name")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--pin", required=True, help="4 digits")
@click.option("--till", default=None, help="merchants: till or pay-bill number; causes: the code people tip")
@click.option("--paybill", is_flag=True, help="merchants: --till is a pay-bill number (takes an account)")
@click.option("--id-number", default=None, help="the holder's national ID number")
@click.option(
    "--language",
    default=None,
    type=click.Choice(["en", "sw"]),
    help="default: the country's first (TUMA_COUNTRY)",
)
def create_account(phone, name, role, pin, till, paybill, id_number, language):
    """Open a wallet for a customer, agent, merchant or cause (a creator or cause taking tips)."""
    try:
        user = create_user(
            db.session,
            phone=phone,
            name=name,
            role=role,
            pin=pin,
            till=till,
            language=language,
            paybill=paybill,
            id_number=id_number,
        )
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created {user.role} {user.name} {user.phone} (account {user.account_id})")


def _holder(phone: str):
    """The account holder of ``phone`` (any form), or a clear refusal."""
    try:
        user = find_by_phone(db.session, normalize(phone))
    except InvalidPhone as exc:
        raise click.ClickException(f"not a valid phone number: {phone}") from exc
    if user is None:
        raise click.ClickException(f"no account for {phone}")
    return user


@accounts_cli.cli.command("unlock")
@click.option("--phone", required=True, help="local or international form")
def unlock_account(phone):
    """Lift a PIN lock after too many wrong PINs, or an operator's lock (after checking who is
    asking)."""
    from .admin.models import record

    user = _holder(phone)
    unlock_pin(db.session, user, operator=True)
    # Audited as the back office's unlock is (its "account.unlock"): the row is the only trace.
    record(db.session, None, "account.unlock", user.phone, via="cli")
    db.session.commit()
    click.echo(f"unlocked {user.name} {user.phone}")


@float_cli.cli.command("issue")
@click.option("--phone", required=True, help="the agent's phone number")
@click.option("--amount", required=True, help="major units of CURRENCY, e.g. 50000 for 50,000")
@click.option("--reference", default=None, help="the trust bank deposit's reference (issues e-float once)")
def float_issue(phone, amount, reference):
    """Record a trust bank deposit and issue the same amount of e-float to an agent; audited,
    as the back office's issue is ("float.issue", committed with it)."""
    from .admin.models import record

    try:
        minor = parse_major(amount)
        agent = find_by_phone(db.session, normalize(phone))
        if agent is None:
            raise click.ClickException(f"no account for {phone}")
        agent_phone = agent.phone

        def audited(issued):
            detail = {"phone": agent_phone, "amount": minor, "reference": issued.reference}
            record(db.session, None, "float.issue", issued.code, via="cli", **detail)

        request = issue_float_and_commit(db.session, agent.id, minor, reference, also=audited)
    except (InvalidAmount, InvalidPhone, FloatError) as exc:
        db.session.rollback()
        raise click.ClickException(f"refused: {exc}") from exc
    db.session.refresh(agent.account)
    click.echo(
        f"{request.code} issued {money(minor)} to {agent.name} {agent.phone}; "
        f"float balance {money(agent.account.available)}"
    )


def run_check() -> bool:
    findings = check_ledger(db.session)
    for f in findings:
        click.echo(f"{'ok  ' if f.ok else 'FAIL'} {f.name}: {f.detail}")
    return all(f.ok for f in findings)


@ledger_cli.cli.command("check")
def check_command():
    """Verify every ledger invariant; exit 0 only if all hold."""
    ok = run_check()
    click.echo("ledger check passed" if ok else "ledger check FAILED")
    sys.exit(0 if ok else 1)


def init_app(app) -> None:
    from .payments.disputes_cli import disputes_cli  # issue 5: the operator decides disputes

    app.register_blueprint(disputes_cli)
    from .payments.standing_orders_cli import standing_orders_cli  # issue 18: scheduled payments

    app.register_blueprint(standing_orders_cli)
    for bp in (accounts_cli, float_cli, ledger_cli, tariffs_cli, review_cli):
        app.register_blueprint(bp)


# -- Tariffs, tiers and review (issue 6) ----------------------------------------------------

tariffs_cli = Blueprint("tariffs", __name__, cli_group="tariffs")
review_cli = Blueprint("review", __name__, cli_group="review")


@tariffs_cli.cli.command("show")
@click.option("--all", "show_all", is_flag=True, help="every version, not only the one in force")
def tariffs_show(show_all):
    """Print the tariff in force (seeding the built-in defaults as version 1 if none exists)."""
    tariffs.ensure_seeded(db.session)
    db.session.commit()
    current = tariffs.in_force(db.session)
    for version in tariffs.versions(db.session) if show_all else []:
        mark = "*" if version.id == current.id else " "
        start = f"{version.effective_from:%Y-%m-%d %H:%M} UTC"
        click.echo(f"{mark} version {version.id} from {start} {version.note or ''}")
    click.echo(f"in force: version {current.id}")
    click.echo(json.dumps(current.document, indent=2, sort_keys=True))


@tariffs_cli.cli.command("set")
@click.option("--file", "path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--effective-from", default=None, help="UTC, e.g. 2026-12-01T00:00 (default: now)")
@click.option("--note", default=None, help="why, for the record")
def tariffs_set(path, effective_from, note):
    """Add a tariff version from a JSON file (minor units; see ussd_app/tariffs.py)."""
    try:
        with open(path, encoding="utf-8") as fh:
            document = json.load(fh)
        start = datetime.fromisoformat(effective_from) if effective_from else None
        if start is not None and start.tzinfo is not None:
            start = start.astimezone(UTC).replace(tzinfo=None)
        tariffs.ensure_seeded(db.session)
        version = tariffs.add_version(db.session, document, effective_from=start, note=note)
        db.session.commit()
    except (ValueError, tariffs.InvalidTariff) as exc:  # JSONDecodeError is a ValueError
        db.session.rollback()
        raise click.ClickException(f"refused: {exc}") from exc
    click.echo(f"tariff version {version.id} in force from {version.effective_from:%Y-%m-%d %H:%M} UTC")


@accounts_cli.cli.command("tier")
@click.option("--phone", required=True, help="local or international form")
@click.option("--tier", required=True, type=click.Choice(["basic", "full"]))
def account_tier(phone, tier):
    """Set a customer's KYC tier (full: an agent has checked their ID). Audited, like the back
    office's and an agent's tier changes."""
    from .admin.models import record

    user = _holder(phone)
    was = user.tier
    user.tier = tier
    record(db.session, None, "account.tier", user.phone, via="cli", old_tier=was, new_tier=tier)
    db.session.commit()
    click.echo(f"{user.name} {user.phone} is now tier {tier}")


@review_cli.cli.command("list")
@click.option(
    "--from",
    "start",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="the refused allowance settlements from this one on (they are numbered in the summary line)",
)
def review_list(start):
    """Transfers held for review by a velocity rule, oldest first; then allowance settlements
    refused ALLOWANCE_SETTLE_ALERT_AFTER times or more (the money held until one posts), soonest
    due again first, TUMA_REVIEW_PAGE_SIZE at a time, with how many wait in all."""
    from .payments import review

    for r in review.held(db.session):
        click.echo(
            f"{r.code} {r.kind} {money(r.amount)} account {r.debit_account_id} -> "
            f"{r.credit_account_id} held {r.executed_at:%Y-%m-%d %H:%M} UTC ({r.result}) "
            f"(or: flask review clear|refuse --code {r.code} --operator NAME --reason TEXT; "
            "or the back office's review page)"
        )
    # Allowance settlements refused again and again (the merchant locked, the ledger): the
    # customer's money stays held until one posts (payments/allowances/settlement.py).
    from .payments import holds
    from .payments.allowances.settlement import refused_settlements

    page = refused_settlements(db.session, start=start - 1)
    if page.total:
        click.echo(f"Allowance settlements refused again and again: {page.summary}")
    for allowance, last in page:
        click.echo(
            f"{last.code} allowance settlement {money(last.amount)} account {last.debit_account_id} -> "
            f"{last.credit_account_id} refused {holds.attempt_of(last.pending_request_id, last.id)} times, "
            f"last {last.executed_at:%Y-%m-%d %H:%M} UTC ({last.result}); allowance {allowance.id}, "
            "tried again after TUMA_ALLOWANCE_SETTLE_RETRY_SECONDS, the wait doubling with each "
            "refusal up to TUMA_ALLOWANCE_SETTLE_RETRY_MAX_SECONDS "
            f"(or: flask review void --allowance {allowance.id})"
        )
    if page.more:
        click.echo(f"{page.more:,} more: flask review list --from {page.start + len(page) + 1}")


@review_cli.cli.command("void")
@click.option("--allowance", "allowance_id", required=True, help="the allowance's id (al_...)")
@click.option("--operator", required=True, help="your name, for the audit log")
@click.option("--reason", required=True, help="why, for the audit log (at most 200 characters)")
def review_void(allowance_id, operator, reason):
    """Decide an allowance whose settlement is refused (the merchant locked): void its hold,
    the whole hold back to the customer and the charges owed forgiven; the allowance ends. The
    merchant hears ``allowance.voided``, the customer gets one SMS; audited. Left undecided, it
    is tried again later (the default): after TUMA_ALLOWANCE_SETTLE_RETRY_SECONDS, the wait doubling
    with each refusal up to TUMA_ALLOWANCE_SETTLE_RETRY_MAX_SECONDS."""
    from .payments.allowances.decisions import DecisionError, void_refused

    try:
        done = void_refused(db.session, allowance_id, operator=operator, reason=reason)
        db.session.commit()
    except DecisionError as exc:
        db.session.rollback()
        raise click.ClickException(f"refused: {exc}") from exc
    if done.already:
        click.echo(f"allowance {done.allowance_id} was voided already ({done.code}): nothing done")
        return
    click.echo(
        f"allowance {done.allowance_id} voided ({done.code}): {money(done.released)} back to the customer, "
        f"{money(done.forgiven)} for {done.charges} charge{'' if done.charges == 1 else 's'} forgiven; "
        f"it is {done.state}. The customer is told by SMS, the merchant by allowance.voided"
    )


def _decide(decision, code, operator, reason):
    """Run ``payments.review``'s ``decision`` (clear or refuse) in one transaction with its audit
    row; a clear refusal otherwise (nothing done)."""
    from .payments.review import ReviewError

    try:
        done = decision(db.session, code, operator=operator, reason=reason, via="cli")
        db.session.commit()
    except ReviewError as exc:
        db.session.rollback()
        raise click.ClickException(f"refused: {exc}") from exc
    return done


@review_cli.cli.command("clear")
@click.option("--code", required=True, help="the transaction code")
@click.option("--operator", required=True, help="your name, for the audit log")
@click.option("--reason", required=True, help="why, for the audit log (at most 200 characters)")
def review_clear(code, operator, reason):
    """Clear a transfer held for review: queued again, skipping the velocity rules (limits still
    apply); audited. ``review release`` is the same command under its earlier name."""
    from .payments import review

    done = _decide(review.clear, code, operator, reason)
    click.echo(
        f"{done.code} cleared ({money(done.amount)} {done.kind}, held by {done.rule}): queued for the worker"
    )


# Operators' scripts written before the vocabulary was settled still say ``review release``.
review_cli.cli.add_command(review_clear, "release")


@review_cli.cli.command("refuse")
@click.option("--code", required=True, help="the transaction code")
@click.option("--operator", required=True, help="your name, for the audit log")
@click.option("--reason", required=True, help="why, for the audit log (at most 200 characters)")
def review_refuse(code, operator, reason):
    """Refuse a held transfer: rejected, and the payer gets an SMS saying so; audited."""
    from .payments import review

    done = _decide(review.refuse, code, operator, reason)
    click.echo(f"{done.code} refused ({money(done.amount)} {done.kind}); the payer is told by SMS")
