"""Operations: ``/healthz`` (database and Redis), ``/metrics`` (Prometheus), request ids and
JSON logs (``ussd_app.logging_setup``, ``ops.tracing``)."""

import logging
import time

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from .. import logging_setup
from ..extensions import db
from . import metrics, tracing

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)


def _check_database() -> dict:
    started = time.perf_counter()
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure is "unhealthy", never a 500
        log.warning("healthz: database unreachable: %s", type(exc).__name__)
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def _check_redis() -> dict:
    from ..queues import get_redis

    started = time.perf_counter()
    try:
        get_redis().ping()
    except Exception as exc:
        log.warning("healthz: redis unreachable: %s", type(exc).__name__)
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


@bp.get("/healthz")
def healthz():
    """200 and ``{"status": "ok"}`` when the database and Redis answer; 503 and which failed."""
    checks = {"database": _check_database(), "redis": _check_redis()}
    ok = all(c["ok"] for c in checks.values())
    return jsonify({"status": "ok" if ok else "fail", "checks": checks}), 200 if ok else 503


@bp.get("/metrics")
def metrics_view():
    try:
        body = metrics.exposition()
    except Exception as exc:  # a scrape that cannot read the state says so, with a 503
        db.session.rollback()
        log.warning("metrics: could not read the state: %s", type(exc).__name__)
        return Response(f"# metrics unavailable: {type(exc).__name__}\n", 503, mimetype="text/plain")
    return Response(body, mimetype="text/plain; version=0.0.4; charset=utf-8")


def init_app(app) -> None:
    if not app.testing:  # tests keep pytest's log capture as it is
        logging_setup.configure()
    tracing.init_app(app)
    app.register_blueprint(bp)
