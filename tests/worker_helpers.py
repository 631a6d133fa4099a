"""Running real worker processes from tests."""

import os
import signal
import subprocess
import sys
import tempfile

from flask import current_app

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker_env(**extra) -> dict:
    env = dict(os.environ)
    env["DATABASE_URL"] = current_app.config["SQLALCHEMY_DATABASE_URI"]
    env["REDIS_URL"] = current_app.config["REDIS_URL"]
    env["PIN_PEPPER"] = current_app.config["PIN_PEPPER"]
    env["AT_API_URL"] = current_app.config["AT_API_URL"] or ""
    env["AT_API_KEY"] = current_app.config["AT_API_KEY"]
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_worker(*args, **env) -> subprocess.Popen:
    # End this test's transaction first: on SQLite every transaction holds the write lock
    # (BEGIN IMMEDIATE), and a read left open would make the worker wait for it.
    from ussd_app.extensions import db

    db.session.rollback()
    # Output to a file, not a pipe: a worker logging more than a pipe holds while nobody
    # reads it would block mid-batch.
    log = tempfile.TemporaryFile(mode="w+", prefix="worker-")
    # A worker asked for fault checkpoints runs with them installed (devtools/faults.py).
    module = "devtools.faults" if env.get("TUMA_FAULTS") else "worker"
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=worker_env(**env),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so a kill takes its children too
    )
    proc.log = log
    return proc


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    """Wait for the worker to exit; its output. A worker still running after ``timeout`` is
    killed (with its children) and the test fails with the worker's output, so a slow run
    never leaves a worker behind to write into the next test's database."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        raise AssertionError(f"worker still running after {timeout} s:\n{_output(proc)[-4000:]}") from None
    return _output(proc)


def _output(proc: subprocess.Popen) -> str:
    proc.log.seek(0)
    out = proc.log.read()
    proc.log.close()
    return out


def kill_worker(proc: subprocess.Popen) -> None:
    """SIGKILL the worker and everything it started, as a machine losing power would."""
    os.killpg(proc.pid, signal.SIGKILL)
    finish(proc, timeout=10)


def run_burst_worker(*args, timeout=120, **env) -> str:
    proc = start_worker("--burst", *args, **env)
    out = finish(proc, timeout=timeout)
    assert proc.returncode == 0, out
    return out
