"""``POST /sms/inbound``: a text from a person, answered by ``inbound.py`` (a receipt check, a
reversal request, or help). The same callback checks as delivery reports (``sms/callbacks.py``)
and as every webhook (``security.py``)."""

from flask import request
from sqlalchemy.exc import IntegrityError

from .. import phones
from ..extensions import db
from ..sms.callbacks import Invalid, field, plain
from . import bp, inbound


@bp.post("/sms/inbound")
def inbound_sms():
    """Answer a text from a person: a receipt check, a reversal request, or help."""
    at_id = field("id")
    raw_from = field("from", max_length=32)
    to = field("to", max_length=20)
    text = request.form.get("text", "").strip()
    if len(text) > 480:
        raise Invalid("field too long: text")
    if "\x00" in text:
        raise Invalid("malformed field: text")
    link_id = field("linkId", required=False)
    date = field("date", required=False, max_length=40)
    try:
        phone = phones.normalize(raw_from)
    except phones.InvalidPhone:
        raise Invalid("from is not a phone number") from None

    try:
        message = inbound.receive(
            db.session, at_id=at_id, phone=phone, to=to, text=text, link_id=link_id, date=date
        )
        db.session.commit()
    except IntegrityError:
        # The same id raced in twice: the other request recorded it and answers.
        db.session.rollback()
        message = None
    if message is None:
        return plain("already received")
    return plain("OK")  # the reply (and a reversal's hold) rang their workers at commit
