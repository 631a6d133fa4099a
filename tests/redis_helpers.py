"""A redis-server of a test's own, to stop and start (losing its contents) at will, and a proxy in
front of one that loses a reply (the connection cut, or the reply held back until the client
times out)."""

import shutil
import socket
import subprocess
import threading
import time

import redis as redis_lib

from chaos.harness import free_port


class OwnRedis:
    """``redis-server`` on a free port, no persistence: a restart comes back empty."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis_lib.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis_lib.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
            finally:
                client.close()

    def stop(self) -> None:
        """Gone, as a crashed server is: its contents are lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class ReplyLosingProxy:
    """A TCP proxy in front of a Redis server that, when told to (``lose_reply_to``), passes the
    next request holding some bytes on to the server, lets the server run it, and then cuts
    that connection instead of passing the reply back: a connection broken after the command ran,
    as a network fault or a dying proxy breaks one. ``hold_reply_to`` keeps the connection open
    instead and never passes that reply (nor anything after it on that connection) back: the
    client's read times out after the command ran, as behind a stalled network. Every other byte
    goes through unchanged."""

    def __init__(self, port: int):
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.lost = 0  # replies not passed back
        self._marker: bytes | None = None
        self._cut = True  # the doomed connection is cut (else its replies are held back)
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def lose_reply_to(self, marker: bytes) -> None:
        with self._lock:
            self._marker, self._cut = marker, True

    def hold_reply_to(self, marker: bytes) -> None:
        with self._lock:
            self._marker, self._cut = marker, False

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            doomed = threading.Event()  # the next reply on this connection is to be lost
            doomed.cut = True
            threading.Thread(target=self._requests, args=(client, server, doomed), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client, doomed), daemon=True).start()

    def _requests(self, client, server, doomed) -> None:
        try:
            while data := client.recv(65536):
                with self._lock:
                    if self._marker is not None and self._marker in data:
                        self._marker = None
                        doomed.cut = self._cut
                        doomed.set()  # set before the server can answer
                server.sendall(data)
        except OSError:
            pass
        finally:
            _close(server)

    def _replies(self, server, client, doomed) -> None:
        try:
            while data := server.recv(65536):
                if doomed.is_set():
                    if doomed.cut:
                        self.lost += 1
                        break  # the command ran; its reply never arrives
                    if not getattr(doomed, "counted", False):
                        doomed.counted = True
                        self.lost += 1
                    continue  # held back: the client times out waiting
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(server)


def _close(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
