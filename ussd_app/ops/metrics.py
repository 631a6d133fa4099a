"""Prometheus metrics: counters and histograms kept by each process, and figures read from the
database and Redis when ``/metrics`` is scraped.

Under gunicorn (several workers) and with the rq worker beside it, set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory shared by them all before they start
(``make run`` does): every process writes its samples there and ``/metrics`` adds them up.
Without it, ``/metrics`` shows the one process that answers.

Figures that are the state of the system (transfers by kind and result, holds open, queue
depth, SMS by status) are read at scrape time from the database and Redis, the truth every
process shares, rather than kept as gauges in one process; the questions are the read
model's (``ussd_app/reports.py``), which the back office asks too.
"""

import os
from datetime import UTC

from flask import current_app
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from ..extensions import db
from ..money import MINOR_PER_MAJOR

USSD_REQUESTS = Counter(
    "tuma_ussd_requests",
    "USSD hops answered, by the screen shown and whether the session goes on (con) or ends (end)",
    ["screen", "outcome"],
)
HTTP_LATENCY = Histogram(
    "tuma_http_request_duration_seconds",
    "Time to answer a web request, by endpoint (ussd.ussd is the USSD webhook)",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
HTTP_REQUESTS = Counter("tuma_http_requests", "Web requests, by endpoint and status", ["endpoint", "status"])
JOBS = Counter("tuma_jobs", "Worker jobs run, by job and result (ok, error)", ["job", "result"])
JOB_DURATION = Histogram(
    "tuma_job_duration_seconds",
    "Time a worker job ran",
    ["job"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
JOB_WAIT = Histogram(
    "tuma_job_queue_wait_seconds",
    "Time a job waited in its queue before a worker started it",
    ["job"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class StateCollector:
    """Figures read from the database and Redis at scrape time (needs an app context)."""

    def collect(self):
        from .. import reports

        session = db.session
        # What every amount here is counted in: minor units of this currency (a dashboard over
        # several countries' services joins on it, never adds KES to TZS).
        info = GaugeMetricFamily(
            "tuma_country_info",
            "The country this service runs (TUMA_COUNTRY) and the currency of its minor units",
            labels=["country", "currency", "minor_per_major"],
        )
        info.add_metric(
            [current_app.config["COUNTRY"], current_app.config["CURRENCY"], str(MINOR_PER_MAJOR)], 1
        )
        yield info

        requests = GaugeMetricFamily(
            "tuma_transfer_requests",
            "Transfer requests, by kind, status and result",
            labels=["kind", "status", "result"],
        )
        for kind, status, result, count in reports.transfer_requests_by_state(session):
            requests.add_metric([kind, status, result or ""], count)
        yield requests

        holds = GaugeMetricFamily(
            "tuma_holds_open", "Pending transfers (escrow holds) not yet resolved, by code", labels=["code"]
        )
        held_amount = GaugeMetricFamily(
            "tuma_holds_open_amount_minor", "Money held by open holds, minor units, by code", labels=["code"]
        )
        for code, count, amount in reports.open_holds_by_code(session):
            holds.add_metric([code], count)
            held_amount.add_metric([code], amount)
        yield holds
        yield held_amount

        sms = GaugeMetricFamily("tuma_sms", "Outbox messages, by status", labels=["status"])
        for status, count in reports.sms_by_status(session).items():
            sms.add_metric([status], count)
        yield sms
        session.rollback()  # end the read transaction (SQLite holds the write lock in one)

        # The SMS gateway's circuit (sms/circuit.py): open while Africa's Talking fails every call.
        from ..sms import circuit

        state = circuit.read()
        down = GaugeMetricFamily(
            "tuma_sms_gateway_down",
            "1 while the SMS gateway (or our account) fails every call and senders hold off (sms/circuit.py)",
        )
        down.add_metric([], 1 if state is not None else 0)
        yield down
        since = GaugeMetricFamily(
            "tuma_sms_gateway_down_since_seconds",
            "When the SMS gateway was first seen down in this outage (Unix time; 0 when it is up)",
        )
        since.add_metric([], state.since.replace(tzinfo=UTC).timestamp() if state is not None else 0)
        yield since

        depth = GaugeMetricFamily("tuma_queue_depth", "Jobs waiting in each rq queue", labels=["queue"])
        failed = GaugeMetricFamily(
            "tuma_queue_failed_jobs", "Jobs in each queue's failed registry", labels=["queue"]
        )
        for queue in reports.queue_depths():
            depth.add_metric([queue["name"]], queue["waiting"])
            failed.add_metric([queue["name"]], queue["failed"])
        yield depth
        yield failed


def exposition() -> bytes:
    if multiprocess():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    state = CollectorRegistry(auto_describe=False)
    state.register(StateCollector())
    return generate_latest(registry) + generate_latest(state)


# Each metric's child for a set of label values, as ``labels()`` gives it (the same object every
# time: prometheus_client keeps them too), without its checks and lock on every request. The
# label values are few (endpoints, statuses, screens, con/end), so this stays small.
_children: dict = {}


def _child(metric, *values: str):
    child = _children.get((metric, values))
    if child is None:
        child = _children[(metric, values)] = metric.labels(*values)
    return child


def observe_request(endpoint: str, status: int, seconds: float) -> None:
    _child(HTTP_LATENCY, endpoint).observe(seconds)
    _child(HTTP_REQUESTS, endpoint, str(status)).inc()


def observe_ussd(screen: str, outcome: str) -> None:
    _child(USSD_REQUESTS, screen, outcome).inc()
