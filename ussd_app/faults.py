"""Fault injection points, for the crash and chaos tests; inert unless configured.

``TUMA_FAULTS`` names checkpoints (comma-separated). A process reaching a named checkpoint
writes ``tuma:fault:<name>`` = its pid to Redis and then blocks forever, so a test can kill it
at exactly that point (for example with SIGKILL in the middle of a batch, before commit).
"""

import os
import threading

from flask import current_app

from .queues import get_redis


def checkpoint(name: str) -> None:
    faults = current_app.config.get("FAULTS") or ()
    if name not in faults:
        return
    get_redis().set(f"tuma:fault:{name}", os.getpid())
    threading.Event().wait()  # until killed
