"""/metrics: Prometheus series for USSD hops, latency, transfers, holds, queues, jobs and SMS."""

import os
import subprocess
import sys
import textwrap

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from tests.helpers import fund
from tests.ussd_helpers import Phone
from tests.worker_helpers import ROOT
from ussd_app.extensions import db
from ussd_app.payments.models import TransferRequest
from worker.jobs import execute_transfers, send_sms


def samples(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    found = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(found, name, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_after_a_ussd_conversation(client, app, customer, second_customer):
    fund(customer.account_id, 500_000)
    before = samples(client)

    Phone(client, "0712000111").walk("1", "0712000222", "1000", "1", "8642")
    [request] = db.session.execute(select(TransferRequest)).scalars()
    execute_transfers(request.id)
    send_sms()
    after = samples(client)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("tuma_ussd_requests_total", screen="home.customer_menu", outcome="con") == 1
    assert grew("tuma_ussd_requests_total", screen="send_money.pin", outcome="con") == 1
    assert grew("tuma_ussd_requests_total", screen="send_money.done", outcome="end") == 1
    assert grew("tuma_http_request_duration_seconds_count", endpoint="ussd.ussd") == 6
    assert grew("tuma_http_request_duration_seconds_bucket", endpoint="ussd.ussd", le="+Inf") == 6
    assert value(after, "tuma_transfer_requests", kind="send", status="accepted", result="ok") == 1
    assert grew("tuma_jobs_total", job="execute_transfers", result="ok") == 1
    assert grew("tuma_job_duration_seconds_count", job="send_sms") == 1
    assert value(after, "tuma_sms", status="sent") == 2  # a receipt for each party
    for queue in ("transfers", "sms", "maintenance"):
        assert ("tuma_queue_depth", (("queue", queue),)) in after
    assert "# TYPE tuma_holds_open gauge" in client.get("/metrics").get_data(as_text=True)


def test_holds_open_are_counted_by_code(client, app):
    from tests.helpers import spec, wallets
    from ussd_app.ledger import TransferFlags, create_transfers

    a, b = wallets(2)
    fund(a, 10_000)
    [r] = create_transfers(
        db.session, [spec("hold-1", a, b, 2_500, flags=TransferFlags.PENDING, code="escrow_test")]
    )
    assert r.succeeded
    db.session.commit()
    found = samples(client)
    assert value(found, "tuma_holds_open", code="escrow_test") == 1
    assert value(found, "tuma_holds_open_amount_minor", code="escrow_test") == 2_500


def test_multiprocess_mode_adds_up_every_process(app, tmp_path):
    """Two processes (say two gunicorn workers) count hops; /metrics in either shows the sum."""
    script = textwrap.dedent(
        """
        import sys
        from ussd_app import create_app
        from ussd_app.ops import metrics
        metrics.observe_ussd("test.screen", "con")
        if sys.argv[1] == "serve":
            app = create_app({"TESTING": True})
            with app.app_context():
                print(app.test_client().get("/metrics").get_data(as_text=True))
                from ussd_app.extensions import db
                db.engine.dispose()
            app.extensions["redis"].close()
        """
    )
    env = dict(os.environ)
    env.update(
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=app.config["REDIS_URL"],
    )
    db.session.rollback()
    subprocess.run([sys.executable, "-c", script, "count"], cwd=ROOT, env=env, check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-c", script, "serve"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    assert 'tuma_ussd_requests_total{outcome="con",screen="test.screen"} 2.0' in out


def test_a_gunicorn_worker_exits_quietly_with_or_without_multiprocess_mode(tmp_path, monkeypatch):
    """``gunicorn -c python:ussd_app.ops.gunicorn_conf`` without PROMETHEUS_MULTIPROC_DIR (one
    process's own metrics): a worker's exit printed a TypeError traceback into the server's log
    (seen running gunicorn by hand for the outside fuzz). With the directory set, the dead
    worker's live gauges are dropped, as before."""
    from types import SimpleNamespace

    from ussd_app.ops import gunicorn_conf

    worker = SimpleNamespace(pid=424242)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    gunicorn_conf.child_exit(None, worker)  # no error
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    live = tmp_path / "gauge_liveall_424242.db"
    live.write_bytes(b"")
    kept = tmp_path / "counter_424242.db"
    kept.write_bytes(b"")
    gunicorn_conf.child_exit(None, worker)
    assert not live.exists() and kept.exists()
