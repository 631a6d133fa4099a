"""Country profiles (``TUMA_COUNTRY``, ussd_app/country.py): the service run in Ghana or Tanzania
speaks that country's currency, numbers, languages, service code, tariff and limits, through the
real webhooks, the worker and the local SMS gateway. Kenya (the default) is every other test."""

import copy

import pytest
from sqlalchemy import select

from devtools.gateway import serve_in_thread
from tests.conftest import default_db_url, make_app, reset_data
from tests.gateway_fixtures import hubtel as hubtel_docs
from tests.helpers import fund
from tests.ussd_helpers import Phone, available, person, screen
from ussd_app import country, create_app, limits, phones, tariffs
from ussd_app.extensions import db
from ussd_app.money import WIDEST_AMOUNT, format_amount
from ussd_app.payments.models import TransferRequest
from ussd_app.users import find_by_phone
from worker import jobs

PIN = "1357"


def _country_app(code: str):
    """The service as ``TUMA_COUNTRY=code`` starts it, on the tests' database and Redis, with
    a local Africa's Talking gateway of its own for the SMS."""
    app = make_app(default_db_url(), COUNTRY=code)
    running = serve_in_thread()
    saved = {k: app.config[k] for k in ("AT_API_URL", "AT_API_KEY", "AT_SENDER_ID")}
    app.config.update(AT_API_URL=running.url, AT_API_KEY="test-key", AT_SENDER_ID="TUMA")
    with app.app_context():
        reset_data()
        app.extensions["redis"].flushdb()
        try:
            yield app, running.gateway
        finally:
            db.session.remove()
            app.config.update(saved)
            running.stop()


@pytest.fixture
def ghana():
    yield from _country_app("GH")


@pytest.fixture
def tanzania():
    yield from _country_app("TZ")


def deliver():
    """What the worker does: the queued transfers, then the outbox handed to the SMS gateway."""
    jobs.execute_transfers()
    db.session.remove()
    jobs.send_sms()
    db.session.remove()


def inbox(gateway, phone: str) -> list[str]:
    return [m.message for m in gateway.inbox(phone)]


# -- Hubtel, as Hubtel posts it (tests/gateway_fixtures/hubtel.py) ---------------------------

INITIATION = hubtel_docs.REQUESTS[1][0]  # {"Type": "Initiation", "Message": "*713*7#", ...}
RESPONSE = hubtel_docs.REQUESTS[2][0]  # {"Type": "Response", "Message": "1", "Sequence": 2, ...}


class Hubtel:
    """One Hubtel session from ``mobile`` (as Hubtel writes it: 233..., no plus), each request
    the documented one with its own session, sequence and message."""

    def __init__(self, client, mobile: str, session: str):
        self.client, self.mobile, self.session, self.sequence = client, mobile, session, 0

    def post(self, template: dict, message: str) -> dict:
        self.sequence += 1
        doc = copy.deepcopy(template)
        doc.update(Mobile=self.mobile, SessionId=self.session, Message=message, Sequence=self.sequence)
        response = self.client.post("/ussd/hubtel", json=doc)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def initiate(self, dialled: str = "*713*7#") -> dict:
        return self.post(INITIATION, dialled)

    def respond(self, text: str) -> dict:
        return self.post(RESPONSE, text)


def test_a_ghanaian_number_registers_through_hubtel_and_is_welcomed_by_name(ghana):
    """The issue's outside check: TUMA_COUNTRY=GH, an Initiation then Responses, a Release."""
    app, gateway = ghana
    phone = Hubtel(app.test_client(), "233246912184", "gh-registration-1")
    first = phone.initiate()
    # Ghana offers English only: no language menu, no Kiswahili; the first name straight away.
    assert first["Type"] == "Response"
    assert first["Message"] == "Register\nEnter your first name"
    answers = [phone.respond(text) for text in ("Kwame", "Mensah", PIN, PIN)]
    assert [a["Type"] for a in answers] == ["Response", "Response", "Response", "Release"]
    welcomed = "Welcome to Tuma, Kwame! Your account is ready. Dial again to send money."
    assert answers[-1]["Message"] == welcomed
    assert all("Kiswahili" not in a["Message"] for a in [first, *answers])

    user = find_by_phone(db.session, "+233246912184")
    assert (user.name, user.language) == ("Kwame Mensah", "en")
    deliver()
    [welcome] = inbox(gateway, "+233246912184")
    assert "*713*7#" in welcome and "*384*7#" not in welcome  # Ghana's service code


def test_a_send_between_two_ghanaians_is_in_cedis_on_screen_and_in_the_receipts(ghana):
    app, gateway = ghana
    kwame = person("+233240000003", "Kwame Mensah", pin=PIN).account_id
    efua = person("0240000004", "Efua Owusu", pin="2468")  # the local form, stored in E.164
    efua_phone, efua = efua.phone, efua.account_id
    assert efua_phone == "+233240000004"
    fund(kwame, 500_00)  # GHS 500
    fee = tariffs.quote("send", 50_00)
    assert fee == 1_00  # Ghana's default tariff: GHS 50 costs GHS 1 (up to GHS 10 is free)
    assert tariffs.quote("send", 10_00) == 0

    phone = Phone(app.test_client(), "0240000003")
    confirm = phone.walk("1", "0240000004", "50")
    assert "Send GHS 50.00 to Efua Owusu +233240000004?" in confirm
    assert "GHS 1.00" in confirm and "KES" not in confirm
    phone.send("1")
    assert phone.send(PIN).startswith("END Sending GHS 50.00 to Efua Owusu.")
    deliver()

    [request] = db.session.execute(select(TransferRequest)).scalars().all()
    assert (request.amount, request.fee, request.status) == (50_00, fee, "accepted")
    assert available(efua) == 50_00
    sent = inbox(gateway, "+233240000003")[-1]
    received = inbox(gateway, "+233240000004")[-1]
    assert "GHS 50.00 sent to EFUA OWUSU +233240000004" in sent
    assert f"New balance is {format_amount(500_00 - 50_00 - fee, 'GHS')}." in sent
    assert "Transaction cost, GHS 1.00." in sent
    assert "You have received GHS 50.00 from KWAME MENSAH +233240000003" in received
    assert not any("KES" in text for text in [sent, received])


def test_ghana_refuses_kenyan_numbers_as_foreign(ghana):
    """A +254 number is foreign in Ghana (docs/threat-model.md, item 9): it never dials in, never
    registers, and cannot be sent to."""
    app, _gateway = ghana
    client = app.test_client()
    kenyan = Hubtel(client, "254712000111", "gh-foreign-1")
    answer = kenyan.initiate()
    assert (answer["Type"], answer["Message"]) == (
        "Release",
        "Sorry, this request could not be read. Please dial again.",
    )
    assert find_by_phone(db.session, "+254712000111") is None
    with pytest.raises(phones.NotLocalMobile):
        phones.normalize_mobile("+254712000111")
    with pytest.raises(phones.InvalidPhone):
        phones.normalize("0712000111")  # a Kenyan local 07... is no number in Ghana

    kwame = person("+233240000003", "Kwame Mensah", pin=PIN)
    fund(kwame.account_id, 100_00)
    refused = Phone(client, "+233240000003").walk("1", "+254712000222")
    assert screen(refused).startswith("Only mobile numbers starting +233 can be used.")


def test_ghana_offers_english_only_in_my_account(ghana):
    app, _gateway = ghana
    person("+233240000003", "Kwame Mensah", pin=PIN)
    phone = Phone(app.test_client(), "0240000003")
    assert screen(phone.walk("2", "4")) == "Choose language\n1. English"
    assert screen(phone.send("2")) == "Invalid choice.\nChoose language\n1. English"
    assert screen(phone.send("1")) == "Language set to English."


def test_ghanaian_limits_and_tariff_are_in_cedis(ghana):
    basic = limits.tier_limits("basic")
    assert (basic.per_transfer, basic.daily, basic.max_balance) == (3_000_00, 5_000_00, 10_000_00)
    assert tariffs.withdrawal_min() == 5_00
    assert tariffs.in_force().payee_fee("buy_goods", 1_000_000_00) == 20_00  # capped at GHS 20
    with pytest.raises(tariffs.InvalidTariff, match="up to GHS 10 must stay free"):
        tariffs.validate({"send": {"bands": [[5_00, 0], [10_00, 1]]}})


# -- Tanzania ----------------------------------------------------------------------------------


def test_tanzania_asks_the_language_and_shows_shillings_without_cents(tanzania):
    app, gateway = tanzania
    client = app.test_client()
    newcomer = Phone(client, "0710000009")
    assert screen(newcomer.dial()).endswith("1. English\n2. Kiswahili")
    newcomer.walk("2", "Neema", "Massawe", PIN)
    assert newcomer.send(PIN) == "END Karibu Tuma, Neema! Akaunti yako iko tayari. Piga tena kutuma pesa."
    neema = find_by_phone(db.session, "+255710000009")
    assert neema.language == "sw"

    juma = person("+255710000003", "Juma Mwakyusa", pin="2468").account_id
    fund(neema.account_id, 100_000_00)  # TZS 100,000
    fee = tariffs.quote("send", 10_000_00)
    assert fee == 150_00  # Tanzania's default tariff; up to TZS 2,000 is free
    confirm = Phone(client, "+255710000009").walk("1", "0710000003", "10000")
    assert "TZS 10,000 " in confirm and "TZS 150" in confirm and ".00" not in confirm
    phone = Phone(client, "+255710000009")
    phone.walk("1", "0710000003", "10000", "1")
    phone.send(PIN)
    deliver()
    assert available(juma) == 10_000_00
    received = inbox(gateway, "+255710000003")[-1]  # Juma registered in English
    assert "You have received TZS 10,000 from NEEMA MASSAWE +255710000009" in received
    sent = inbox(gateway, "+255710000009")[-1]  # Neema's, in Kiswahili
    assert "TZS 10,000" in sent and f"TZS {100_000 - 10_000 - 150:,}" in sent and "KES" not in sent


def test_tanzanian_numbers_are_normalised_in_every_form(tanzania):
    for typed in ("0712 345 678", "+255712345678", "255712345678", "tel:+255-712-345-678"):
        assert phones.normalize(typed) == "+255712345678"
    with pytest.raises(phones.NotLocalMobile):
        phones.normalize_mobile("+233240000003")  # Ghanaian: foreign here


def test_ghanaian_numbers_are_normalised_in_every_form(ghana):
    for typed in ("024 691 2184", "0246912184", "+233246912184", "233246912184"):
        assert phones.normalize_mobile(typed) == "+233246912184"


# -- amounts as each currency shows them, and the configuration ---------------------------------


def test_amounts_in_each_currency():
    assert format_amount(1_250_00, "KES") == "KES 1,250.00"
    assert format_amount(1_250_00, "GHS") == "GHS 1,250.00"
    assert format_amount(1_250_00, "TZS") == "TZS 1,250"
    assert format_amount(1_250_50, "TZS") == "TZS 1,250.50"  # a fraction is never hidden
    assert format_amount(-5_00, "TZS") == "-TZS 5"
    assert WIDEST_AMOUNT == "KES 10,000,000.00"


def test_an_unknown_country_refuses_to_start():
    with pytest.raises(country.UnknownCountry, match="TUMA_COUNTRY='NG' has no country profile"):
        create_app({"COUNTRY": "NG", "SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_a_setting_given_explicitly_overrides_the_profile():
    config = {"COUNTRY": "GH", "CURRENCY": "USD", "LIMITS_BASIC_MAJOR": "1,2,3"}
    country.configure(config)
    assert (config["CURRENCY"], config["LIMITS_BASIC_MAJOR"]) == ("USD", "1,2,3")
    assert config["SERVICE_CODE"] == "*713*7#"
    assert (config["TIMEZONE"], config["LANGUAGES"]) == ("Africa/Accra", ("en",))


def test_every_profile_is_consistent():
    """Every profile's example numbers are its own mobiles, its send tariff is free up to its free
    band, its withdrawal bounds and limits are whole, and its languages have catalogues."""
    import phonenumbers

    for profile in country.PROFILES.values():
        number = phonenumbers.parse(profile.numbered(1))
        assert phonenumbers.region_code_for_number(number) == profile.code
        assert profile.send_bands[0] == (profile.free_send_up_to, 0)
        assert profile.withdrawal_min < profile.withdrawal_bands[-1][0]
        assert set(profile.languages) <= set(country.LANGUAGE_NAMES)
        for key in ("LIMITS_BASIC_MAJOR", "LIMITS_FULL_MAJOR"):
            per_transfer, daily, balance = (int(v) for v in profile.settings[key].split(","))
            assert per_transfer <= daily
        assert profile.currency in country.CURRENCIES


@pytest.mark.parametrize(
    "override,says",
    [
        ({"LANGUAGES": ("fr",)}, "TUMA_LANGUAGES='fr'"),
        ({"CURRENCY": "cedi"}, "TUMA_CURRENCY='cedi' is not an ISO 4217 code"),
        ({"TIMEZONE": "Mars/Olympus"}, "TUMA_TIMEZONE='Mars/Olympus' is not a time zone"),
    ],
)
def test_an_override_the_service_cannot_use_refuses_to_start(override, says):
    with pytest.raises(country.CountryConfigError, match=says):
        create_app({"COUNTRY": "GH", "SQLALCHEMY_DATABASE_URI": "sqlite://", **override})


# -- the development tools in another country ------------------------------------------------


def test_the_demo_seed_in_ghana_numbers_its_people_from_ghanaian_mobiles(ghana):
    app, _gateway = ghana
    result = app.test_cli_runner().invoke(args=["demo", "seed"])
    assert result.exit_code == 0, result.output
    assert "demo customer: Kwame Mensah +233240000003" in result.output
    assert "demo agent float: GHS 10,000.00" in result.output
    agent = find_by_phone(db.session, "+233240000001")
    assert (agent.role, available(agent.account_id)) == ("agent", 10_000_00)
    assert "+254" not in result.output


def test_the_simulator_in_ghana_says_so_and_each_phone_can_switch_country(ghana):
    app, _gateway = ghana
    app.config["SIMULATOR_ENABLED"] = True
    try:
        page = app.test_client().get("/simulator/").get_data(as_text=True)
    finally:
        app.config["SIMULATOR_ENABLED"] = False
    assert "This server runs <b>Ghana</b> (GH:\n  GHS, numbers +233)" in page
    assert "<code>TUMA_COUNTRY=KE make run</code>" in page  # how to see another country
    assert 'data-service-code="*713*7#"' in page and 'data-server-country="GH"' in page
    for n in range(1, 6):
        assert f'data-phone="+23324000000{n}"' in page
    assert '<option value="GH" selected>Ghana (+233)</option>' in page
    assert '<option value="TZ">Tanzania (+255)</option>' in page
