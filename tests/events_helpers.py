"""A merchant's system for the webhook tests: the local receiver (devtools.receiver) serving
from a thread, and a signature check written here from hmac and hashlib alone, independent
of ussd_app.events.signing."""

import hashlib
import hmac

from devtools.receiver import Receiver, serve_in_thread
from ussd_app.events.endpoints import configure
from ussd_app.extensions import db


def running_receiver():
    """For a module's ``receiver`` fixture: ``yield from running_receiver()``."""
    running = serve_in_thread(Receiver())
    try:
        yield running
    finally:
        running.stop()


def endpoint_for(account_id: int, receiver, name: str = "shop", **fields):
    """The merchant's endpoint pointed at ``receiver``; committed. Its secret."""
    configured = configure(db.session, account_id, url=f"{receiver.url}/hooks/{name}", **fields)
    db.session.commit()
    receiver.receiver.secret = configured.secret
    return configured.secret


def signed_by(secret: str, body: str, header: str) -> bool:
    """Check ``Tuma-Signature: t=...,v1=...`` as a merchant would, from the documentation."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(
        secret.encode("utf-8"), (fields["t"] + "." + body).encode("utf-8"), hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])
