"""The phone simulator: feature phones in a web page that drive the real /ussd webhook.

``/simulator/`` shows several phones side by side (a sender, a recipient, an agent, a
merchant). Each dials the service code and posts every hop to ``POST /ussd`` with Africa's
Talking's form fields (sessionId, serviceCode, phoneNumber, networkCode, text = every input so
far joined by ``*``), and shows that number's SMS inbox, read from the local Africa's Talking
gateway (``devtools.gateway``) through ``/simulator/messages`` on this same origin. Each phone
can be switched to another USSD gateway's protocol (``GATEWAYS``): it then posts that gateway's
JSON to ``POST /ussd/<gateway>`` (ussd_app/ussd/gateways/), so the same menus show over Hubtel's
JSON or Beem's.

The server runs one country (``TUMA_COUNTRY``; ``TUMA_COUNTRY=GH make run`` for Ghana), and
the page says which. Each phone can also be switched to a country (``countries``): that gives
it a number of that country and its network's code; a phone of another country than the
server's dials in as a foreign number, as a roaming or mistaken number would (the service
refuses it, the page says why beforehand). To see Ghana's menus, run the server in Ghana.

Beside the phones, a pane lists the webhook events the demo merchant's system received: the
local receiver (``devtools.receiver``), read through ``/simulator/events``. The page links to
the demo news site (``devtools.news``), whose allowances are approved on these phones.

Registered only by the development app (``devtools.create_app``), never by the service's own
``create_app``; even there off unless ``SIMULATOR_ENABLED`` (``TUMA_SIMULATOR_ENABLED=1``;
``make run`` sets it): it lets anyone type into any number's phone.
"""

import logging

import requests
from flask import Blueprint, abort, current_app, jsonify, render_template, request, url_for

from ussd_app import country, phones

bp = Blueprint(
    "simulator",
    __name__,
    url_prefix="/simulator",
    template_folder="templates",
    static_folder="static",
)
log = logging.getLogger(__name__)

# The mobile network (MCC+MNC, as Africa's Talking names it) a phone of each country is on.
NETWORK_CODES = {"KE": "63902", "GH": "62001", "TZ": "64004"}  # Safaricom, MTN Ghana, Vodacom TZ
# The protocols a phone can speak: Africa's Talking's form, or another gateway's JSON.
GATEWAYS = [
    ("at", "Africa's Talking"),
    ("hubtel", "Hubtel"),
    ("arkesel", "Arkesel"),
    ("nalo", "Nalo"),
    ("beem", "Beem"),
    ("mtn", "MTN"),
]
GATEWAY_TIMEOUT_SECONDS = 2


@bp.before_request
def _only_when_enabled():
    # create_app refuses production with it on; this holds even if it is switched on later.
    if not current_app.config.get("SIMULATOR_ENABLED") or current_app.config.get("TUMA_ENV") == "production":
        abort(404)


def _demo_phones() -> list[dict]:
    from ..demo import demo_people

    return [{"phone": phone, "label": f"{name} ({role})"} for phone, name, role, _pin, _till in demo_people()]


def countries() -> list[dict]:
    """Every country profile as a phone's country select offers it."""
    return [
        {
            "code": p.code,
            "name": p.name,
            "calling_code": p.calling_code,
            "example": p.example_mobile,
            "network_code": NETWORK_CODES.get(p.code, ""),
            "currency": p.currency,
        }
        for p in country.PROFILES.values()
    ]


def _demo_till() -> str:
    from ..demo import demo_hooks_name

    return demo_hooks_name()


def _news_url() -> str:
    from ..demo import demo_news_url

    return demo_news_url()


@bp.get("/")
def page():
    return render_template(
        "simulator/index.html",
        service_code=current_app.config["SERVICE_CODE"],
        server_country=country.profile(),
        currency=current_app.config["CURRENCY"],
        countries=countries(),
        demo=_demo_phones(),
        merchant_till=_demo_till(),
        gateways=GATEWAYS,
        gateway_urls={name: url_for(f"ussd.gateway_{name}") for name, _label in GATEWAYS if name != "at"},
        news_url=_news_url(),
    )


@bp.get("/messages")
def messages():
    """That number's SMS as the local gateway recorded them: ``{"messages": [...]}``."""
    raw = (request.args.get("phone") or "").strip()[:30]
    try:
        phone = phones.normalize(raw)
    except phones.InvalidPhone:
        return jsonify({"messages": [], "error": "not a phone number"}), 400
    base = current_app.config.get("AT_API_URL")
    if not base:
        return jsonify({"messages": [], "error": "no local SMS gateway (AT_API_URL is not set)"}), 503
    try:
        answer = requests.get(
            f"{base.rstrip('/')}/messages", params={"phone": phone}, timeout=GATEWAY_TIMEOUT_SECONDS
        )
        answer.raise_for_status()
        found = answer.json().get("messages", [])
    except (requests.RequestException, ValueError, AttributeError) as exc:
        log.warning("simulator: the SMS gateway did not answer: %s", type(exc).__name__)
        return jsonify({"messages": [], "error": "the SMS gateway did not answer"}), 502
    return jsonify(
        {
            "messages": [
                {
                    "id": m.get("id"),
                    "from": m.get("sender") or "TUMA",
                    "text": m.get("message"),
                    "at": m.get("received_at"),
                }
                for m in found
                if isinstance(m, dict)
            ]
        }
    )


@bp.get("/events")
def events():
    """The events the demo merchant's system (the local receiver) received, newest first."""
    from ..demo import demo_hooks_name, demo_receiver_url

    try:
        answer = requests.get(
            f"{demo_receiver_url()}/events",
            params={"name": demo_hooks_name()},
            timeout=GATEWAY_TIMEOUT_SECONDS,
        )
        answer.raise_for_status()
        found = answer.json().get("events", [])
    except (requests.RequestException, ValueError, AttributeError) as exc:
        log.warning("simulator: the webhook receiver did not answer: %s", type(exc).__name__)
        return jsonify({"events": [], "error": "the webhook receiver did not answer"}), 502
    return jsonify(
        {
            "events": [
                {
                    "id": e.get("event_id"),
                    "type": e.get("type"),
                    "verified": bool(e.get("verified")),
                    "at": e.get("received_at"),
                    "data": (e.get("data") or {}).get("data"),
                    "amount_text": _amount_text((e.get("data") or {}).get("data")),
                }
                for e in found
                if isinstance(e, dict)
            ]
        }
    )


def _amount_text(data) -> str | None:
    """An event's amount as Tuma shows it ("TZS 10,000", "KES 1,250.00"), or None."""
    from ussd_app.money import format_amount

    if not isinstance(data, dict) or not isinstance(data.get("amount"), int):
        return None
    return format_amount(data["amount"], str(data.get("currency") or current_app.config["CURRENCY"]))


def init_app(app) -> None:
    app.register_blueprint(bp)
