"""``make run``: the whole service on one machine, on the embedded default.

Starts (when REDIS_URL is unset) the embedded redis-server, migrates, seeds the demo, then runs
the web app under gunicorn and one worker, and stops them all on Ctrl-C.
"""

import os
import signal
import subprocess
import sys

from . import create_app
from .queues import connect


def _stop(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    port = os.environ.get("PORT", "8000")
    app = create_app()
    env = dict(os.environ)
    # Keep one handle on the embedded server for the life of this process, and hand its
    # socket to the children so they all share it.
    redis = connect(app)
    if not app.config.get("REDIS_URL"):
        env["REDIS_URL"] = f"unix://{redis.socket_file}"
    python = sys.executable
    flask = [python, "-m", "flask", "--app", "wsgi"]
    subprocess.run([*flask, "db", "upgrade"], check=True, env=env)
    subprocess.run([*flask, "demo", "seed"], check=True, env=env)
    children = [
        subprocess.Popen([python, "-m", "worker"], env=env),
        subprocess.Popen(
            [python, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "wsgi:app"],
            env=env,
        ),
    ]
    print(f"Tuma is running: POST http://127.0.0.1:{port}/ussd  (Ctrl-C stops it)", flush=True)
    try:
        for child in children:
            child.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
