"""Calling a merchant's URL without letting it call us: the one way Tuma POSTs to a merchant's
system (event deliveries and pay-bill validation).

A merchant chooses the URL, so a URL is untrusted input that our servers will connect to
(server-side request forgery). In production (``TUMA_ENV=production``):

- only ``https`` URLs, with a host name or a public address, no user name or password;
- the host is resolved here and **every** address it resolves to must be public (not private,
  loopback, link-local, shared, multicast, reserved or unspecified; an IPv4-mapped IPv6 address
  is judged as its IPv4 address). A host with any such address is refused;
- the connection goes to the address checked (pinned), never to a second resolution of the name
  (a DNS answer that changes between the check and the connect cannot send us inside); the TLS
  certificate is still checked against the host name;
- no redirects are followed, the answer is read up to ``MAX_ANSWER_BYTES``, and connect and read
  have timeouts.

Outside production, ``http`` and local addresses are allowed (the local receiver of ``make run``
and of the tests listens on 127.0.0.1); the rest of the path is the same.
"""

import ipaddress
import socket
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


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


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


def check(url: str, *, production: bool) -> Target:
    """Parse and resolve ``url``; in production, refuse it unless every address is public."""
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
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
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
    total_timeout: float | None = None,
) -> Answer:
    """POST ``body`` to the first checked address of ``target``. CallFailed when nothing answered."""
    address = target.addresses[0]
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    if ":" in target.host:  # an IPv6 literal
        host_header = f"[{target.host}]" if target.port == default_port else f"[{target.host}]:{target.port}"
    timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout, total=total_timeout)
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
            data = response.read(MAX_ANSWER_BYTES, decode_content=False)
        finally:
            response.release_conn()
        return Answer(response.status, data or b"")
    except urllib3.exceptions.HTTPError as exc:
        raise CallFailed(type(exc).__name__) from None
    except OSError as exc:
        raise CallFailed(type(exc).__name__) from None
    finally:
        pool.close()
