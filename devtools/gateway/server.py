"""The local gateway's HTTP server: werkzeug's threaded development server, with HTTP/1.1
connections kept alive between requests, as Africa's Talking's API keeps its HTTPS connections.

werkzeug's server answers every request with ``Connection: close`` and then reads what is left
on the socket (a request body the application did not read), which would swallow the next
request on a kept-alive connection. Here each request's body (``Content-Length`` bytes) is read
whole before the application runs and handed to it as its input, so nothing of the request is
left on the socket; the ``Connection: close`` is then dropped unless the client asked for it
(an HTTP/1.0 client, or ``Connection: close``) and the next request is read from the same
connection. A chunked request body, or a ``Content-Length`` that is not a number, gets
werkzeug's own handling (and the connection closed) as before. A connection idle for
``IDLE_SECONDS`` is closed, and ``close_connections`` closes every open one (a stopped gateway
must not go on answering on a connection opened before it stopped).
"""

import io
import socket
import threading

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

# How long a kept-alive connection may wait for its next request before the server closes it.
IDLE_SECONDS = 15.0


class KeepAliveHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS  # the socket's timeout: an idle connection is dropped after it
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms wait between

    def setup(self) -> None:
        super().setup()
        with self.server.open_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        with self.server.open_lock:
            self.server.open_connections.discard(self.connection)
        super().finish()

    def run_wsgi(self) -> None:
        length = self.headers.get("Content-Length")
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower() or (
            length is not None and not length.strip().isdigit()
        ):
            self.close_connection = True
            super().run_wsgi()
            return
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            del self.headers["Expect"]  # answered: werkzeug must not answer it again
        body = self.rfile.read(int(length)) if length else b""
        on_socket, self.rfile = self.rfile, io.BytesIO(body)
        try:
            super().run_wsgi()  # reads the request from the body above, and drains only that
        finally:
            self.rfile = on_socket

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "connection" and value.lower() == "close" and not self.close_connection:
            return  # werkzeug closes every connection; this one stays open for the next request
        super().send_header(keyword, value)


def make_gateway_server(host: str, port: int, app) -> BaseWSGIServer:
    """A threaded server for ``app`` whose connections stay open between requests."""
    server = make_server(host, port, app, threaded=True, request_handler=KeepAliveHandler)
    server.open_connections = set()
    server.open_lock = threading.Lock()
    return server


def close_connections(server: BaseWSGIServer) -> None:
    """Close every connection still open (their threads then end)."""
    with server.open_lock:
        connections = list(server.open_connections)
    for connection in connections:
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the client
