"""``make run``: the whole service on one machine, on the embedded default.

Starts (when REDIS_URL is unset) the embedded redis-server, migrates, seeds the demo, then runs
the web app under gunicorn and one worker, and stops them all on Ctrl-C.

It turns the phone simulator on (``/simulator/``) and Prometheus multiprocess mode (samples
under ``instance/prometheus``), and creates the demo operator of the back office
(``flask operators demo``: demo@tuma.example, password "demo operator passphrase").

Unless AT_API_URL is set, it also runs the local Africa's Talking gateway
(``ussd_app.sms.gateway``, port ``AT_GATEWAY_PORT``, default 8025) and points the web app and
the worker at it, so receipts are recorded there (``GET /messages?phone=...``) instead of sent.
"""

import os
import shutil
import signal
import subprocess  # nosec B404  # starts its own fixed commands, never input
import sys

from . import create_app
from .admin.cli import DEMO_OPERATOR
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
    # The phone simulator (/simulator/) is on for `make run`, off unless asked for elsewhere.
    env.setdefault("TUMA_SIMULATOR_ENABLED", "1")
    # Prometheus multiprocess mode: gunicorn's workers and the rq worker all write their samples
    # here, and /metrics adds them up. Emptied at every start (samples of dead processes).
    metrics_dir = env.setdefault("PROMETHEUS_MULTIPROC_DIR", os.path.join(app.instance_path, "prometheus"))
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)
    python = sys.executable
    flask = [python, "-m", "flask", "--app", "wsgi"]
    gateway_port = None
    if not env.get("AT_API_URL"):
        gateway_port = env.get("AT_GATEWAY_PORT", "8025")
        env["AT_API_URL"] = f"http://127.0.0.1:{gateway_port}"
    subprocess.run([*flask, "db", "upgrade"], check=True, env=env)  # nosec B603  # fixed argv (sys.executable -m ...)
    subprocess.run([*flask, "demo", "seed"], check=True, env=env)  # nosec B603  # fixed argv (sys.executable -m ...)
    subprocess.run(  # nosec B603  # fixed argv (sys.executable -m ...)
        [*flask, "operators", "demo"], check=True, env=env, stdout=subprocess.DEVNULL
    )
    gateway = [python, "-m", "ussd_app.sms.gateway", "--port", gateway_port] if gateway_port else None
    children = [
        *([subprocess.Popen(gateway, env=env)] if gateway else []),  # nosec B603  # fixed argv (sys.executable -m ...)
        subprocess.Popen([python, "-m", "worker"], env=env),  # nosec B603  # fixed argv (sys.executable -m ...)
        subprocess.Popen(  # nosec B603  # fixed argv (sys.executable -m ...)
            [
                *(python, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}"),
                *("-c", "python:ussd_app.ops.gunicorn_conf", "wsgi:app"),
            ],
            env=env,
        ),
    ]
    print(f"Tuma is running: POST http://127.0.0.1:{port}/ussd  (Ctrl-C stops it)", flush=True)
    if env["TUMA_SIMULATOR_ENABLED"] in {"1", "true", "yes"}:
        print(f"  phone simulator  http://127.0.0.1:{port}/simulator/", flush=True)
    print(
        f"  back office      http://127.0.0.1:{port}/admin/  demo operator {DEMO_OPERATOR[0]}, "
        f"password '{DEMO_OPERATOR[2]}'",
        flush=True,
    )
    print(f"  health, metrics  http://127.0.0.1:{port}/healthz  /metrics", flush=True)
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
