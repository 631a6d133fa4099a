"""The hosts of the cluster test: network namespaces on this one machine, joined by a switch.

    python -m chaos.cluster.net up | down | status

Every namespace is named ``tuma-<host>`` and every address is in ``10.77.0.0/24``: a switch
namespace (``tuma-sw``, a bridge ``br0``) with one veth pair to each host (``eth0`` inside it),
and one to this machine's own namespace (``tuma-root``, 10.77.0.1), from which the test drives
the load and reads the database. Nothing else on the machine is touched; ``down`` removes all of
it (killing whatever still runs inside those namespaces), and works after a crashed run.

Faults on the wire are iptables rules inside a host's namespace (``cut``/``heal``): packets to
and from the named peers dropped silently, as a broken switch port or a firewall would.
"""

import os
import subprocess
import sys
import time

PREFIX = "tuma-"
NETWORK = "10.77.0"
SWITCH = "tuma-sw"
ROOT_LINK = "tuma-root"
ROOT_ADDRESS = f"{NETWORK}.1"

HOSTS = {
    "lb": 10,
    "web1": 11,
    "web2": 12,
    "work1": 21,
    "work2": 22,
    "pg1": 31,
    "pg2": 32,
    "r1": 41,
    "r2": 42,
    "arb": 43,  # the third Sentinel and the third etcd member
    "gw": 60,  # the local Africa's Talking gateway
}


def address(host: str) -> str:
    return f"{NETWORK}.{HOSTS[host]}"


def ns(host: str) -> str:
    return PREFIX + host


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def in_ns(host: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns(host), *argv, check=check)


def namespaces() -> list[str]:
    out = sh("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def pids(name: str) -> list[int]:
    out = sh("ip", "netns", "pids", name, check=False).stdout
    return [int(p) for p in out.split()]


def kill_host(host_ns: str, sig: int = 9) -> None:
    """SIGKILL (or ``sig``) every process inside the namespace: the host loses power."""
    for _ in range(50):
        found = pids(host_ns)
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def down() -> None:
    for name in namespaces():
        kill_host(name)
    for name in namespaces():
        sh("ip", "netns", "delete", name, check=False)
    # The root end goes with its peer; a crash between the two steps of up() can leave it.
    if sh("ip", "link", "show", ROOT_LINK, check=False).returncode == 0:
        sh("ip", "link", "delete", ROOT_LINK, check=False)
    for host in HOSTS:
        for end in ("a", "b"):
            link = f"{PREFIX}{host}{end}"
            if sh("ip", "link", "show", link, check=False).returncode == 0:
                sh("ip", "link", "delete", link, check=False)


def up() -> None:
    down()
    sh("ip", "netns", "add", SWITCH)
    in_ns("sw", "ip", "link", "add", "br0", "type", "bridge")
    in_ns("sw", "ip", "link", "set", "br0", "up")
    in_ns("sw", "ip", "link", "set", "lo", "up")
    for host in HOSTS:
        sh("ip", "netns", "add", ns(host))
        a, b = f"{PREFIX}{host}a", f"{PREFIX}{host}b"
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", a, "netns", ns(host))
        sh("ip", "link", "set", b, "netns", SWITCH)
        in_ns(host, "ip", "link", "set", a, "name", "eth0")
        in_ns(host, "ip", "addr", "add", f"{address(host)}/24", "dev", "eth0")
        in_ns(host, "ip", "link", "set", "eth0", "up")
        in_ns(host, "ip", "link", "set", "lo", "up")
        in_ns("sw", "ip", "link", "set", b, "master", "br0")
        in_ns("sw", "ip", "link", "set", b, "up")
    sh("ip", "link", "add", ROOT_LINK, "type", "veth", "peer", "name", "tuma-rootb")
    sh("ip", "link", "set", "tuma-rootb", "netns", SWITCH)
    in_ns("sw", "ip", "link", "set", "tuma-rootb", "master", "br0")
    in_ns("sw", "ip", "link", "set", "tuma-rootb", "up")
    sh("ip", "addr", "add", f"{ROOT_ADDRESS}/24", "dev", ROOT_LINK)
    sh("ip", "link", "set", ROOT_LINK, "up")


def _rule(host: str, action: str, peers: list[str]) -> None:
    for peer in peers:
        for chain, side in (("OUTPUT", "-d"), ("INPUT", "-s")):
            in_ns(host, "iptables", "-w", action, chain, side, address(peer), "-j", "DROP")


def cut(host: str, peers: list[str]) -> None:
    """Drop every packet between ``host`` and ``peers`` (silently: no reset, no ICMP)."""
    _rule(host, "-A", peers)


def heal(host: str) -> None:
    in_ns(host, "iptables", "-w", "-F", "INPUT")
    in_ns(host, "iptables", "-w", "-F", "OUTPUT")


def status() -> str:
    return "\n".join(f"{name}: {len(pids(name))} processes" for name in namespaces()) or "no tuma- namespaces"


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "status"
    if command == "up":
        up()
    elif command == "down":
        down()
    print(status())
