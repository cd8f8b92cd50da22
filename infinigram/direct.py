"""Direct connections from a Ray engine to its actors, for the calls whose
cost is Ray's own: a Ray actor call takes ~0.5 ms of scheduling on a small
machine, a count's kernel a few microseconds.

Each actor listens on its node's address (port chosen by the system) with
its own random key, which travels only through Ray; a connection proves the
key both ways (``multiprocessing.connection``'s HMAC challenge) before any
message is unpickled, so a stale address that now belongs to another actor
or program fails the handshake instead of answering. Every failure on the
driver's side (refused, reset, end of stream, failed handshake) makes
:meth:`Links.call` return None, and the engine falls back to the Ray call,
which restarts a lost actor and retries: a direct call never answers wrong.
"""
from __future__ import annotations

import os
import socket
import threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, Listener, answer_challenge, deliver_challenge

CONNECT_TIMEOUT_S = 2.0
"""How long a driver waits to connect to an actor before using Ray calls."""
MISSES = 3
"""Failed connections in a row after which an actor is reached through Ray only
(e.g. a driver that cannot reach the nodes' addresses)."""


def _tune(sock: socket.socket) -> None:
    """No Nagle delay (replies over 16 KiB go out in two writes); keep-alive
    probes, so that a lost node ends a wait in about half a minute."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def _tune_fd(fd: int) -> None:
    sock = socket.socket(fileno=os.dup(fd))
    _tune(sock)
    sock.close()


def listen(host: str, key: bytes, answer) -> tuple[str, int]:
    """Serve ``answer(message)`` to authenticated connections on ``host``,
    from daemon threads (one per connection); returns the address. A reply
    is ``(True, result)`` or ``(False, exception)``."""
    listener = Listener((host, 0))  # the handshake runs on each connection's own thread

    def accept():
        while True:
            try:
                conn = listener.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    def serve(conn: Connection):
        with conn:
            try:  # a stranger, or one that stalls, holds up only this thread
                deliver_challenge(conn, key)
                answer_challenge(conn, key)
            except (AuthenticationError, EOFError, OSError):
                return
            _tune_fd(conn.fileno())
            while True:
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    return
                try:
                    reply = (True, answer(message))
                except Exception as e:  # the caller raises it, as Ray would
                    reply = (False, e)
                conn.send(reply)

    threading.Thread(target=accept, daemon=True).start()
    return listener.address


class Links:
    """The driver's side: one connection per actor and thread (a thread's
    calls are strictly request, reply), opened on first use."""

    def __init__(self, keys: list[bytes], address_of):
        self._keys = keys
        self._address_of = address_of  # actor index -> its current address, through Ray
        self._addresses: dict[int, tuple] = {}
        self._misses = [0] * len(keys)
        self._local = threading.local()

    def call(self, messages: list[tuple[int, object]]):
        """Replies to ``(actor, message)`` pairs, sent all before any reply is
        read; None when a link failed (every link of this thread is then
        dropped, so no late reply is ever read as another's). An exception
        the actor raised is raised here."""
        conns = self._conns()
        try:
            links = [conns.get(a) or self._connect(a, conns) for a, _ in messages]
            if None in links:
                return None
            for link, (_, message) in zip(links, messages):
                link.send(message)
            replies = [link.recv() for link in links]
        except (OSError, EOFError, AuthenticationError):
            self.drop()
            return None
        for ok, value in replies:
            if not ok:
                raise value
        return [value for _, value in replies]

    def drop(self) -> None:
        """Close this thread's links; the next call reconnects to addresses
        asked anew."""
        for link in self._conns().values():
            link.close()
        self._local.conns = {}
        self._addresses.clear()

    def _conns(self) -> dict:
        if not hasattr(self._local, "conns"):
            self._local.conns = {}
        return self._local.conns

    def _connect(self, a: int, conns: dict):
        if self._misses[a] >= MISSES:
            return None
        if a not in self._addresses:
            self._addresses[a] = self._address_of(a)
        try:
            sock = socket.create_connection(self._addresses[a], timeout=CONNECT_TIMEOUT_S)
        except OSError:
            self._misses[a] += 1
            self._addresses.pop(a, None)
            return None
        _tune(sock)
        sock.settimeout(None)
        link = Connection(sock.detach())
        conns[a] = link
        answer_challenge(link, self._keys[a])
        deliver_challenge(link, self._keys[a])
        self._misses[a] = 0
        return link
