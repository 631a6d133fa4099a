"""The one place Tuma talks to Africa's Talking: SMS, SIM-swap insight and airtime, through the
``africastalking`` SDK (one service per call, not the SDK's module globals), with our
timeouts and sender id. Named so as not to shadow the SDK's own ``africastalking`` package.

Base URL: the SDK picks production, or the sandbox when ``AT_USERNAME`` is ``sandbox``.
``AT_API_URL`` overrides both (the local gateway in tests and ``make run``): the SDK has no
setting for it, so ``make_service`` sets the service's ``_baseUrl`` to ``{AT_API_URL}/version1``
right after construction, and nowhere else. The SDK then POSTs to ``{base}/messaging``.

How the SDK answers (africastalking 2.0.3, Service.py): 2xx gives the parsed JSON (only when
the content type is exactly ``application/json``, else the text); any other status raises
``AfricasTalkingException`` carrying only the body, not the status; network errors and
timeouts raise ``requests`` exceptions; an invalid number raises ``ValueError`` before any
request is made.

One client may be used from several threads at once (the sender's lanes run side by side):
``SMSService.send`` only reads the service's attributes, builds the form afresh, and calls
``requests.post``, which opens and closes a ``requests.Session`` (a new TCP connection, and
TLS handshake with Africa's Talking) of its own per call. A thread that sends many messages
in turn (one lane of the sender) wraps them in ``SmsClient.kept_alive()``: its POSTs then go
through one ``requests.Session`` of that thread's, one connection kept open between calls, so
each message costs one round trip instead of three or four (TCP, and TLS with Africa's
Talking; the local gateway keeps connections alive too), and the environment's proxy and CA
settings are read once per lane, not per call. A lane that ends hands its session (and its
open connection) to the job's next lane, so a job's lanes of a receipt or two each do not pay
a handshake each; the job closes them when its lanes are done (``close_idle``). A lane that
ended with an exception closes its session instead. ``_KeptAliveSMS._make_request``
answers exactly as the SDK's does (the paragraph above); nothing else of the SDK is replaced.
"""

import contextlib
import threading
from dataclasses import dataclass

import requests
from africastalking.Service import AfricasTalkingException
from africastalking.SMS import SMSService
from flask import current_app


def _session_for(url: str) -> requests.Session:
    """A session for many calls to ``url``, with what ``requests`` would take from the
    environment for it (proxies and ``NO_PROXY``, a CA bundle, ``.netrc``) read once, here,
    instead of at every call: that look-up is ~0.5 ms of Python a call, about as much as the
    rest of the call's own work."""
    session = requests.Session()
    settings = session.merge_environment_settings(url, {}, None, None, None)
    auth = requests.utils.get_netrc_auth(url)
    session.trust_env = False
    session.proxies, session.verify, session.cert = settings["proxies"], settings["verify"], settings["cert"]
    if auth:
        session.auth = auth
    return session


class _KeptAliveSMS(SMSService):
    """The SDK's SMS service; inside ``kept_alive()`` a thread's POSTs share its session."""

    def _init_service(self):
        super()._init_service()
        self._local = threading.local()
        self._idle: list[requests.Session] = []  # sessions of lanes that ended, for the next
        self._idle_lock = threading.Lock()

    @contextlib.contextmanager
    def kept_alive(self):
        if getattr(self._local, "session", None) is not None:
            yield  # nested: the outer one hands the session back
            return
        with self._idle_lock:
            session = self._idle.pop() if self._idle else None
        if session is None:
            session = _session_for(self._make_url("/messaging"))
        self._local.session = session
        try:
            yield
        except BaseException:
            self._local.session = None
            session.close()  # whatever went wrong, the next lane starts on a fresh connection
            raise
        self._local.session = None
        with self._idle_lock:
            self._idle.append(session)

    def close_idle(self) -> None:
        """Close the sessions (and connections) kept from lanes that ended."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for session in idle:
            session.close()

    def _make_request(self, url, method, headers, data, params, callback=None, **kwargs):
        session = getattr(self._local, "session", None)
        if session is None or callback is not None or method.upper() != "POST":
            return super()._make_request(url, method, headers, data, params, callback, **kwargs)
        res = session.post(url=url, headers=headers, params=params, data=data, **kwargs)
        if 200 <= res.status_code < 300:
            return res.json() if res.headers.get("content-type") == "application/json" else res.text
        raise AfricasTalkingException(res.text)


def make_service(username: str, api_key: str, api_url: str | None = None) -> SMSService:
    service = _KeptAliveSMS(username, api_key)
    if api_url:
        service._baseUrl = f"{api_url.rstrip('/')}/version1"
    return service


@dataclass
class SmsClient:
    service: SMSService
    sender_id: str | None
    timeout: tuple[float, float]  # (connect, read) seconds, as requests takes them

    def send(self, phone: str, body: str):
        """Hand one message for one number to the gateway; the SDK's answer, or its exception."""
        return self.service.send(body, [phone], sender_id=self.sender_id, timeout=self.timeout)

    def kept_alive(self):
        """A context in which this thread's sends share one kept-alive connection; at its end
        the connection is kept for the next such context (of any thread) until
        ``close_idle``."""
        if isinstance(self.service, _KeptAliveSMS):
            return self.service.kept_alive()
        return contextlib.nullcontext()

    def close_idle(self) -> None:
        """Close the connections kept from ``kept_alive`` contexts that ended."""
        if isinstance(self.service, _KeptAliveSMS):
            self.service.close_idle()


def client_for(config) -> SmsClient:
    return SmsClient(
        service=make_service(config["AT_USERNAME"], config["AT_API_KEY"], config.get("AT_API_URL")),
        sender_id=config.get("AT_SENDER_ID"),
        timeout=(config["SMS_CONNECT_TIMEOUT_SECONDS"], config["SMS_READ_TIMEOUT_SECONDS"]),
    )


def get_client() -> SmsClient:
    """A client from the current app's config. Built per job, not cached: it is cheap (no
    connection is held) and a changed setting takes effect at the next job."""
    return client_for(current_app.config)


# -- SIM-swap insight (ussd_app/fraud.py) ---------------------------------------------------
# The SDK's InsightService POSTs JSON to ``{base}/sim-swap`` (base https://insights.
# africastalking.com/v1). ``AT_API_URL`` replaces the base with ``{AT_API_URL}/v1`` here, the
# same one place and the same way as for SMS; the local gateway answers there.


def make_insights(username: str, api_key: str, api_url: str | None = None):
    from africastalking.Insights import InsightService

    service = InsightService(username, api_key)
    if api_url:
        service._baseUrl = f"{api_url.rstrip('/')}/v1"
    return service


def check_sim_swap_state(config, phone: str, timeout: float):
    """Africa's Talking's SIM-swap answer for ``phone`` (the SDK's parsed JSON), or the SDK's
    exception (``requests`` errors on timeout, ``AfricasTalkingException`` on a non-2xx)."""
    service = make_insights(config["AT_USERNAME"], config["AT_API_KEY"], config.get("AT_API_URL"))
    return service.check_sim_swap_state([phone], timeout=(timeout, timeout))


# -- Airtime (ussd_app/payments/airtime.py) --------------------------------------------------
# The SDK's AirtimeService POSTs a form to ``{base}/send`` (base https://api.africastalking.com/
# version1/airtime); ``AT_API_URL`` replaces the base with ``{AT_API_URL}/version1/airtime``.


def make_airtime(username: str, api_key: str, api_url: str | None = None):
    from africastalking.Airtime import AirtimeService

    service = AirtimeService(username, api_key)
    if api_url:
        service._baseUrl = f"{api_url.rstrip('/')}/version1/airtime"
    return service


def send_airtime(config, phone: str, amount_major: str, idempotency_key: str):
    """Africa's Talking's answer to topping up ``phone`` (the SDK's parsed JSON), or the SDK's
    exception. ``idempotency_key`` makes a repeated call send nothing twice."""
    service = make_airtime(config["AT_USERNAME"], config["AT_API_KEY"], config.get("AT_API_URL"))
    return service.send(
        phone_number=phone,
        amount=amount_major,
        currency_code=config["CURRENCY"],
        idempotency_key=idempotency_key,
        timeout=(config["SMS_CONNECT_TIMEOUT_SECONDS"], config["SMS_READ_TIMEOUT_SECONDS"]),
    )
