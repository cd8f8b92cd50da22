"""Direct links from a Ray engine to its actors (no Ray here): replies,
raised errors, a wrong key, a dead peer, several threads."""
import socket
import threading
from multiprocessing.connection import Listener

import pytest

from infinigram.direct import MISSES, Links, listen


def _answer(message):
    if message == "boom":
        raise KeyError("boom")
    return message * 2


@pytest.fixture
def peers():
    keys = [b"a" * 32, b"b" * 32]
    return keys, [listen("127.0.0.1", k, _answer) for k in keys]


def test_replies_in_order_and_errors_raised(peers):
    keys, addresses = peers
    links = Links(keys, addresses.__getitem__)
    assert links.call([(0, 3), (1, "x"), (0, [1])]) == [6, "xx", [1, 1]]
    with pytest.raises(KeyError, match="boom"):
        links.call([(1, "boom")])
    assert links.call([(1, 5)]) == [10]  # the link still works after an error


def test_a_wrong_key_never_answers(peers):
    keys, addresses = peers
    links = Links(keys, lambda a: addresses[1 - a])  # each actor's address is the other's
    assert links.call([(0, 1)]) is None
    assert links.call([(1, 1)]) is None


def test_a_closed_port_falls_back_then_gives_up(peers):
    keys, addresses = peers
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()  # nothing listens here once closed
    asked = []
    links = Links(keys, lambda a: asked.append(a) or closed)
    for _ in range(MISSES + 2):
        assert links.call([(0, 1)]) is None
    assert len(asked) == MISSES  # asked anew after each miss, then no more


def test_a_peer_that_hangs_up_mid_call(peers):
    keys, addresses = peers
    key = b"c" * 32
    listener = Listener(("127.0.0.1", 0), authkey=key)

    def hang_up():  # authenticates, reads the request, ends without a reply
        with listener.accept() as conn:
            conn.recv()

    thread = threading.Thread(target=hang_up)
    thread.start()
    links = Links([key, keys[0]], [listener.address, addresses[0]].__getitem__)
    assert links.call([(1, 2), (0, 1)]) is None
    thread.join()
    listener.close()
    assert links.call([(1, 2)]) == [4]  # the other links were dropped and reopen


def test_threads_have_their_own_links(peers):
    keys, addresses = peers
    links = Links(keys, addresses.__getitem__)
    out = {}

    def work(t):
        out[t] = [links.call([(t % 2, i), (1 - t % 2, -i)]) for i in range(200)]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(out[t] == [[2 * i, -2 * i] for i in range(200)] for t in range(4))


def test_a_stalled_stranger_does_not_hold_up_the_others(peers):
    keys, addresses = peers
    with socket.create_connection(addresses[0]):  # connects, never answers the challenge
        links = Links(keys, addresses.__getitem__)
        assert links.call([(0, 4)]) == [8]
