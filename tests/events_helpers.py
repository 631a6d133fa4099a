"""A merchant's system for the webhook tests: the local receiver (devtools.receiver) serving
from a thread, and a signature check written here from hmac and hashlib alone, independent
of ussd_app.events.signing."""

import hashlib
import hmac
import socket
import threading

from devtools.receiver import Receiver, serve_in_thread
from ussd_app.events.endpoints import configure
from ussd_app.extensions import db


def running_receiver():
    """For a module's ``receiver`` fixture: ``yield from running_receiver()``."""
    running = serve_in_thread(Receiver())
    try:
        yield running
    finally:
        running.stop()


def endpoint_for(account_id: int, receiver, name: str = "shop", **fields):
    """The merchant's endpoint pointed at ``receiver``; committed. Its secret."""
    configured = configure(db.session, account_id, url=f"{receiver.url}/hooks/{name}", **fields)
    db.session.commit()
    receiver.receiver.secret = configured.secret
    return configured.secret


def signed_by(secret: str, body: str, header: str) -> bool:
    """Check ``Tuma-Signature: t=...,v1=...`` as a merchant would, from the documentation."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(
        secret.encode("utf-8"), (fields["t"] + "." + body).encode("utf-8"), hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


class TricklingServer:
    """A merchant's server that answers 200 with ``Content-Length: 100`` at once, then sends the
    body a byte every ``every`` seconds: each byte would reset a read timeout. Real sockets."""

    def __init__(self, every: float = 0.2):
        self.every = every
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads = [threading.Thread(target=self._accept, name="trickling-server", daemon=True)]
        self._threads[0].start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            answering = threading.Thread(target=self._answer, args=(conn,), daemon=True)
            self._threads.append(answering)
            answering.start()

    def _answer(self, conn):
        with conn:
            try:
                conn.settimeout(1)
                conn.recv(65536)  # the request (small; read once)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                for _ in range(100):
                    if self._stop.wait(self.every):
                        return
                    conn.sendall(b" ")
            except OSError:
                return  # the caller hung up: what the deadline is for

    def stop(self):
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)


def trickling_server(every: float = 0.2):
    """For a fixture: ``yield from trickling_server()``."""
    server = TricklingServer(every)
    try:
        yield server
    finally:
        server.stop()
