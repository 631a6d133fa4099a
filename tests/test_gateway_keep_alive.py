"""The local gateway keeps HTTP/1.1 connections alive between requests, as Africa's Talking's
API does: a lane's calls (``SmsClient.kept_alive``) go over one connection, with the real SDK;
a request body the application does not read is not taken for the next request; a client that
asks to close gets its connection closed; and a stopped gateway answers on no connection."""

import socket

import pytest
import requests

from devtools.gateway import Gateway, serve_in_thread
from ussd_app.africas_talking import SmsClient, make_service


@pytest.fixture
def running():
    handle = serve_in_thread(Gateway(api_key="k"))
    yield handle
    handle.stop()


def open_connections(handle) -> int:
    return len(handle._server.open_connections)


def test_a_lanes_calls_share_one_connection(running):
    client = SmsClient(make_service("sandbox", "k", running.url), "TUMA", (3.05, 10))
    with client.kept_alive():
        for i in range(5):
            answer = client.send("+254711000001", f"receipt {i}")
            assert answer["SMSMessageData"]["Recipients"][0]["statusCode"] == 101
        assert open_connections(running) == 1
    assert [m.message for m in running.gateway.inbox()] == [f"receipt {i}" for i in range(5)]


def test_an_unread_body_does_not_spill_into_the_next_request(running):
    with requests.Session() as session:
        # No such route: the application never reads the body.
        answer = session.post(f"{running.url}/version1/nowhere", data={"to": "x" * 5000}, timeout=5)
        assert answer.status_code == 404
        answer = session.post(
            f"{running.url}/version1/messaging",
            data={"username": "sandbox", "to": "+254711000002", "message": "hi"},
            headers={"apiKey": "k"},
            timeout=5,
        )
        assert answer.status_code == 201
        assert open_connections(running) == 1
    assert [m.to for m in running.gateway.inbox()] == ["+254711000002"]


def test_connection_close_is_honoured(running):
    host, port = running.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):  # the server closes: recv ends with b""
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and b"Connection: close" in data


def test_a_stopped_gateway_answers_on_no_connection():
    handle = serve_in_thread()
    with requests.Session() as session:
        assert session.get(f"{handle.url}/messages", timeout=5).status_code == 200
        handle.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(f"{handle.url}/messages", timeout=5)
