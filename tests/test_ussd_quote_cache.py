"""What the amount hop no longer reads from the database each time: the tariff in force (cached
per process under a token in Redis, ``tariffs.py``) and the caller's tier (kept with the
caller's facts in the session, ``ussd/caller.py``). A change made by another process (another
gunicorn worker, the CLI, the back office) is quoted at the very next hop; a tariff scheduled
ahead starts on time; a token lost from Redis never reads as "unchanged". Each test would fail
with a cache that went stale: the first conversation fills it, the change comes from elsewhere.
"""

from datetime import timedelta

import pytest

from tests.helpers import fund
from tests.ussd_helpers import Phone, statements_sent
from ussd_app import create_app, tariffs
from ussd_app.clock import utcnow
from ussd_app.extensions import db
from ussd_app.users import find_by_phone

JUMA, WANJIRU = "0712000111", "0712000222"
DEFAULT_FEE = "Fee: KES 13.00"  # sending KES 1,000 under the built-in tariff
NEW_FEE = "Fee: KES 21.00"


def confirm(client, amount: str = "1000") -> str:
    """A session to the confirm screen (its body), then cancelled: nothing left to resume."""
    phone = Phone(client, JUMA)
    phone.dial(), phone.send("1"), phone.send(WANJIRU)
    body = phone.send(amount)
    if body.startswith("CON Send"):
        assert phone.send("2").startswith("END"), "cancelled"
    return body


def dearer() -> dict:
    """The built-in tariff with KES 21 for the band KES 1,000 falls in."""
    document = tariffs.default_document()
    bands = document["send"]["bands"]
    band = next(b for b in bands if b[0] >= 100_000)
    band[1] = 2_100
    return document


_others: dict[str, object] = {}
SHARED = (
    "TESTING",
    "SQLALCHEMY_DATABASE_URI",
    "REDIS_URL",
    "PIN_PEPPER",
    "SECRET_KEY",
    "AT_API_URL",
    "AT_API_KEY",
)


@pytest.fixture(scope="module", autouse=True)
def _dispose_others():
    yield
    for other in _others.values():
        with other.app_context():
            db.engine.dispose()
        other.extensions["redis"].close()
        other.extensions["redis_scripts"].close()


@pytest.fixture
def other_process(app):
    """Another app on the same database and Redis (its own engine, its own copy of the
    tariff): another worker process, the CLI."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if url not in _others:
        _others[url] = create_app({key: app.config[key] for key in SHARED})
    return _others[url]


@pytest.fixture
def juma(customer, second_customer):
    fund(customer.account_id, 500_000)
    return customer


@pytest.fixture(params=["cache on", "cache off"])
def cached(request, config):
    config(USSD_TARIFF_CACHE=request.param == "cache on")
    return request.param == "cache on"


def test_a_tariff_version_added_by_another_process_is_quoted_at_the_next_hop(
    app, cached, juma, other_process
):
    client = app.test_client()
    assert DEFAULT_FEE in confirm(client)  # this process has read (and, cache on, kept) the tariff
    with other_process.app_context():
        tariffs.add_version(db.session, dearer(), effective_from=utcnow() - timedelta(seconds=1))
        db.session.commit()
    assert NEW_FEE in confirm(client)
    # Back to the built-in fees, from the other process again.
    with other_process.app_context():
        tariffs.add_version(db.session, tariffs.default_document(), effective_from=utcnow())
        db.session.commit()
    assert DEFAULT_FEE in confirm(client)


def test_a_version_scheduled_ahead_is_quoted_from_its_start(app, juma, monkeypatch):
    start = utcnow() + timedelta(hours=1)
    tariffs.add_version(db.session, dearer(), effective_from=start)
    db.session.commit()
    client = app.test_client()
    assert DEFAULT_FEE in confirm(client)  # not yet: the built-in tariff, cached until its start
    monkeypatch.setattr(tariffs, "utcnow", lambda: start + timedelta(seconds=1))
    assert NEW_FEE in confirm(client)


def test_a_lost_token_is_not_taken_for_an_unchanged_tariff(app, juma, redis):
    client = app.test_client()
    assert DEFAULT_FEE in confirm(client)
    # A version written around the ORM (no listener replaces the token), then Redis loses the
    # token (a flush, a failover): the next hop makes a new one, so the cached copy is not used.
    tariffs.add_version(db.session, dearer(), effective_from=utcnow() - timedelta(seconds=1))
    db.session.flush()
    db.session.info.pop("tuma_tariffs_changed", None)  # as if written by psql: no invalidation
    db.session.commit()
    assert DEFAULT_FEE in confirm(client)  # within its age, the stale copy: what the token is for
    redis.delete(tariffs.STAMP_KEY)
    assert NEW_FEE in confirm(client)


def test_a_copy_past_its_age_is_read_again_whatever_the_token_says(app, juma, monkeypatch):
    client = app.test_client()
    assert DEFAULT_FEE in confirm(client)
    tariffs.add_version(db.session, dearer(), effective_from=utcnow() - timedelta(seconds=1))
    db.session.flush()
    db.session.info.pop("tuma_tariffs_changed", None)  # no invalidation (psql)
    db.session.commit()
    monkeypatch.setattr(tariffs, "CACHE_MAX_AGE_SECONDS", 0)
    assert NEW_FEE in confirm(client)


def test_an_amount_hop_with_the_tariff_cached_reads_only_todays_spending(app, juma):
    client = app.test_client()
    confirm(client)  # fills the cache
    phone = Phone(client, JUMA)
    phone.dial(), phone.send("1"), phone.send(WANJIRU)
    with statements_sent() as statements:
        assert DEFAULT_FEE in phone.send("1000")
    reads = [s for s in statements if s != "BEGIN IMMEDIATE"]  # SQLite's transaction, no read
    assert len(reads) == 1 and "transfer_requests" in reads[0], statements


def test_a_tier_changed_by_another_process_is_said_at_the_next_amount_hop(app, juma, config, other_process):
    config(LIMITS_BASIC_MAJOR="500,150000,100000", LIMITS_FULL_MAJOR="70000,300000,500000")
    other_process.config.update(
        LIMITS_BASIC_MAJOR="500,150000,100000", LIMITS_FULL_MAJOR="70000,300000,500000"
    )
    client = app.test_client()
    phone = Phone(client, JUMA)
    phone.dial(), phone.send("1"), phone.send(WANJIRU)
    assert phone.send("1000").startswith("CON Over your limit of KES 500.00 per transaction.")
    with other_process.app_context():  # an agent checked his ID (the back office, the CLI)
        find_by_phone(db.session, "+254712000111").tier = "full"
        db.session.commit()
    # The same session, the amount again: the full tier's limits, with the fee.
    assert DEFAULT_FEE in phone.send("1000")
    assert phone.send("2").startswith("END")  # cancelled: nothing to resume
    with other_process.app_context():
        find_by_phone(db.session, "+254712000111").tier = "basic"
        db.session.commit()
    assert confirm(client).startswith("CON Over your limit of KES 500.00 per transaction.")
