"""The whole service for browser tests: the web app under gunicorn, a real worker and a local SMS
gateway on free ports, against the test database and Redis; and headless Chromium (Debian's
``chromium`` + ``chromium-driver``) driven by Selenium.

Screenshots go to ``TUMA_TEST_ARTIFACTS`` (default ``tests/artifacts/``, git-ignored).
Without Chromium the browser tests skip, unless ``TUMA_REQUIRE_BROWSER=1`` (CI sets it), when
they fail: CI must not pass by skipping them.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import requests

from tests.helpers import wait_for
from tests.ops_helpers import closed_port
from tests.worker_helpers import ROOT, finish, start_worker, worker_env

CHROMIUM = os.environ.get("TUMA_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TUMA_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = os.environ.get("TUMA_TEST_ARTIFACTS") or os.path.join(ROOT, "tests", "artifacts")


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} ({package}) not found: apt-get install -y chromium chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements.txt)"
    return None


def skip_without_browser():
    reason = browser_missing()
    if reason is None:
        return
    if os.environ.get("TUMA_REQUIRE_BROWSER") == "1":
        pytest.fail(f"TUMA_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def chromium(width=1600, height=1100):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


OPERATOR_EMAIL, OPERATOR_PASSWORD = "olive@tuma.example", "correct horse battery staple"


def seed_demo(runner) -> None:
    """The demo's people (``flask demo seed``) and an operator to sign in as; the caller commits."""
    from ussd_app.admin.models import create_operator
    from ussd_app.extensions import db

    seeded = runner.invoke(args=["demo", "seed"])
    assert seeded.exit_code == 0, seeded.output
    create_operator(db.session, email=OPERATOR_EMAIL, name="Olive Operator", password=OPERATOR_PASSWORD)


def sign_in(driver) -> None:
    """Fill and send the back office's sign-in form the driver is on, as the seeded operator."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.NAME, "email").send_keys(OPERATOR_EMAIL)
    driver.find_element(By.NAME, "password").send_keys(OPERATOR_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def screenshot(driver, name: str) -> str:
    """Save the whole page as ``<ARTIFACTS>/<name>.png``; its path."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, f"{name}.png")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, max(600, min(int(height) + 150, 4000)))
    assert driver.save_screenshot(path), path
    return path


class Stack:
    """gunicorn (web), ``python -m worker`` and the local SMS gateway, started and stopped
    together. Prometheus multiprocess mode is on, as under ``make run``, so ``/metrics`` adds
    up the web workers and the rq worker."""

    def __init__(self):
        from devtools.gateway import serve_in_thread

        self.gateway = serve_in_thread()
        self.metrics_dir = tempfile.mkdtemp(prefix="tuma-metrics-")
        env = {
            "AT_API_URL": self.gateway.url,
            "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir,
            "TUMA_SIMULATOR_ENABLED": "1",
            "SECRET_KEY": "browser-test-secret",
        }
        port = closed_port()
        self.url = f"http://127.0.0.1:{port}"
        self.web_log = tempfile.TemporaryFile(mode="w+", prefix="gunicorn-")
        web_env = worker_env(**env)
        self.web = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "-w", "2", "--threads", "4"),
                *("-b", f"127.0.0.1:{port}", "-c", "python:ussd_app.ops.gunicorn_conf"),
                "devtools:create_app()",  # the service plus the phone simulator, as under make run
            ],
            cwd=ROOT,
            env=web_env,
            stdout=self.web_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.worker = start_worker("--no-cron", **env)
        try:
            wait_for(self._healthy, timeout=30, message=f"the web app on {self.url}")
        except AssertionError:
            self.stop()
            raise

    def _healthy(self) -> bool:
        if self.web.poll() is not None:
            self.web_log.seek(0)
            raise AssertionError(f"gunicorn exited: {self.web_log.read()[-3000:]}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        for proc in (self.web, self.worker):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        try:
            self.web.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.web.pid, signal.SIGKILL)
            self.web.wait(timeout=5)
        try:
            finish(self.worker, timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.worker.pid, signal.SIGKILL)
            finish(self.worker, timeout=5)
        self.web_log.close()
        self.gateway.stop()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


def wait_until(driver, condition, timeout=15.0, message="the page"):
    """WebDriverWait with a message that says what did not happen. An element that went stale
    (the page was replaced while the condition read it, as after a form's redirect) or is not
    there yet means "not yet", not a failure."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        TimeoutException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    start = time.monotonic()
    ignored = (NoSuchElementException, StaleElementReferenceException)
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=ignored).until(
            lambda d: condition(d)
        )
    except TimeoutException as exc:
        raise AssertionError(
            f"timed out after {time.monotonic() - start:.1f}s waiting for {message}"
        ) from exc


class SimPhone:
    """One handset on the simulator page, used as a person would: keys typed on the keyboard,
    Enter to send, the screen read back."""

    def __init__(self, driver, slot):
        self.driver = driver
        self.slot = slot

    def css(self, selector):
        from selenium.webdriver.common.by import By

        return self.slot.find_element(By.CSS_SELECTOR, selector)

    @property
    def screen(self) -> str:
        return self.css(".display").text

    def use_number(self, number: str) -> None:
        field = self.css(".phone-number")
        field.clear()
        field.send_keys(number)
        self.css(".screen").click()  # leaving the field changes the number (its inbox too)

    def _idle(self) -> bool:
        return "busy" not in (self.css(".handset").get_attribute("class") or "")

    def key(self, keys: str, expect: str, timeout=15.0) -> str:
        """Type ``keys``, press Enter (the green key), wait for a screen containing ``expect``."""
        from selenium.webdriver.common.keys import Keys

        self.css(".screen").click()  # focus this handset
        self.css(".handset").send_keys(keys + Keys.ENTER)
        return wait_until(
            self.driver,
            lambda d: self._idle() and expect in self.screen and self.screen,
            timeout,
            f"{expect!r} on the screen (it shows {self.screen!r})",
        )

    def inbox(self) -> list[str]:
        from selenium.webdriver.common.by import By

        return [li.text for li in self.slot.find_elements(By.CSS_SELECTOR, ".messages li")]

    def wait_sms(self, expect: str, timeout=15.0) -> str:
        """The first SMS in this inbox containing ``expect``, once it has arrived."""
        return wait_until(
            self.driver,
            lambda d: next((m for m in self.inbox() if expect in m), None),
            timeout,
            f"an SMS with {expect!r} (the inbox has {self.inbox()!r})",
        )
