"""``GET /api/v1/balance``: the wallet's available balance."""

from flask import current_app

from ..extensions import db
from ..ledger.models import Account
from . import bp
from .endpoint import operation
from .keys import Scope
from .schemas import Balance


@bp.get("/balance")
@operation(scope=Scope.READ, ok={"HTTP_200": Balance}, tags=("wallet",), operation_id="getBalance")
def get_balance(caller, _data):
    """The wallet's balance

    ``available`` is what can be paid out now: posted credits less posted and held debits."""
    account = db.session.get(Account, caller.account_id)
    return Balance(
        available=account.available, held=account.debits_pending, currency=current_app.config["CURRENCY"]
    ), 200
