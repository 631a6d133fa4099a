"""An outsider's attacks on the country profiles (``TUMA_COUNTRY``, ussd_app/country.py), each
a test that failed before its fix: what a person, a merchant's system or an operator would
notice in Ghana, Tanzania or Kenya."""

import pytest

from tests.helpers import fund
from tests.test_country_profiles import PIN, _country_app, deliver, inbox
from tests.ussd_helpers import Phone, person, screen
from ussd_app.extensions import db
from ussd_app.users import find_by_phone


@pytest.fixture
def ghana():
    yield from _country_app("GH")


@pytest.fixture
def tanzania():
    yield from _country_app("TZ")


# -- a stored language the server does not offer -------------------------------------------


def test_a_kiswahili_speaker_carried_over_to_a_ghanaian_server_is_served_in_english(ghana):
    """A users table carried over (or a language set outside the menus) holds "sw"; Ghana offers
    English only, and its language menu offers no way back to Kiswahili: menus and SMS are in
    the country's language, never in one it does not offer."""
    app, gateway = ghana
    kwame = person("+233240000003", "Kwame Mensah", pin=PIN)
    person("+233240000004", "Efua Owusu", pin="2468")
    kwame.language = "sw"  # as the carried-over row holds it (create_user now refuses "sw" here)
    db.session.commit()
    fund(kwame.account_id, 100_00)
    phone = Phone(app.test_client(), "0240000003")
    home = phone.dial()
    assert screen(home).startswith("Tuma\n1. Send money\n"), home
    phone = Phone(app.test_client(), "0240000003")
    phone.walk("1", "0240000004", "20", "1")
    assert phone.send(PIN).startswith("END Sending GHS 20.00 to Efua Owusu.")
    deliver()
    [sent] = inbox(gateway, "+233240000003")
    assert "GHS 20.00 sent to EFUA OWUSU +233240000004" in sent, sent
    assert find_by_phone(db.session, "+233240000003").language == "sw"  # the row is left as it was


def test_a_language_the_country_does_not_offer_is_refused_when_an_account_is_opened(ghana):
    app, _gateway = ghana
    result = app.test_cli_runner().invoke(
        args=["accounts", "create", "--phone", "0240000005", "--name", "Ama Boateng"]
        + ["--role", "customer", "--pin", "1234", "--language", "sw"]
    )
    assert result.exit_code != 0
    assert "Ghana offers en, not sw" in result.output
    assert find_by_phone(db.session, "+233240000005") is None


# -- production refuses an override whose figures would be in another currency's scale -------


@pytest.mark.parametrize("code,other", [("GH", "KES"), ("KE", "USD"), ("TZ", "KES")])
def test_production_refuses_a_currency_other_than_the_countrys(code, other):
    """TUMA_CURRENCY=KES on a Ghanaian server labels Ghana's figures (limits GHS 3,000, a free
    band up to GHS 10, fees of GHS 1) as shillings: every limit and fee is off by the exchange
    rate. Outside production it stays a way to try things."""
    from ussd_app import country, create_app

    config = {"COUNTRY": code, "CURRENCY": other, "SQLALCHEMY_DATABASE_URI": "sqlite://"}
    with pytest.raises(country.CountryConfigError, match=f"TUMA_CURRENCY={other!r}.*TUMA_COUNTRY={code}"):
        create_app({**config, "TUMA_ENV": "production"})
    assert create_app(config).config["CURRENCY"] == other


# -- the API's cap on one amount, in each country's scale --------------------------------------


def _merchant_key(phone: str):
    from tests.api_helpers import make_key

    return make_key(person(phone, "Mama Mboga", pin="2222", role="merchant", till="123456"))


@pytest.mark.parametrize(
    "code,merchant,payee,cap",
    [
        ("KE", "+254700000002", "+254712000111", 1_000_000_00),  # as before the profiles: KES 1,000,000
        ("GH", "+233240000002", "+233240000003", 100_000_00),  # a tenth of it, as cedis are
        ("TZ", "+255710000002", "+255710000003", 10_000_000_00),  # above the full tier's TZS 5,000,000
    ],
)
def test_one_api_amount_is_capped_in_the_countrys_own_scale(code, merchant, payee, cap):
    """The cap went from KES 1,000,000 to 10,000,000 major units everywhere so Tanzania's limits
    fit: Kenya's edge let a KES 9,999,999 payout through to fail later, Ghana's GHS 10,000,000
    (a hundred times its largest balance). Each country caps at its own figure; over it is a
    refusal naming the cap in the currency, nothing recorded."""
    from tests.api_helpers import post
    from ussd_app.payments.models import TransferRequest

    for app, _gateway in _country_app(code):
        key = _merchant_key(merchant)
        person(payee, "Juma Otieno")
        client = app.test_client()
        over = post(client, "/payouts", key, {"phone": payee, "amount": cap + 1})
        assert over.status_code == 422, over.get_json()
        error = over.get_json()["error"]
        assert error["code"] == "invalid_request"
        assert error["message"].startswith(f"amount: at most {cap}"), error
        asked = post(
            client, "/payment-requests", key, {"phone": payee, "amount": cap + 1, "description": "Rent"}
        )
        assert asked.status_code == 422 and asked.get_json()["error"]["message"].startswith("amount: at most")
        assert db.session.query(TransferRequest).count() == 0
        at_cap = post(
            client, "/payment-requests", key, {"phone": payee, "amount": cap, "description": "Rent"}
        )
        assert at_cap.status_code in (200, 201, 202), at_cap.get_json()


def test_every_countrys_api_cap_is_above_its_limits_and_within_what_a_phone_may_type():
    from ussd_app import country
    from ussd_app.money import MAX_MAJOR_AMOUNT

    for profile in country.PROFILES.values():
        largest = max(
            int(v)
            for key in ("LIMITS_BASIC_MAJOR", "LIMITS_FULL_MAJOR")
            for v in profile.settings[key].split(",")
        )
        assert largest <= profile.api_max_amount <= MAX_MAJOR_AMOUNT, profile.code


# -- a database kept under another country ---------------------------------------------------


def test_ledger_check_fails_on_a_database_kept_under_another_country(ghana):
    """Kenya's database started with TUMA_COUNTRY=GH reads every KES balance as cedis (KES 1,000
    becomes GHS 1,000, about ten times as much) and nothing says so: no Kenyan can dial in, but
    the money is there under the wrong currency. ``ledger check`` (and /admin/ledger) names it."""
    from tests.conftest import default_db_url, make_app

    app, _gateway = ghana
    runner = app.test_cli_runner()
    person("+233240000003", "Kwame Mensah")
    result = runner.invoke(args=["ledger", "check"])
    assert result.exit_code == 0, result.output
    assert "ok   every holder's number is of Ghana (+233): 1 holders" in result.output
    db.session.remove()
    with make_app(default_db_url()).app_context():  # the same database, as Kenya kept it
        person("+254712000111", "Juma Otieno")
    result = runner.invoke(args=["ledger", "check"])
    assert result.exit_code == 1, result.output
    assert "FAIL every holder's number is of Ghana (+233): 1 of 2 are not (+2547120***11)" in result.output


def test_a_number_is_of_the_country_phonenumbers_places_it_in_not_of_its_prefix():
    """Whose a holder's number is: ``phones.region_of``, the one place that knows. A calling code
    may be several countries' (+1: the US, Canada, Jamaica), so a prefix alone can only tell
    where the code is one country's own, as Kenya's, Ghana's and Tanzania's are."""
    from ussd_app import phones

    placed = {
        "+254712000111": "KE",
        "+233240000003": "GH",
        "+255710000009": "TZ",
        "+12025550123": "US",
        "+14165550123": "CA",
        "+18765550123": "JM",
        "+2547": None,
        "not a number": None,
    }
    assert {number: phones.region_of(number) for number in placed} == placed
    tells = {"KE": True, "GH": True, "TZ": True, "US": False, "CA": False}
    assert {region: phones.prefix_tells(region) for region in tells} == tells
    assert phones.calling_prefix("GH") == "+233" and phones.calling_prefix("CA") == "+1"


def test_where_the_prefix_cannot_tell_every_holders_number_is_placed(ghana, monkeypatch):
    """The check as it runs for a country whose calling code is shared: every number read and
    placed by ``phones.region_of`` (a Ghanaian +233 number passes, a Kenyan one does not)."""
    from tests.conftest import default_db_url, make_app
    from ussd_app import phones
    from ussd_app.payments.emoney import holders_of_this_country, newest_holder_abroad

    monkeypatch.setattr(phones, "prefix_tells", lambda region: False)
    person("+233240000003", "Kwame Mensah")
    assert holders_of_this_country(db.session).ok and newest_holder_abroad(db.session) is None
    db.session.remove()
    with make_app(default_db_url()).app_context():  # the same database, as Kenya kept it
        person("+254712000111", "Juma Otieno")
    finding = holders_of_this_country(db.session)
    assert not finding.ok and finding.detail.startswith("1 of 2 are not (+2547120***11)"), finding
    assert "+2547120***11, not of Ghana (+233)" in newest_holder_abroad(db.session)


# -- airtime bounds in the country's own scale -------------------------------------------------


@pytest.mark.parametrize(
    "code,number,too_small,too_big,says",
    [
        # Kenya, as before: KES 10 to KES 10,000.
        ("KE", "0712000111", "9", "10001", "You can buy airtime from KES 10.00 to KES 10,000.00."),
        # Ghana: GHS 10,000 of airtime was allowed, ten times Kenya's most, a month's wages.
        ("GH", "0240000003", None, "1001", "You can buy airtime from GHS 1.00 to GHS 1,000.00."),
        # Tanzania: TZS 10 (half a Kenyan shilling) was allowed and TZS 10,000 was the most.
        ("TZ", "0710000003", "199", "200001", "You can buy airtime from TZS 200 to TZS 200,000."),
    ],
)
def test_airtime_bounds_are_the_countrys_own(code, number, too_small, too_big, says):
    from ussd_app import phones

    for app, _gateway in _country_app(code):
        user = person(phones.normalize_mobile(number), "Juma Otieno", pin=PIN)
        fund(user.account_id, 1_000_000_00)
        for amount in filter(None, (too_small, too_big)):
            phone = Phone(app.test_client(), number)
            refused = phone.walk("7", "1", amount)
            assert screen(refused).startswith(says), refused


# -- what a merchant's developer reads ---------------------------------------------------------


def test_the_api_document_of_a_ghanaian_server_shows_no_kenyan_example(ghana):
    """A Ghanaian merchant's developer reads /api/v1/openapi.json and /api/v1/docs: examples of
    KES, +254 numbers and Kenyan 07... numbers would be refused by this very server."""
    import json

    app, _gateway = ghana
    client = app.test_client()
    document = json.dumps(client.get("/api/v1/openapi.json").get_json())
    page = client.get("/api/v1/docs").get_data(as_text=True)
    for text in (document, page):
        assert "KES" not in text and "+254" not in text and "0712345678" not in text
    assert '"GHS"' in document and "+233" in document


# -- Kenya as it was ---------------------------------------------------------------------------


def test_the_language_menus_take_the_number_as_shown_as_before(client):
    """Before the profiles "01" or "1 " was no choice on Kenya's language menus ("Invalid choice."):
    the menus now numbered per country must not start reading other spellings."""
    for n, typed in enumerate(("01", "1.0", "+1", "٢")):
        person(f"+25471200011{n}", "Juma Otieno", pin=PIN)  # each a fresh session, no resume offer
        phone = Phone(client, f"071200011{n}")
        phone.walk("2", "4")
        assert screen(phone.send(typed)).startswith("Invalid choice.\nChoose language"), typed
        newcomer = Phone(client, f"071200099{n}")
        newcomer.dial()
        assert screen(newcomer.send(typed)).startswith("Choose 1 or 2. / Chagua 1 au 2.\n"), typed


@pytest.mark.parametrize("code,cap", [("KE", 1_000_000_00), ("GH", 100_000_00), ("TZ", 10_000_000_00)])
def test_the_api_document_states_the_countrys_own_cap(code, cap):
    """A client generator or a fuzzer reads ``maximum``: a bound above what the server takes
    makes valid-looking requests the server refuses."""
    for app, _gateway in _country_app(code):
        document = app.test_client().get("/api/v1/openapi.json").get_json()
        schemas = document["components"]["schemas"]
        maxima = {
            field.get("maximum")
            for schema in schemas.values()
            for field in schema.get("properties", {}).values()
            if field.get("maximum", 0) > 1_000_000  # amounts (a page's size is bounded too)
        }
        assert maxima == {cap}, maxima


def test_ledger_check_says_the_trust_reconciliation_in_the_countrys_currency(tanzania):
    """``e-money 1000000`` reads as a million shillings in a country whose screens show whole
    shillings; it is TZS 10,000 (minor units). The reconciliation says the amount as shown too
    (after the integers, which Kenya's scripts read as before)."""
    app, _gateway = tanzania
    agent = person("+255710000001", "Ali Wakala", pin=PIN, role="agent")
    runner = app.test_cli_runner()
    issued = runner.invoke(
        args=["float", "issue", "--phone", agent.phone, "--amount", "10000", "--reference", "DEP1"]
    )
    assert issued.exit_code == 0, issued.output
    result = runner.invoke(args=["ledger", "check"])
    assert result.exit_code == 0, result.output
    assert (
        "ok   e-money in circulation = trust balance: e-money 1000000, trust 1000000, "
        "deposits 1000000 (minor units; TZS 10,000 each)"
    ) in result.output


# -- the demo news site in Ghana -----------------------------------------------------------------


def test_the_news_site_of_a_ghanaian_demo_speaks_cedis_and_ghanaian_numbers(monkeypatch):
    """``TUMA_COUNTRY=GH make run``: the news site's copy said "a shilling an article" and its
    number field suggested a Kenyan 0700000003, which Tuma refuses in Ghana."""
    from devtools.news import Tuma, create_news

    monkeypatch.setenv("TUMA_COUNTRY", "GH")
    html = create_news(Tuma("http://tuma.invalid", "key")).test_client().get("/").get_data(as_text=True)
    assert "shilling" not in html and 'placeholder="0700000003"' not in html
    assert "GHS 1.00 an article" in html and 'placeholder="0240000003"' in html


# -- a worker started for another country ------------------------------------------------------


def test_a_worker_started_for_another_country_refuses_to_start(ghana):
    """The web runs TUMA_COUNTRY=GH; a worker unit whose environment lacks it runs as Kenya: it
    would send Ghanaians receipts in KES and hold them to Kenya's limits and tariff. It refuses
    to start, naming the country its database's holders are of; started for Ghana it runs."""
    from tests.worker_helpers import finish, run_burst_worker, start_worker

    person("+233240000003", "Kwame Mensah", pin=PIN)
    refused = start_worker("--burst", "--no-cron")
    out = finish(refused)
    assert refused.returncode == 2, out
    assert "TUMA_COUNTRY=KE but the newest holder's number is +2332400***03, not of Kenya (+254)" in out
    run_burst_worker("--no-cron", TUMA_COUNTRY="GH")


def test_metrics_say_which_currency_their_minor_units_are(tanzania):
    """``tuma_holds_open_amount_minor`` is minor units of no stated currency: a dashboard over
    Kenya's and Tanzania's services adds shillings of both. An info series says the country and
    currency of every amount the service reports."""
    from prometheus_client.parser import text_string_to_metric_families

    app, _gateway = tanzania
    text = app.test_client().get("/metrics").get_data(as_text=True)
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert (
        found[("tuma_country_info", (("country", "TZ"), ("currency", "TZS"), ("minor_per_major", "100")))]
        == 1
    )


# -- whole shillings where amounts are shown whole ---------------------------------------------


def test_a_tanzanian_tariff_charges_whole_shillings(tanzania):
    """Tanzanian money is shown, typed and paid out in whole shillings: a TZS 150.50 fee (or a
    cap of TZS 0.50) would leave every payer's balance with senti nobody can withdraw or send.
    Kenya's cents stay allowed."""
    from ussd_app import tariffs

    with pytest.raises(
        tariffs.InvalidTariff,
        match=r"send.bands\[1\]: TZS amounts are whole \(multiples of 100 minor units\), not 15050",
    ):
        tariffs.validate({"send": {"bands": [[2_000_00, 0], [10_000_00, 150_50]]}})
    with pytest.raises(tariffs.InvalidTariff, match=r"buy_goods.payee_cap: TZS amounts are whole"):
        tariffs.validate({"buy_goods": {"payee_basis_points": 50, "payee_cap": 50}})
    tariffs.validate({"send": {"bands": [[2_000_00, 0], [10_000_00, 150_00]]}})


def test_kenyan_tariffs_may_still_charge_cents(app):
    from ussd_app import tariffs

    tariffs.validate({"send": {"bands": [[100_00, 0], [500_00, 7_50]]}})


def test_a_tanzanian_merchant_pays_whole_shillings_of_fee(tanzania):
    """0.5% of TZS 1,003 is TZS 5.015: the merchant's fee is TZS 5 (rounded down, in the
    merchant's favour, as before), never TZS 5.01 of senti on a balance shown whole."""
    from ussd_app import tariffs

    assert tariffs.payee_fee("buy_goods", 1_003_00) == 5_00
    assert tariffs.payee_fee("buy_goods", 1_000_000_00) == 5_000_00  # the cap, TZS 5,000


def test_a_tanzanian_merchant_cannot_pay_out_senti(tanzania):
    """amount 150 is TZS 1.50: it would leave senti on a balance shown, typed and withdrawn in
    whole shillings. Refused at the edge, saying so; whole amounts pass."""
    from tests.api_helpers import post

    app, _gateway = tanzania
    key = _merchant_key("+255710000002")
    person("+255710000003", "Juma Mwakyusa")
    client = app.test_client()
    answer = post(
        client, "/payment-requests", key, {"phone": "+255710000003", "amount": 150, "description": "Rent"}
    )
    assert answer.status_code == 422, answer.get_json()
    assert (
        answer.get_json()["error"]["message"]
        == "amount: TZS amounts are whole: a multiple of 100 (TZS 1 = 100)"
    )
    whole = post(
        client, "/payment-requests", key, {"phone": "+255710000003", "amount": 200, "description": "Rent"}
    )
    assert whole.status_code == 201, whole.get_json()


# -- what a stranger is told, in the country's first language ----------------------------------


def test_a_tanzanian_stranger_is_refused_in_kiswahili_first(tanzania):
    """Before anyone is known, Tanzania speaks Kiswahili first (its profile's first language);
    the refusals at the edge were English whatever the country."""
    app, _gateway = tanzania
    client = app.test_client()
    unreadable = client.post("/ussd", data={"sessionId": "", "phoneNumber": "", "text": ""})
    assert unreadable.get_data(as_text=True) == "END Samahani, ombi hili halikusomeka. Tafadhali piga tena."
    foreign = Phone(client, "+254712000111").dial()
    assert foreign == "END Samahani, ombi hili halikusomeka. Tafadhali piga tena."
    saved, app.config["WEBHOOK_RATE_PER_MINUTE"] = app.config["WEBHOOK_RATE_PER_MINUTE"], 1
    try:
        Phone(client, "0710000003").dial()
        limited = Phone(client, "0710000003").dial()
    finally:
        app.config["WEBHOOK_RATE_PER_MINUTE"] = saved
    assert limited == "END Maombi mengi mno. Subiri dakika moja kisha upige tena."
