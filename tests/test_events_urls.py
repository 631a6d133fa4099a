"""A merchant's URL is untrusted input our servers connect to: in production only https to
public addresses, every resolved address checked, the connection pinned to the checked one."""

import socket

import pytest
from sqlalchemy import select

from tests.events_helpers import endpoint_for, running_receiver
from ussd_app.events import delivery, urls
from ussd_app.events.endpoints import EndpointError, configure
from ussd_app.events.models import Delivery
from ussd_app.extensions import db
from ussd_app.payments.models import RequestKind
from ussd_app.payments.submit import mint_request_id, record_request
from worker import jobs


@pytest.fixture
def receiver():
    yield from running_receiver()


REFUSED_IN_PRODUCTION = [
    "http://example.com/hooks",  # not https
    "https://127.0.0.1/hooks",  # loopback
    "https://10.1.2.3/hooks",  # private
    "https://172.16.0.9/hooks",
    "https://192.168.1.1/hooks",
    "https://169.254.169.254/latest/meta-data",  # link-local: a cloud's metadata service
    "https://100.64.0.1/hooks",  # shared address space
    "https://0.0.0.0/hooks",
    "https://[::1]/hooks",
    "https://[fe80::1]/hooks",
    "https://[fd00::1]/hooks",
    "https://[::ffff:127.0.0.1]/hooks",  # IPv4-mapped loopback
    "https://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    "https://[64:ff9b::5db8:d70e]/",  # NAT64 of a public address: refused all the same
    "https://[64:ff9b:1::a9fe:a9fe]/",  # local-use NAT64
    "https://[2002:a9fe:a9fe::]/",  # 6to4 of 169.254.169.254
    "https://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "https://[2002:5db8:d70e::]/",  # 6to4 of a public address: a tunnel, refused all the same
    "https://[::127.0.0.1]/",  # IPv4-compatible
    "https://[::a9fe:a9fe]/",
    "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo, client 127.0.0.1
    "https://localhost/hooks",
    "https://user:password@example.com/hooks",
    "ftp://example.com/hooks",
    "https:///hooks",
    "not a url",
    "https://example.com/hooks\n",
]


@pytest.mark.parametrize("url", REFUSED_IN_PRODUCTION)
def test_production_refuses_urls_that_reach_inside(url):
    with pytest.raises(urls.UnsafeURL):
        urls.check(url, production=True)


def test_a_host_name_that_resolves_to_a_private_address_is_refused():
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 443)}
    except OSError:
        pytest.skip("this machine's name does not resolve")
    if any(urls._public(a) for a in addresses):
        pytest.skip("this machine's name resolves to a public address")
    with pytest.raises(urls.UnsafeURL, match="public address"):
        urls.check(f"https://{name}/hooks", production=True)
    assert urls.check(f"http://{name}/hooks", production=False).addresses  # fine in development


def test_a_name_not_resolved_by_the_deadline_is_no_answer():
    import time

    with pytest.raises(urls.CallFailed):
        urls.check("http://localhost/hooks", production=False, deadline=time.monotonic() - 1)
    in_time = urls.check("http://localhost/hooks", production=False, deadline=time.monotonic() + 5)
    assert in_time.addresses


def test_a_public_https_address_is_accepted_and_pinned():
    target = urls.check("https://93.184.215.14:8443/hooks?shop=1", production=True)
    assert (target.scheme, target.host, target.port, target.path) == (
        "https",
        "93.184.215.14",
        8443,
        "/hooks?shop=1",
    )
    assert target.addresses == ("93.184.215.14",)


def test_put_refuses_an_inside_url_in_production(app, config, merchant):
    config(TUMA_ENV="production")
    with pytest.raises(EndpointError, match="url: an https URL"):
        configure(db.session, merchant.account_id, url="http://shop.example/hooks")
    with pytest.raises(EndpointError, match="validation_url: a public address"):
        configure(
            db.session,
            merchant.account_id,
            url="https://93.184.215.14/h",
            validation_url="https://10.0.0.1/v",
        )


def test_a_delivery_to_an_inside_address_is_never_made_in_production(
    app, config, customer, merchant, receiver
):
    from tests.escrow_helpers import funded_customer

    payer = funded_customer(phone="+254712000333", name="Achieng Payer")
    endpoint_for(merchant.account_id, receiver)  # set in development: 127.0.0.1
    record_request(
        db.session,
        request_id=mint_request_id(),
        kind=RequestKind.BUY_GOODS.value,
        debit_account_id=payer,
        credit_account_id=merchant.account_id,
        amount=100_00,
    )
    db.session.commit()
    jobs.execute_transfers()
    config(TUMA_ENV="production")  # then the service runs in production
    assert jobs.deliver_events() == {"delivered": 0, "retry": 1, "failed": 0}
    assert receiver.receiver.attempts == 0  # no connection was made
    row = db.session.execute(select(Delivery)).scalar_one()
    assert row.last_error.startswith("URL refused: an https URL")
    assert delivery.count_due(db.session) == 0  # later, with backoff
