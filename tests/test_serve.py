"""``infinigram serve`` over real HTTP: a uvicorn server on a free loopback
port, every query type compared with the Python API on the same index, and
malformed requests that must each get a JSON 4xx."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import httpx
import numpy as np
import pytest
import uvicorn

import infinigram as ig
from conftest import make_index
from infinigram.limits import Limits
from infinigram import serve
from infinigram.serve import make_app

TEXTS = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog met",
         "the cat and the dog", "nothing here", "sat sat sat on a cat"]
LIMITS = Limits(timeout=300.0, max_docs=5, max_query_chars=200, max_query_tokens=60,
                max_body=4096)


def _free_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    """A text index (bytes tokenizer, metadata) and a two-shard ids-only index."""
    tmp = tmp_path_factory.mktemp("serve")
    corpus = tmp / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(TEXTS)))
    text = ig.open(ig.build([str(corpus)], str(tmp / "text"), tokenizer="bytes", quiet=True))
    docs = [[1, 2, 3, 1, 2], [2, 3, 4], [1, 2, 1, 2, 5], [5, 4, 3]]
    ids = ig.open(make_index(tmp, docs, vocab_size=8, shards=2))
    return {"text": text, "ids": ids}


@pytest.fixture(scope="module")
def url(indexes):
    """Base URL of a uvicorn server answering both indexes, in a thread."""
    sock = _free_socket()
    server = uvicorn.Server(uvicorn.Config(make_app(indexes, LIMITS), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


def ask(url, **body):
    r = httpx.post(url + "/", json=body, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def test_count(url, indexes):
    eng = indexes["text"]
    for q in ["the", "cat sat", "zebra", "t"]:
        r = ask(url, index="text", query_type="count", query=q)
        assert r["count"] == eng.count(q)
        assert r["token_ids"] == list(q.encode()) and r["tokens"] == list(q)
        assert r["latency"] >= 0
    assert ask(url, index="text", query_type="count", query="")["count"] == eng.n_tokens
    r = ask(url, corpus="text", query_type="count", query="cat AND dog OR mat")
    assert r["count"] == eng.count_cnf([["cat"], ["dog", "mat"]], 100) > 0
    assert r["token_ids"] == [[list(b"cat")], [list(b"dog"), list(b"mat")]]
    ids = indexes["ids"]
    r = ask(url, index="ids", query_type="count", query_ids=[1, 2])
    assert r["count"] == ids.count([1, 2]) == 4 and r["tokens"] is None
    r = ask(url, index="ids", query_type="count", query_ids=[[[1, 2]], [[5]]],
            max_diff_tokens=3)
    assert r["count"] == ids.count_cnf([[[1, 2]], [[5]]], 3)


def test_prob_and_ntd(url, indexes):
    eng = indexes["text"]
    r = ask(url, index="text", query_type="prob", query="the c")
    p = eng.prob("the ", ord("c"))
    assert (r["prob"], r["prompt_cnt"], r["cont_cnt"]) == (p.prob, p.prompt_count, p.cont_count)
    assert ask(url, index="text", query_type="prob", query="zq")["prob"] == -1.0
    for q in ["the ", "", "sat "]:
        r = ask(url, index="text", query_type="ntd", query=q)
        d = eng.ntd(q)
        assert r["prompt_cnt"] == d.prompt_count
        got = {int(k): (v["cont_cnt"], v["prob"], v["token"]) for k, v in r["result_by_token_id"].items()}
        assert got == {int(i): (int(c), float(p), chr(i)) for i, c, p in zip(d.ids, d.counts, d.probs)}
    r = ask(url, index="text", query_type="ntd", query="", max_support=2)
    top = sorted(eng.ntd("").counts, reverse=True)[:2]
    assert sorted((v["cont_cnt"] for v in r["result_by_token_id"].values()), reverse=True) == top


def test_infgram(url, indexes):
    eng = indexes["text"]
    for q in ["xyz the c", "a dog sat on the l", "q"]:
        r = ask(url, index="text", query_type="infgram_prob", query=q)
        p = eng.infgram_prob(q[:-1], ord(q[-1]))
        assert (r["prob"], r["prompt_cnt"], r["cont_cnt"]) == (p.prob, p.prompt_count, p.cont_count)
        assert r["suffix_len"] == p.effective_n - 1
        assert r["longest_suffix"] == q[:-1][len(q) - p.effective_n:]
        r = ask(url, index="text", query_type="infgram_ntd", query=q)
        d = eng.infgram_ntd(q)
        assert r["prompt_cnt"] == d.prompt_count and r["suffix_len"] == d.effective_n - 1
        assert r["longest_suffix"] == q[len(q) - d.effective_n + 1:]
        assert sorted(map(int, r["result_by_token_id"])) == d.ids.tolist()


def test_find_and_documents(url, indexes):
    eng = indexes["text"]
    r = ask(url, index="text", query_type="find", query="sat")
    f = eng.find("sat")
    assert r["cnt"] == f.count and r["segment_by_shard"] == [[b, e] for _, b, e in f.ranges]
    (lo, hi), = r["segment_by_shard"]
    seen = set()
    for rank in range(lo, hi):
        doc = ask(url, index="text", query_type="get_doc_by_rank", query="sat", s=0, rank=rank)
        text = eng.get_doc(doc["doc_ix"]).text
        assert text[doc["needle_offset"]:].startswith("sat")
        assert "".join(s for s, _ in doc["spans"]) == text
        assert [s for s, label in doc["spans"] if label is not None] == ["sat"] * text.count("sat")
        seen.add(doc["doc_ix"])
    assert seen == {h.doc_ix for h in eng.search_docs("sat", limit=100).docs}

    r = ask(url, index="text", query_type="find_cnf", query="cat AND dog")
    assert r["cnt"] == eng.count_cnf([["cat"], ["dog"]]) == sum(map(len, r["ptrs_by_shard"]))
    for ptr in r["ptrs_by_shard"][0]:
        doc = ask(url, index="text", query_type="get_doc_by_ptr", query="cat AND dog", s=0, ptr=ptr)
        text = eng.get_doc(doc["doc_ix"]).text
        assert text[doc["needle_offset"]:].startswith("cat") and "dog" in text
        assert {label for _, label in doc["spans"]} == {None, "0", "1"}

    r = ask(url, index="text", query_type="search_docs", query="cat", maxnum=2)
    s = eng.search_docs("cat", limit=2)
    assert r["cnt"] == s.count
    assert [(d["doc_ix"], d["needle_offset"]) for d in r["documents"]] == \
        [(h.doc_ix, h.position) for h in s.docs]
    for d in r["documents"]:
        doc = eng.get_doc(d["doc_ix"])
        assert d["token_ids"] == doc.tokens.tolist() and d["metadata"] == doc.metadata
        assert "cat" in [s for s, label in d["spans"] if label == "0"]
    r = ask(url, index="text", query_type="search_docs", query="cat AND dog")
    assert [d["doc_ix"] for d in r["documents"]] == [2, 3]
    r = ask(url, index="text", query_type="get_doc_by_ix", doc_ix=5, max_disp_len=7)
    assert r["doc_token_ids"] == eng.get_doc(5).tokens[:7].tolist() and r["doc_len"] == len(TEXTS[5])


def test_ids_index_two_shards(url, indexes):
    eng = indexes["ids"]
    r = ask(url, index="ids", query_type="find", query_ids=[1, 2])
    assert r["segment_by_shard"] == [[b, e] for _, b, e in eng.find([1, 2]).ranges]
    for s, (lo, hi) in enumerate(r["segment_by_shard"]):
        for rank in range(lo, hi):
            d = ask(url, index="ids", query_type="get_doc_by_rank", query_ids=[1, 2], s=s, rank=rank)
            toks = eng.get_doc(d["doc_ix"]).tokens.tolist()
            assert toks[d["needle_offset"]:d["needle_offset"] + 2] == [1, 2]
    r = ask(url, index="ids", query_type="search_docs", query_ids=[[[5]], [[4]]],
            max_diff_tokens=1)
    assert [d["doc_ix"] for d in r["documents"]] == [3]
    r = ask(url, index="ids", query_type="find_cnf", query_ids=[[[5]], [[4]]], max_diff_tokens=1)
    assert r["cnt"] == eng.count_cnf([[[5]], [[4]]], 1) == 1


def test_score_and_v1_routes(url, indexes):
    eng = indexes["text"]
    r = ask(url, index="text", query_type="score", query="the cat")
    sc = eng.score("the cat")
    assert r["effective_n"] == sc.effective_n.tolist() and r["probs"] == sc.probs.tolist()
    listed = httpx.get(url + "/v1/indexes").json()["indexes"]
    assert {(i["name"], i["tokens"], i["documents"]) for i in listed} == \
        {(n, e.n_tokens, e.n_docs) for n, e in indexes.items()}
    for route, body in [("count", {"query": "cat AND dog"}), ("prob", {"query": "the c"}),
                        ("ntd", {"query": "the "}), ("infgram_prob", {"query": "xyz the c"}),
                        ("infgram_ntd", {"query": "xyz sat"}), ("find", {"query": "sat"}),
                        ("find_cnf", {"query": "cat AND dog"}), ("score", {"query": "cat"}),
                        ("search_docs", {"query": "sat", "maxnum": 2}),
                        ("get_doc", {"doc_ix": 1}), ("get_doc", {"s": 0, "rank": 3})]:
        got = httpx.post(f"{url}/v1/text/{route}", json=body).json()
        kind = {"get_doc": "get_doc_by_ix" if "doc_ix" in body else "get_doc_by_rank"}.get(route, route)
        want = ask(url, index="text", query_type=kind, **body)
        assert {k: v for k, v in got.items() if k != "latency"} == \
            {k: v for k, v in want.items() if k != "latency"}
    schema = httpx.get(url + "/openapi.json").json()
    assert {"/v1/indexes", "/v1/{index}/count", "/v1/{index}/get_doc"} <= set(schema["paths"])


BAD = [  # (what, request keyword arguments for httpx.request, expected status or None)
    ("bad JSON", dict(content=b'{"index": "text",', headers={"content-type": "application/json"}), 400),
    ("JSON list", dict(json=[1, 2]), 400),
    ("JSON string", dict(json="count"), 400),
    ("deep JSON", dict(content=b"[" * 1500 + b"]" * 1500, headers={"content-type": "application/json"}), 400),
    ("non-UTF-8", dict(content=b'{"query": "\xff\xfe"}', headers={"content-type": "application/json"}), 400),
    ("text/plain", dict(content=b'{"index": "text"}', headers={"content-type": "text/plain"}), 415),
    ("no content type", dict(content=b'{"index": "text"}'), 415),
    ("huge body", dict(json={"index": "text", "query_type": "count", "query": "a" * 10000}), 413),
    ("unknown index", dict(json={"index": "nope", "query_type": "count", "query": "a"}), 404),
    ("index as list", dict(json={"index": ["text"], "query_type": "count", "query": "a"}), 404),
    ("no index", dict(json={"query_type": "count", "query": "a"}), 404),
    ("unknown type", dict(json={"index": "text", "query_type": "drop", "query": "a"}), 400),
    ("type as int", dict(json={"index": "text", "query_type": 3, "query": "a"}), 400),
    ("query and ids", dict(json={"index": "text", "query_type": "count", "query": "a", "query_ids": [1]}), 400),
    ("query as int", dict(json={"index": "text", "query_type": "count", "query": 5}), 400),
    ("ids as string", dict(json={"index": "text", "query_type": "count", "query_ids": "abc"}), 400),
    ("ids of floats", dict(json={"index": "text", "query_type": "count", "query_ids": [1.5]}), 400),
    ("ids of bools", dict(json={"index": "text", "query_type": "count", "query_ids": [True]}), 400),
    ("id out of range", dict(json={"index": "text", "query_type": "count", "query_ids": [300]}), 400),
    ("negative id", dict(json={"index": "text", "query_type": "count", "query_ids": [-1]}), 400),
    ("huge id", dict(json={"index": "text", "query_type": "count", "query_ids": [10 ** 30]}), 400),
    ("separator id", dict(json={"index": "ids", "query_type": "count", "query_ids": [65535]}), 400),
    ("separator id 1-byte", dict(json={"index": "text", "query_type": "count", "query_ids": [255]}), 400),
    ("doubly nested ids", dict(json={"index": "text", "query_type": "count", "query_ids": [[1, 2]]}), 400),
    ("too many chars", dict(json={"index": "text", "query_type": "count", "query": "a" * 201}), 422),
    ("too many tokens", dict(json={"index": "ids", "query_type": "count", "query_ids": [1] * 61}), 422),
    ("too many clauses", dict(json={"index": "text", "query_type": "count", "query": " AND ".join("abcde")}), 422),
    ("too many terms", dict(json={"index": "text", "query_type": "count", "query": " OR ".join("abcde")}), 422),
    ("empty CNF term", dict(json={"index": "text", "query_type": "count", "query": "a AND "}), 400),
    ("CNF for prob", dict(json={"index": "text", "query_type": "prob", "query": "a AND b"}), 400),
    ("empty prob", dict(json={"index": "text", "query_type": "prob", "query": ""}), 400),
    ("negative maxnum", dict(json={"index": "text", "query_type": "search_docs", "query": "a", "maxnum": -1}), 400),
    ("huge maxnum", dict(json={"index": "text", "query_type": "search_docs", "query": "a", "maxnum": 10 ** 9}), 422),
    ("maxnum as string", dict(json={"index": "text", "query_type": "search_docs", "query": "a", "maxnum": "5"}), 400),
    ("huge max_disp_len", dict(json={"index": "text", "query_type": "get_doc_by_ix", "doc_ix": 0, "max_disp_len": 10 ** 6}), 422),
    ("huge window", dict(json={"index": "text", "query_type": "count", "query": "a AND b", "max_diff_tokens": 10 ** 12}), 422),
    ("huge max_support", dict(json={"index": "text", "query_type": "ntd", "query": "a", "max_support": 10 ** 5}), 422),
    ("unknown field", dict(json={"index": "text", "query_type": "count", "query": "a", "maxnum": 3}), 400),
    ("doc_ix out of range", dict(json={"index": "text", "query_type": "get_doc_by_ix", "doc_ix": 6}), 400),
    ("doc_ix missing", dict(json={"index": "text", "query_type": "get_doc_by_ix"}), 400),
    ("shard out of range", dict(json={"index": "text", "query_type": "get_doc_by_rank", "s": 1, "rank": 0}), 400),
    ("rank out of range", dict(json={"index": "text", "query_type": "get_doc_by_rank", "s": 0, "rank": 10 ** 6}), 400),
    ("ptr at a separator", dict(json={"index": "text", "query_type": "get_doc_by_ptr", "s": 0, "ptr": 0}), 400),
    ("ptr out of range", dict(json={"index": "ids", "query_type": "get_doc_by_ptr", "s": 0, "ptr": 10 ** 9}), 400),
    ("odd ptr", dict(json={"index": "ids", "query_type": "get_doc_by_ptr", "s": 0, "ptr": 3}), 400),
    ("text on ids index", dict(json={"index": "ids", "query_type": "count", "query": "a"}), 400),
    ("v1 bad JSON", dict(url="/v1/text/count", content=b"{", headers={"content-type": "application/json"}), 422),
    ("v1 wrong type", dict(url="/v1/text/count", json={"query": 5}), 422),
    ("v1 extra field", dict(url="/v1/text/count", json={"query": "a", "bogus": 1}), 422),
    ("v1 ids as strings", dict(url="/v1/text/count", json={"query_ids": ["1"]}), 422),
    ("v1 unknown index", dict(url="/v1/nope/count", json={"query": "a"}), 404),
    ("v1 unknown route", dict(url="/v1/text/drop", json={"query": "a"}), 404),
    ("v1 GET on POST route", dict(method="GET", url="/v1/text/count"), 405),
    ("v1 non-UTF-8", dict(url="/v1/text/count", content=b"\xff", headers={"content-type": "application/json"}), 400),
    ("v1 text/plain", dict(url="/v1/text/count", content=b'{"query": "a"}', headers={"content-type": "text/plain"}), 422),
    ("v1 get_doc without doc", dict(url="/v1/text/get_doc", json={}), 400),
    ("v1 negative max_context", dict(url="/v1/text/score", json={"query": "a", "max_context": -2}), 400),
    ("v1 huge body", dict(url="/v1/text/count", json={"query_ids": [1] * 5000}), 413),
]


def test_malformed_requests(url, indexes):
    assert len(BAD) >= 30
    cats = indexes["text"].count("cat")
    for what, kw, status in BAD:
        kw = dict(kw)
        r = httpx.request(kw.pop("method", "POST"), url + kw.pop("url", "/"), timeout=60, **kw)
        assert r.status_code == status, (what, r.status_code, r.text)
        assert r.headers["content-type"] == "application/json", what
        assert isinstance(r.json()["error"], str) and r.json()["error"], what
        assert ask(url, index="text", query_type="count", query="cat")["count"] == cats, what


def test_limit_errors_name_the_limit(url):
    for what, kw, status in BAD:
        if status in (413, 422) and "json" in kw and not kw.get("url"):
            message = httpx.post(url + "/", json=kw["json"]).json()["error"]
            assert "over the server's limit" in message and "--max-" in message, what


def test_time_budget(indexes, monkeypatch):
    """Queries on worker threads are bounded by the time budget. count,
    prob, infgram_prob and find of a plain n-gram, and ntd, search_docs and
    infgram_ntd whose (suffix) n-gram has at most ``INLINE_MAX_COUNT``
    occurrences, are answered inline, in microseconds."""
    app = make_app(indexes, Limits(timeout=1e-9))
    from fastapi.testclient import TestClient
    client = TestClient(app)

    def post(query_type, query):
        return client.post("/", json={"index": "text", "query_type": query_type, "query": query})
    for query_type in ("ntd", "search_docs", "infgram_ntd", "count"):
        assert post(query_type, "cat").status_code == 200, query_type
    monkeypatch.setattr(serve, "INLINE_MAX_COUNT", 0)
    for query_type, query in (("ntd", "cat"), ("search_docs", "cat"), ("infgram_ntd", "cat"),
                              ("count", "cat AND dog")):
        r = post(query_type, query)
        assert r.status_code == 408 and "--timeout" in r.json()["error"], query_type


def test_page(url):
    page = httpx.get(url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/v1/indexes" in page.text and "query_type" in page.text


def test_package_imports_without_fastapi():
    code = ("import sys; sys.modules['fastapi'] = None; import infinigram, infinigram.cli\n"
            "try:\n    import infinigram.serve\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'infinigram[serve]'" in out.stdout and "\n" == out.stdout[-1:]


def test_cli_serves(indexes, tmp_path):
    sock = _free_socket()
    port = sock.getsockname()[1]
    sock.close()
    text_dir = indexes["text"].path
    proc = subprocess.Popen([sys.executable, "-m", "infinigram", "serve", str(text_dir),
                             "--name", f"other={text_dir}", "--port", str(port), "--max-docs", "3"],
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        for _ in range(600):
            try:
                listed = httpx.get(f"http://127.0.0.1:{port}/v1/indexes").json()["indexes"]
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.1)
        assert sorted(i["name"] for i in listed) == sorted([text_dir.name, "other"])
        r = httpx.post(f"http://127.0.0.1:{port}/", json={
            "index": "other", "query_type": "search_docs", "query": "a", "maxnum": 4})
        assert r.status_code == 422 and "max_docs=3" in r.json()["error"]
    finally:
        proc.terminate()
        proc.wait(10)


CHROMIUM = next((p for p in ("chromium", "chromium-browser") if shutil.which(p)), None)


@pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true",
                    reason="chromium is not installed (CI installs it; there this test runs)")
def test_page_in_a_browser(url, indexes):
    """Headless chromium loads the page with a query in the URL hash, runs
    its script and renders the count and the highlighted documents."""
    assert CHROMIUM, "chromium is missing: .ci/run installs it with apt"
    eng = indexes["text"]

    def dom(**state) -> str:
        page = f"{url}/#{urllib.parse.urlencode(state, quote_via=urllib.parse.quote)}"
        out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                              "--virtual-time-budget=20000", "--dump-dom", page],
                             capture_output=True, text=True, timeout=120)
        assert 'data-done="1"' in out.stdout, out.stderr[-2000:]
        return out.stdout

    html = dom(index="text", query_type="search_docs", query="cat AND dog")
    assert re.search(r'id="count">count: (\d+) ', html)[1] == str(eng.count_cnf([["cat"], ["dog"]]))
    docs = html.split('<div class="doc">')[1:]
    assert len(docs) == 2 and all('<mark class="c0">cat</mark>' in d and
                                  '<mark class="c1">dog</mark>' in d for d in docs)
    html = dom(index="text", query_type="infgram_ntd", query="xyz sat ")
    d = eng.infgram_ntd("xyz sat ")
    assert f'suffix used: "{"xyz sat "[-(d.effective_n - 1):]}"' in html
    assert html.count('class="bar"') == len(d.ids)
