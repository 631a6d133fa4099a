"""What people are told has one home (issue 16 item 4): every SMS is worded in
``ussd_app/messages/``, and the menus never write outbox rows themselves."""

import pathlib

APP = pathlib.Path(__file__).resolve().parent.parent / "ussd_app"


def _sources(folder: pathlib.Path):
    return [(p, p.read_text()) for p in sorted(folder.rglob("*.py"))]


def test_only_messages_words_an_sms():
    outside = [
        str(p.relative_to(APP))
        for p, text in _sources(APP)
        if 'domain="sms"' in text and "messages" not in p.relative_to(APP).parts
    ]
    assert outside == []


def test_the_menus_write_no_outbox_rows():
    writers = [
        str(p.relative_to(APP))
        for p, text in _sources(APP / "ussd")
        if "add_sms" in text or "sms.outbox" in text
    ]
    assert writers == []
