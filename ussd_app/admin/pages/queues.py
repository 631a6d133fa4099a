"""Queues and workers (``/admin/queues``): depth, failed jobs (requeued by hand) and the rq
workers alive."""

from flask import abort, flash, redirect, render_template, url_for

from ... import reports
from ...extensions import db
from ...queues import ALL_QUEUES, get_queue
from .. import bp, login_required
from .common import audit


@bp.get("/queues")
@login_required
def queues():
    failed = []
    for name in ALL_QUEUES:
        queue = get_queue(name)
        for job_id in queue.failed_job_registry.get_job_ids(0, 19):
            job = queue.fetch_job(job_id)
            if job is None:
                continue
            last = (job.exc_info or "").strip().splitlines()[-1:] or [""]
            failed.append(
                {
                    "queue": name,
                    "id": job.id,
                    "func": job.func_name,
                    "ended": job.ended_at,
                    "error": last[0][:200],
                }
            )
    return render_template(
        "admin/queues.html", queues=reports.queue_depths(detail=True), failed=failed, workers=_workers()
    )


def _workers() -> list[dict]:
    """The rq workers registered in Redis (each refreshes its key while alive)."""
    from rq import Worker

    from ...queues import get_redis

    found = []
    for worker in Worker.all(connection=get_redis()):
        job = worker.get_current_job_id()
        found.append(
            {
                "name": worker.name,
                "queues": ", ".join(worker.queue_names()),
                "state": worker.get_state(),
                "job": job or "",
                "seen": worker.last_heartbeat,
                "done": worker.successful_job_count,
                "failed": worker.failed_job_count,
            }
        )
    return sorted(found, key=lambda w: w["name"])


@bp.post("/queues/<name>/requeue/<job_id>")
@login_required
def requeue(name, job_id):
    if name not in ALL_QUEUES:
        abort(404)
    try:
        get_queue(name).failed_job_registry.requeue(job_id[:100])
    except Exception as exc:  # the job is gone or not failed any more
        flash(f"Could not requeue {job_id[:100]}: {type(exc).__name__}", "error")
        return redirect(url_for("admin.queues"))
    audit("job.requeue", job_id[:100], queue=name)
    db.session.commit()
    flash(f"Requeued {job_id[:100]}.", "ok")
    return redirect(url_for("admin.queues"))
