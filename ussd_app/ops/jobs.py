"""Every rq job, observed: counted, timed, its wait in the queue timed (``metrics``), and its
log lines bound to the request id that asked for it (``tracing``). Its own module so that
neither of those two imports the other's caller."""

import functools
import time

from rq import get_current_job

from ..clock import utcnow
from ..logging_setup import bound
from . import tracing
from .metrics import JOB_DURATION, JOB_WAIT, JOBS


def observe_job(func):
    """Wrap an rq job function: count it, time it, and time its wait in the queue. Also binds
    the log lines it writes to the trace id of the web request that asked for it (``ops.tracing``)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return _observed(func.__name__, get_current_job(), func, args, kwargs)

    return wrapper


def observe_in_place(name: str, job, func, *args, **kwargs):
    """``func(*args, **kwargs)``: the work of the queued ``job`` (taken off its queue), done by
    the job running now in its place (``worker.jobs.send_receipts_now``), observed as ``job``
    would have been: counted and timed under ``name``, its wait from its enqueueing to now."""
    return _observed(name, job, func, args, kwargs)


def _observed(name: str, job, func, args, kwargs):
    if job is not None and job.enqueued_at is not None:
        started = _naive(job.started_at or utcnow())
        JOB_WAIT.labels(name).observe(max(0.0, (started - _naive(job.enqueued_at)).total_seconds()))
    trace_id = tracing.job_trace_id(job, args)
    start = time.perf_counter()
    result = "error"
    try:
        with bound(trace_id=trace_id):
            value = func(*args, **kwargs)
        result = "ok"
        return value
    finally:
        JOB_DURATION.labels(name).observe(time.perf_counter() - start)
        JOBS.labels(name, result).inc()


def _naive(moment):
    return moment.replace(tzinfo=None) if moment.tzinfo else moment
