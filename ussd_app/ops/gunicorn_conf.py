"""Gunicorn settings for Prometheus multiprocess mode (``gunicorn -c python:ussd_app.ops.gunicorn_conf``):
a worker that exits has its live gauges dropped from /metrics."""


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
