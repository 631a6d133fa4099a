"""Every table, imported in one place so Alembic and ``create_app`` see the whole schema."""

from .admin.models import AuditEntry, Operator  # noqa: F401
from .api.idempotency import IdempotencyRecord  # noqa: F401
from .api.keys import ApiKey  # noqa: F401
from .events.models import Delivery, Event, WebhookEndpoint  # noqa: F401
from .ledger.models import Account, RejectedTransfer, Transfer  # noqa: F401
from .payments import reversals  # noqa: F401  (its index on transfer_requests)
from .payments.agent_withdrawals import WithdrawalApproval  # noqa: F401
from .payments.models import TransferRequest, TrustDeposit  # noqa: F401
from .payments.payment_requests import PaymentRequest  # noqa: F401
from .payments.standing_orders import StandingOrder, StandingOrderRun  # noqa: F401
from .payments.tips import TipDigest  # noqa: F401  (and its index on transfer_requests)
from .sms.outbox import OutboxMessage  # noqa: F401
from .sms_commands.inbound import InboundMessage  # noqa: F401
from .tariffs import TariffVersion  # noqa: F401
from .users import User  # noqa: F401
from .ussd.models import UssdEvent  # noqa: F401
