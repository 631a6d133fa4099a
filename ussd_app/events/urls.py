"""Calling a merchant's URL without letting it call us: the one way Tuma POSTs to a merchant's
system (event deliveries and pay-bill validation).

A merchant chooses the URL, so a URL is untrusted input that our servers will connect to
(server-side request forgery). In production (``TUMA_ENV=production``):

- only ``https`` URLs, with a host name or a public address, no user name or password;
- the host is resolved here and **every** address it resolves to must be public (not private,
  loopback, link-local, shared, multicast, reserved or unspecified). IPv6 forms that carry an
  IPv4 address are refused outright (NAT64 ``64:ff9b::/96`` and ``64:ff9b:1::/48``, 6to4
  ``2002::/16``, IPv4-compatible ``::/96``), and an embedded IPv4 address (IPv4-mapped, 6to4,
  Teredo) must pass the same rules. A host with any such address is refused;
- the connection goes to the address checked (pinned), never to a second resolution of the name
  (a DNS answer that changes between the check and the connect cannot send us inside); the TLS
  certificate is still checked against the host name;
- no redirects are followed, the answer is read up to ``MAX_ANSWER_BYTES``, and connect and read
  have timeouts;
- a caller's ``deadline`` (``time.monotonic()``) bounds the whole call by the wall clock: the
  name resolution (in a thread of its own, waited for with the time left), the connect, the
  headers and the body. A server that sends its answer a byte at a time is cut off at the
  deadline (a watchdog shuts its socket), not when each byte resets a read timeout.

Outside production, ``http`` and local addresses are allowed (the local receiver of ``make run``
and of the tests listens on 127.0.0.1); the rest of the path is the same.
"""

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import urllib3

MAX_URL_LENGTH = 2048
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "Tuma-Webhooks/1"


class UnsafeURL(ValueError):
    """A URL we will not call; the message says why, for the merchant (never echoes a secret)."""


class CallFailed(Exception):
    """No HTTP answer: refused, reset, timed out, TLS failed."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # the name, for the Host header and the certificate
    port: int
    path: str  # path and query
    addresses: tuple[str, ...]  # what the name resolved to, every one checked


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


# IPv6 networks whose addresses carry an IPv4 address (a translator or a tunnel may deliver
# them to it): refused whatever the IPv4 address is.
_CARRIERS = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "::/96"))


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        if any(e is not None and not _public(str(e)) for e in embedded):
            return False
        if ip.ipv4_mapped is not None:
            return True  # judged as its IPv4 address, just above
        if any(ip in net for net in _CARRIERS):
            return False
    return ip.is_global and not ip.is_multicast


def _left(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` (None: no deadline); CallFailed once it has passed."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise CallFailed("deadline passed")
    return left


def _resolve(host: str, port: int, deadline: float | None):
    """getaddrinfo, waited for at most until ``deadline`` (the lookup runs in a thread of its
    own: a resolver cannot be interrupted, but nobody waits for it past the deadline)."""
    if deadline is None:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: dict = {}

    def look_up():
        try:
            found["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            found["error"] = exc

    lookup = threading.Thread(target=look_up, name="webhook-dns", daemon=True)
    lookup.start()
    lookup.join(_left(deadline))
    if lookup.is_alive():
        raise CallFailed("name resolution timed out")
    if "error" in found:
        raise found["error"]
    return found["infos"]


def parse(url: str, *, production: bool) -> tuple[str, str, int, str]:
    """The URL's scheme, host, port and path, or UnsafeURL. No network."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise UnsafeURL(f"a URL of at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise UnsafeURL("a URL without spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeURL("not a URL") from None
    allowed = ("https",) if production else ("https", "http")
    if parts.scheme not in allowed:
        raise UnsafeURL("an https URL" if production else "an http or https URL")
    if not parts.hostname:
        raise UnsafeURL("a URL with a host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("a URL without a user name or password in it")
    if parts.fragment:
        raise UnsafeURL("a URL without a #fragment")
    port = port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path


def check(url: str, *, production: bool, deadline: float | None = None) -> Target:
    """Parse and resolve ``url``; in production, refuse it unless every address is public.
    With a ``deadline``, CallFailed when the name is not resolved by then."""
    scheme, host, port, path = parse(url, production=production)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = (str(literal),)
    else:
        if production and (host == "localhost" or host.endswith((".localhost", ".local", ".internal"))):
            raise UnsafeURL("a public host")
        try:
            infos = _resolve(host, port, deadline)
        except (OSError, UnicodeError):
            raise UnsafeURL(f"a host that resolves ({host} does not)") from None
        addresses = tuple(dict.fromkeys(info[4][0] for info in infos))
        if not addresses:
            raise UnsafeURL(f"a host that resolves ({host} does not)")
    if production and not all(_public(a) for a in addresses):
        raise UnsafeURL("a public address (private, loopback and link-local addresses are refused)")
    return Target(scheme, host, port, path, addresses)


def post(
    target: Target,
    body: bytes,
    headers: dict[str, str],
    *,
    connect_timeout: float,
    read_timeout: float,
    deadline: float | None = None,
) -> Answer:
    """POST ``body`` to the first checked address of ``target``. CallFailed when nothing answered,
    or when the whole answer (headers and body) is not in by ``deadline`` (``time.monotonic()``)."""
    address = target.addresses[0]
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    if ":" in target.host:  # an IPv6 literal
        host_header = f"[{target.host}]" if target.port == default_port else f"[{target.host}]:{target.port}"
    left = _left(deadline)
    if left is not None:
        connect_timeout, read_timeout = min(connect_timeout, left), min(read_timeout, left)
    timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
    common = dict(port=target.port, timeout=timeout, retries=False, maxsize=1)
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            **common,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, **common)
    watchdog = _Watchdog(pool, left)
    sent = {"Host": host_header, "User-Agent": USER_AGENT, "Content-Type": "application/json", **headers}
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers=sent,
            redirect=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            data = b""
            while len(data) < MAX_ANSWER_BYTES:
                chunk = response.read(min(_CHUNK, MAX_ANSWER_BYTES - len(data)), decode_content=False)
                if not chunk:
                    break
                data += chunk
                _left(deadline)
        finally:
            response.release_conn()
        if watchdog.fired:
            raise CallFailed("deadline passed")
        return Answer(response.status, data)
    except urllib3.exceptions.HTTPError as exc:
        raise CallFailed("deadline passed" if watchdog.fired else type(exc).__name__) from None
    except OSError as exc:
        raise CallFailed("deadline passed" if watchdog.fired else type(exc).__name__) from None
    finally:
        watchdog.cancel()
        pool.close()


_CHUNK = 4096


class _Watchdog:
    """Shuts the call's socket when its time is up, which ends a read blocked on a server that
    sends a byte now and then (each byte would reset a read timeout). None: no deadline."""

    def __init__(self, pool, seconds: float | None):
        self.fired = False
        self._connections: list = []
        self._timer = None
        if seconds is None:
            return
        made = pool.ConnectionCls

        def connection(*args, **kwargs):
            made_now = made(*args, **kwargs)
            self._connections.append(made_now)
            return made_now

        pool.ConnectionCls = connection
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        for connection in list(self._connections):
            sock = getattr(connection, "sock", None)
            if sock is None:
                continue
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed: nothing left to end

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
