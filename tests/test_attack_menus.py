"""An outsider's attack on the per-hop speed cuts of the ``menus`` branch (``ussd_app.Tuma``'s
remembered ``ensure_sync``, lean log records and the cheaper trace id, metrics' kept children,
the guard's one view look-up, ``find_by_phone``'s prebuilt statement, ``hmac.digest`` for the
repeat check). Each test is a way the cut could have changed what a person or an operator sees;
they pass: the cuts hold (see the report of the ``atk-menus`` branch)."""

import gc
import hashlib
import hmac
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import types
import weakref

import pytest
from flask import after_this_request

from tests.gateway_helpers import GATEWAYS, GatewayPhone
from tests.helpers import fund
from tests.ussd_helpers import CUSTOMER, SECOND_CUSTOMER, Phone, person
from tests.worker_helpers import ROOT
from ussd_app import Tuma
from ussd_app.extensions import db
from ussd_app.logging_setup import new_trace_id
from ussd_app.users import find_by_phone
from ussd_app.ussd import sessions

PIN = "8642"  # the cast's customer's
# The PIN on its own: not inside a longer run of digits or hex (ids, digests, clocks).
LEAK = re.compile(rf"(?<![0-9a-fA-F]){PIN}(?![0-9a-fA-F])")


# -- Tuma.ensure_sync ----------------------------------------------------------------------


def _template():
    return NUMBER  # noqa: F821  # each copy's own globals say which (see _module_functions)


def _module_functions(count: int, start: int) -> list:
    """``count`` distinct plain functions whose qualified names carry no ``<locals>`` (as a
    module's own functions), each answering its own number: the kind the table keeps."""
    code = _template.__code__
    return [types.FunctionType(code, {"NUMBER": n}) for n in range(start, start + count)]


def test_ensure_sync_gives_every_function_itself_when_functions_come_and_go():
    """Keyed by the function, which the table holds: a function freed and another made at the
    same address (id reuse) never gets the freed one's entry; past 4,096 nothing more is kept
    and every function still gets itself."""
    app = Tuma("attack")
    freed_ids: set = set()  # addresses of functions the table did not keep, once freed
    reused = 0
    for round_ in range(3):
        functions = _module_functions(3_000, round_ * 3_000)
        for f in functions:
            reused += id(f) in freed_ids
            assert app.ensure_sync(f)() == f()  # the function itself, not another's
            assert app.ensure_sync(f) is f
        freed_ids |= {id(f) for f in functions if f not in app._sync}
        del functions, f
        gc.collect()
    assert reused > 0  # addresses were given again: the case this test is about
    assert len(app._sync) == 4_096
    # A function the table keeps cannot be freed, so its address cannot be given to another.
    kept = next(iter(app._sync))
    assert app._sync[kept] is kept


def test_a_per_request_closure_runs_once_and_is_not_kept():
    """``after_this_request`` takes a closure made per request (here holding what a request
    read): each request runs its own, and none is kept by the table after its request."""
    app = Tuma("attack")
    refs = []

    class Secret:
        def __init__(self, value):
            self.value = value

    @app.get("/x/<value>")
    def view(value):
        secret = Secret(value)

        @after_this_request
        def tag(response):
            response.headers["X-Seen"] = secret.value
            return response

        refs.append(weakref.ref(secret))
        return "ok"

    client = app.test_client()
    assert [client.get(f"/x/{n}").headers["X-Seen"] for n in ("1111", "2222", "3333")] == [
        "1111",
        "2222",
        "3333",
    ]
    gc.collect()
    assert all(ref() is None for ref in refs)
    assert view not in app._sync and not any("<locals>" in f.__qualname__ for f in app._sync)


def test_an_async_view_is_refused_as_flask_refuses_it_every_time():
    """Without Flask's async extra (asgiref is not installed), an async view is Flask's own
    RuntimeError on every request, not a coroutine handed back as a response once remembered."""
    app = Tuma("attack")
    app.testing = True  # the error raised, not a 500 page

    @app.get("/a")
    async def view():  # pragma: no cover - never awaited
        return "never"

    client = app.test_client()
    for _ in range(2):
        with pytest.raises(RuntimeError, match="async"):
            client.get("/a")
    assert view not in app._sync


# -- trace ids ---------------------------------------------------------------------------


def test_trace_ids_differ_between_a_process_and_its_forked_child():
    """gunicorn forks its workers from one process: the ids come from the kernel each time
    (os.urandom), so a parent and child never mint the same ones."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write its ids and leave at once
        try:
            os.write(writer, "\n".join(new_trace_id() for _ in range(500)).encode())
        finally:
            os._exit(0)
    os.close(writer)
    ours = {new_trace_id() for _ in range(500)}
    chunks = []
    while chunk := os.read(reader, 65536):
        chunks.append(chunk)
    os.close(reader)
    os.waitpid(pid, 0)
    theirs = set(b"".join(chunks).decode().split("\n"))
    assert len(ours) == len(theirs) == 500 and not ours & theirs
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in ours | theirs)


# -- metrics -----------------------------------------------------------------------------


def test_kept_metric_children_count_per_label_in_workers_forked_after_they_were_made(tmp_path):
    """gunicorn --preload: the children are made (and kept) in the parent, then workers fork
    and count on them; each worker's counts land in its own file and /metrics adds them up,
    per label values."""
    script = textwrap.dedent(
        """
        import os
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector
        from ussd_app.ops import metrics
        metrics.observe_ussd("a.screen", "con")
        metrics.observe_request("ussd.ussd", 200, 0.01)
        workers = []
        for n in range(2):
            pid = os.fork()
            if pid == 0:
                for _ in range(3):
                    metrics.observe_ussd("a.screen", "con")
                metrics.observe_ussd("a.screen", "end")
                metrics.observe_request("ussd.ussd", 200 + n, 0.01)
                os._exit(0)
            workers.append(pid)
        for pid in workers:
            os.waitpid(pid, 0)
        metrics.observe_ussd("a.screen", "con")
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        print(generate_latest(registry).decode())
        """
    )
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    assert 'tuma_ussd_requests_total{outcome="con",screen="a.screen"} 8.0' in out
    assert 'tuma_ussd_requests_total{outcome="end",screen="a.screen"} 2.0' in out
    assert 'tuma_http_requests_total{endpoint="ussd.ussd",status="200"} 2.0' in out
    assert 'tuma_http_requests_total{endpoint="ussd.ussd",status="201"} 1.0' in out


# -- no PIN in a log line, through every gateway -------------------------------------------


@pytest.fixture
def juma(customer, second_customer):
    fund(customer.account_id, 500_000)
    return customer


def _leaks(caplog) -> list[str]:
    found = []
    for record in caplog.records:
        shown = [record.getMessage()]
        shown += [str(v) for k, v in vars(record).items() if k not in ("trace_id", "msg", "args", "created")]
        found += [text for text in shown if LEAK.search(text)]
    return found


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_no_pin_is_logged_through_a_gateway_shortcut_pin_hop_or_failure(client, juma, caplog, gateway):
    caplog.set_level(logging.DEBUG)
    phone = GatewayPhone(client, gateway)
    assert phone.dial(f"*384*7*1*0712000222*50*1*{PIN}#").startswith("CON ")
    assert phone.send("1").startswith("CON ")
    assert phone.send(PIN).startswith("END Sending KES 50.00")
    # A hop that fails inside (a lone surrogate cannot be written to Redis): type and frames only.
    broken = GatewayPhone(client, gateway)
    doc = broken._request("begin", f"*384*7*1*0712000222*50*1*{PIN}\ud800#")
    response = client.post(f"/ussd/{gateway}", json=doc)
    assert response.status_code == 200
    assert any(r.levelno >= logging.WARNING for r in caplog.records)
    assert any("ussd hop" in r.getMessage() for r in caplog.records)
    assert _leaks(caplog) == []


def test_no_pin_is_logged_by_an_africas_talking_shortcut_with_its_hash(client, juma, caplog):
    caplog.set_level(logging.DEBUG)
    phone = Phone(client, "0712000111")
    dialled = f"1*0712000222*50*1*{PIN}#"
    assert phone.post(dialled).startswith("CON ")
    phone.inputs = dialled.split("*")  # AT joins every input so far
    assert phone.send("1").startswith("CON ")
    assert phone.send(PIN).startswith("END Sending KES 50.00")
    assert any("ussd shortcut" in r.getMessage() for r in caplog.records)
    assert _leaks(caplog) == []


# -- find_by_phone's one statement ---------------------------------------------------------


def test_find_by_phone_binds_each_callers_number_under_threads_and_after_a_number_moves(backend_app):
    app = backend_app
    customer, second_customer = person(**CUSTOMER), person(**SECOND_CUSTOMER)
    numbers = {"+254712000111": customer.id, "+254712000222": second_customer.id, "+254712999999": None}
    db.session.rollback()  # (reading the ids began a transaction: SQLite's write lock)
    wrong: list = []

    def look(number: str) -> None:
        with app.app_context():
            try:
                for _ in range(40):
                    user = find_by_phone(db.session, number)
                    got = user.id if user is not None else None
                    if got != numbers[number] or (user is not None and user.phone != number):
                        wrong.append((number, got))
                    db.session.rollback()  # SQLite: a transaction takes the write lock
            finally:
                db.session.remove()

    threads = [threading.Thread(target=look, args=(n,)) for n in numbers for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert wrong == []

    # The number moves: the old one finds nobody, the new one its holder.
    moved = db.session.get(type(customer), customer.id)
    moved.phone = "+254712000444"
    db.session.commit()
    assert find_by_phone(db.session, "+254712000111") is None
    assert find_by_phone(db.session, "+254712000444").id == customer.id
    assert find_by_phone(db.session, "+254712000222").id == second_customer.id


# -- the repeat check's digest -------------------------------------------------------------


def test_a_repeat_stored_by_mains_digest_is_still_recognised(app, client, juma, redis):
    """A session stored before the deploy keeps main's ``hmac.new(...).hexdigest()``; the
    same request again after it gets the stored answer and runs nothing."""
    key = app.config["SECRET_KEY"].encode()
    for session_id, text in (("s", ""), ("ATUid_1", f"1*0712000222*50*1*{PIN}"), ("é", "ñ\x00*")):
        mains = hmac.new(key, f"{session_id}\x00{text}".encode(), hashlib.sha256).hexdigest()
        assert sessions.text_digest(session_id, text) == mains
    phone = Phone(client, "0712000111")
    phone.walk("1", "0712000222")
    stored = sessions.load(phone.session_id)
    text = "1*0712000222"
    assert (
        stored.last_text
        == hmac.new(key, f"{phone.session_id}\x00{text}".encode(), hashlib.sha256).hexdigest()
    )
    again = phone.post(text)
    assert again == stored.last_reply
    assert sessions.load(phone.session_id).conversation.state == stored.conversation.state
