"""A second baseline: the least any USSD hop with a locked session in Redis does, under the
same gunicorn setup as the app and the bare route.

Africa's Talking keeps no state for us, so every hop must read the session and write it back,
and a hop must not run beside another hop of the same session (a gateway's retry): two Redis
round trips at least, one to take the lock and read, one to write and release. This route
does only that and what every webhook does: Flask's request, the form read, one JSON log line,
a lock-and-read script over seven keys and a write-and-release script (the shapes of
``ussd_app/ussd/sessions.py``'s two scripts, written here with redis-py alone so that the
baseline does not move when the app's code does), and a fixed CON screen. No menu, no guard,
no database, no metrics or tracing.

The bare route (``bench/bare_app.py``) is Flask alone; the app's menu hops can be no faster
than this floor, whatever the code does, on the same machine.
"""

import json
import logging
import os
import secrets
import sys

import redis
from flask import Flask, Response, request

app = Flask(__name__)
_redis = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))

# Count the caller's hops, take the session's lock, read what a hop reads.
_LOCK = _redis.register_script(
    """
local count = redis.call('incr', KEYS[6])
redis.call('expire', KEYS[6], 60)
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', 5000) then return {count, 0} end
return {count, 1, redis.call('get', KEYS[2]), redis.call('get', KEYS[3]),
        redis.call('get', KEYS[4]), redis.call('get', KEYS[5]), redis.call('get', KEYS[7])}
"""
)
# Write the session, release the lock if it is still ours.
_SAVE = _redis.register_script(
    """
redis.call('set', KEYS[2], ARGV[2], 'EX', 180)
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
)


class _Json(logging.Formatter):
    def format(self, record):
        return json.dumps({"level": record.levelname, "logger": record.name, "message": record.getMessage()})


_handler = logging.StreamHandler(sys.stdout)
_handler.setFormatter(_Json())
log = logging.getLogger("floor")
log.addHandler(_handler)
log.setLevel(logging.INFO)
log.propagate = False


@app.post("/ussd")
def ussd():
    form = request.form
    session_id, phone, text = form["sessionId"], form["phoneNumber"], form.get("text", "")
    log.info("ussd hop session=%s phone=%s", session_id[:40], phone[-4:])
    token = secrets.token_hex(8)
    key = f"floor:{session_id}"
    _LOCK(
        keys=[
            f"{key}:lock",
            key,
            f"{key}:resume",
            "floor:stamp",
            f"floor:caller:{phone}",
            f"floor:rate:{phone}",
            f"{key}:t",
        ],
        args=[token],
    )
    _SAVE(keys=[f"{key}:lock", key], args=[token, json.dumps({"text": text, "state": "home"})])
    return Response("CON Tuma\n1. Send money\n2. My account\n3. My approvals", mimetype="text/plain")
