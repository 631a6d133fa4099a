"""Disputed protected purchases on the back office's disputes page: approving refunds the buyer,
refusing pays the merchant, each once, with its audit row and both SMS on their way."""

import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import select

from tests.admin_helpers import login, operator, post
from tests.escrow_helpers import FUNDS, PIN, buy_protected, funded_customer, ledger_ok, merchant, sms_to
from tests.ussd_helpers import Phone, available
from tests.worker_helpers import ROOT
from ussd_app.admin.models import AuditEntry
from ussd_app.extensions import db
from ussd_app.payments.models import HoldState, RequestKind, TransferRequest
from ussd_app.queues import SMS_QUEUE, get_queue
from ussd_app.sms import sender
from ussd_app.tariffs import payee_fee


@pytest.fixture
def signed_in(client):
    operator()
    login(client)
    return client


@pytest.fixture
def disputed(client):
    """Juma bought KES 300.00 from Mama Mboga with protection, then declined the delivery."""
    juma, till = funded_customer(), merchant()
    buy_protected(client)
    assert (
        Phone(client, "0712000111").walk("3", "1", "2", PIN)
        == "END Problem reported. The money stays held until Tuma decides. You will get an SMS."
    )
    hold = db.session.execute(
        select(TransferRequest).where(TransferRequest.kind == RequestKind.PROTECTED_PURCHASE.value)
    ).scalar_one()
    assert hold.hold_state == HoldState.DISPUTED.value
    return hold, juma, till


def test_a_disputed_purchase_waits_on_the_page_and_approving_refunds_the_buyer(signed_in, disputed, redis):
    hold, juma, till = disputed
    page = signed_in.get("/admin/disputes").get_data(as_text=True)
    assert "Juma Otieno +254712000111 disputes a protected purchase from Mama Mboga +254700000002" in page
    assert "KES 300.00" in page and f'href="/admin/transfers/{hold.code}"' in page
    assert f'action="/admin/disputes/protected/{hold.code}"' in page
    redis.delete(sender.DOORBELL_KEY)
    get_queue(SMS_QUEUE).empty()

    response = post(
        signed_in, f"/admin/disputes/protected/{hold.code}", {"decision": "approve", "note": "no delivery"}
    )
    assert response.status_code == 302
    page = signed_in.get("/admin/disputes").get_data(as_text=True)
    assert f"{hold.code}: dispute approved, refunded to the buyer" in page
    assert "Nothing awaits a decision." in page
    assert available(juma) == FUNDS and available(till) == 0
    db.session.expire_all()
    assert db.session.get(TransferRequest, hold.id).hold_state == HoldState.VOIDED.value
    assert "Dispute decided for you: KES 300.00 is back in your account" in sms_to("+254712000111")[-1]
    assert get_queue(SMS_QUEUE).count == 1  # the SMS sender was rung for the two receipts
    [entry] = db.session.execute(select(AuditEntry).where(AuditEntry.action == "decision.approve")).scalars()
    assert entry.target == f"protected:{hold.code}" and entry.details["note"] == "no delivery"
    # The transfer's trail shows the void and the operator's decision.
    trail = signed_in.get(f"/admin/transfers/{hold.code}").get_data(as_text=True)
    assert "<td>void</td>" in trail and "decision.approve" in trail

    # Deciding again is refused with the reason, and changes nothing.
    post(signed_in, f"/admin/disputes/protected/{hold.code}", {"decision": "refuse"})
    assert "is not in dispute (it is voided)" in signed_in.get("/admin/disputes").get_data(as_text=True)
    assert not db.session.execute(select(AuditEntry).where(AuditEntry.action == "decision.refuse")).all()
    assert available(till) == 0
    ledger_ok()


def test_refusing_the_dispute_pays_the_merchant(signed_in, disputed):
    hold, juma, till = disputed
    post(signed_in, f"/admin/disputes/protected/{hold.code}", {"decision": "refuse"})
    assert "dispute refused, paid to the merchant" in signed_in.get("/admin/disputes").get_data(as_text=True)
    # The merchant is paid, less their own capped fee (quoted as for buying goods at the till).
    assert available(till) == 300_00 - payee_fee("buy_goods", 300_00)
    assert available(juma) == FUNDS - 300_00
    assert "KES 300.00 from JUMA OTIENO +254712000111 released to you" in sms_to("+254700000002")[-1]
    # The buyer is told the dispute went against them (not only that the money was released).
    assert sms_to("+254712000111")[-1] == (
        f"{hold.code} Dispute decided for the merchant: the KES 300.00 held for MAMA MBOGA is paid to "
        "them. Call customer care if you disagree."
    )
    ledger_ok()


def test_an_unknown_code_is_a_reason_not_a_500(signed_in, app):
    post(signed_in, "/admin/disputes/protected/NOSUCHCODE", {"decision": "approve"})
    assert "no protected purchase with code NOSUCHCODE" in signed_in.get("/admin/disputes").get_data(
        as_text=True
    )


def test_the_back_office_wires_its_decision_sources_and_the_menus_do_not_import_it():
    """Issue 16 item 7: the disputes page's sources (reversals, protected purchases, allowances
    whose settlement is refused) are registered by the back office's ``init_app``; loading the
    USSD menus loads no back office."""
    script = textwrap.dedent(
        """
        import sys
        import ussd_app.ussd.flows, ussd_app.ussd.views
        assert not [m for m in sys.modules if m.startswith("ussd_app.admin")], "menus import admin"
        from ussd_app import create_app
        from ussd_app.admin import seams
        create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
        print(" ".join(seams.decision_sources()))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, check=True, timeout=60, capture_output=True, text=True
    ).stdout
    assert out.split() == ["reversals", "protected", "allowances"]
