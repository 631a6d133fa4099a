"""Gunicorn settings for Prometheus multiprocess mode (``gunicorn -c python:ussd_app.ops.gunicorn_conf``):
a worker that exits has its live gauges dropped from /metrics. Without
``PROMETHEUS_MULTIPROC_DIR`` (one process's own metrics) there is nothing to drop: a worker's
exit must not print a traceback into the server's log."""


def child_exit(server, worker):
    from prometheus_client import multiprocess

    from .metrics import multiprocess as multiprocess_mode

    if multiprocess_mode():
        multiprocess.mark_process_dead(worker.pid)
