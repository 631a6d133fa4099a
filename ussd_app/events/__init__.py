"""Events for merchants' systems: an outbox of what happened, delivered as signed webhooks.

(Not ``sms/webhooks.py``: those are Africa's Talking's calls to us. These are our calls to
merchants.)

| module | what |
| --- | --- |
| ``models.py`` | the tables: events, webhook endpoints, deliveries; the event types |
| ``emit.py`` | writing events (and their deliveries) in the posting's transaction |
| ``delivery.py`` | the job's side: claim, POST signed, record, back off; resend |
| ``signing.py`` | the ``Tuma-Signature`` header |
| ``urls.py`` | calling a merchant's URL safely (https, public addresses only, pinned) |
| ``endpoints.py`` | a merchant's endpoint and secret (``PUT /api/v1/webhooks``) |
| ``validation.py`` | pay-bill validation: ask the merchant before a payment is accepted |
"""

from .emit import event_id, for_payment_request, for_requests
from .models import Delivery, DeliveryStatus, Event, EventType, WebhookEndpoint

__all__ = [
    "Delivery",
    "DeliveryStatus",
    "Event",
    "EventType",
    "WebhookEndpoint",
    "event_id",
    "for_payment_request",
    "for_requests",
]
