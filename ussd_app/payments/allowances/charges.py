"""Charging: each charge is a tab line, checked under the allowance's row lock against what
is left of the period and against max_charge; no ledger posting, no SMS. Nothing here
commits."""

from datetime import datetime, timedelta

from sqlalchemy import select, update

from ...clock import utcnow
from ...database import among, insert_rows, is_postgres
from .records import ID_LIMIT, Allowance, AllowanceCharge, ChargeOutcome, Refusal, State


def _locked(session, allowance_id: str, merchant_account_id: int) -> Allowance | None:
    """The merchant's allowance's row, locked until the transaction ends (PostgreSQL: FOR
    UPDATE; SQLite's transactions hold the database from their first statement). Another
    merchant's id finds nothing and locks nothing: it neither waits behind the real merchant's
    charges (a timing oracle that the id exists) nor holds them up."""
    if len(allowance_id) > ID_LIMIT:
        return None
    query = (
        select(Allowance)
        .where(Allowance.id == allowance_id, Allowance.merchant_account_id == merchant_account_id)
        .execution_options(populate_existing=True)
    )
    if is_postgres(session):
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def charge_many(
    session,
    allowance_id: str,
    merchant_account_id: int,
    charges: list[tuple[int, str | None, str]],
    now: datetime | None = None,
) -> list[ChargeOutcome]:
    """Take ``charges`` = [(amount, reference, charge id)] in order against the allowance, in
    the caller's transaction: each taken one is a tab line, durable at the commit; each refused
    one says why. A charge id already taken answers as it was taken (a retry)."""
    now = now or utcnow()
    allowance = _locked(session, allowance_id, merchant_account_id)
    if allowance is None:
        return [
            ChargeOutcome(cid, amount, Refusal.NOT_FOUND.value, 0, 0, 0, ref) for amount, ref, cid in charges
        ]
    ids = [cid for _, _, cid in charges]
    earlier = {
        c.id: c
        for c in session.execute(
            select(AllowanceCharge).where(among(session, AllowanceCharge.id, ids))
        ).scalars()
    }
    charged, count = allowance.charged, allowance.charge_count
    # Active with no hold only when nothing is left of the period: the limit refuses those.
    # Not past its own end (ends_at) either: it is still ``active`` in the table until the
    # maintenance job settles it, but the customer agreed to charges until then, not after.
    open_ = (
        allowance.state == State.ACTIVE.value
        and allowance.period_ends_at is not None
        and now < allowance.period_ends_at
        and (allowance.ends_at is None or now < allowance.ends_at)
    )
    outcomes, lines, taken, seen = [], [], 0, set()
    for amount, reference, cid in charges:
        code = None
        if cid in earlier or cid in seen:
            first = earlier.get(cid)
            if first is not None and (first.allowance_id != allowance.id or first.amount != amount):
                code = Refusal.ID_REUSED.value
            else:  # taken before (a retry), or twice in this call: one tab line
                at = first.created_at if first is not None else now
                outcomes.append(
                    ChargeOutcome(
                        cid,
                        amount,
                        None,
                        max(0, allowance.limit_amount - charged),
                        charged,
                        count,
                        reference,
                        at,
                    )
                )
                continue
        elif not open_:
            code = Refusal.NOT_ACTIVE.value
        elif amount > allowance.max_charge:
            code = Refusal.EXCEEDS_MAX_CHARGE.value
        elif charged + amount > allowance.limit_amount:
            code = Refusal.EXCEEDS_LEFT.value
        if code is not None:
            outcomes.append(
                ChargeOutcome(
                    cid, amount, code, max(0, allowance.limit_amount - charged), charged, count, reference
                )
            )
            continue
        charged, count, taken = charged + amount, count + 1, taken + amount
        seen.add(cid)
        lines.append(
            {
                "id": cid,
                "allowance_id": allowance.id,
                "period_no": allowance.period_no,
                "amount": amount,
                "reference": reference,
                # Each its own microsecond, so the latest-first pages keep the order sent.
                "created_at": now + timedelta(microseconds=len(lines)),
            }
        )
        outcomes.append(
            ChargeOutcome(cid, amount, None, allowance.limit_amount - charged, charged, count, reference, now)
        )
    if lines:
        session.execute(
            update(Allowance)
            .where(Allowance.id == allowance.id)
            .values(
                charged=Allowance.charged + taken,
                charge_count=Allowance.charge_count + len(lines),
                tab_amount=Allowance.tab_amount + taken,
                tab_count=Allowance.tab_count + len(lines),
            )
            .execution_options(synchronize_session=False)
        )
        insert_rows(session, AllowanceCharge.__table__, lines)
    return outcomes


def charge(
    session,
    allowance_id: str,
    merchant_account_id: int,
    amount: int,
    reference: str | None,
    *,
    charge_id: str,
) -> ChargeOutcome:
    """One charge (``charge_many`` of one)."""
    return charge_many(session, allowance_id, merchant_account_id, [(amount, reference, charge_id)])[0]
