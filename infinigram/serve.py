"""``infinigram serve``: a read-only HTTP API and web page over named indexes.

Two request shapes share one dispatcher: infini-gram's (``POST /`` with
``{"index", "query_type", "query" | "query_ids", ...}``) and REST routes
under ``/v1/`` (described by the OpenAPI schema at ``/docs``). Queries whose
work is small and bounded are answered on the event loop (``_inline``), the
rest in worker threads; each is bounded by :class:`Limits`; every error is a
JSON 4xx ``{"error": message}``.

(No ``from __future__ import annotations``: FastAPI reads the request
models from the route functions' annotations.)
"""
import dataclasses
import functools
import json
import os
import time
import weakref
from importlib import resources
from typing import Callable, Optional, Union

import numpy as np

try:
    import anyio
    import orjson
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from pydantic import BaseModel, ConfigDict
    from starlette.exceptions import HTTPException
except ImportError as e:
    raise ImportError(f"infinigram serve needs FastAPI, uvicorn and orjson ({e.name} is missing); "
                      "install them with `pip install 'infinigram[serve]'`") from None

from . import args
from .documents import parse_cnf
from .engine import Engine
from .errors import InfinigramError, QueryError
from .limits import Limits, flag
from .results import jsonable


class HTTPError(Exception):
    """An error answered with ``status`` and the JSON ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _over(limits: Limits, name: str, value) -> None:
    """Raise a 422 naming the limit when ``value`` exceeds ``limits.name``."""
    message = limits.over(name, value)
    if message:
        raise HTTPError(422, message)


# ---- queries ----------------------------------------------------------------
def _is_cnf(q) -> bool:
    """Whether the query or query_ids ``q`` is a CNF: text with ' AND ' or
    ' OR ', or ids nested three deep."""
    if isinstance(q, str):
        return " AND " in q or " OR " in q
    return isinstance(q, list) and bool(q) and all(
        isinstance(c, list) and all(isinstance(t, list) for t in c) for c in q)


def _ids(eng: Engine, q) -> np.ndarray:
    """Checked int64 token ids of a text term or a list of ids (may be empty)."""
    if isinstance(q, str):
        return eng.tokenize(q)
    return args.ids(q, eng.vocab_size, separator=eng.separator, what="query_ids")


def parse_query(eng: Engine, limits: Limits, query, query_ids):
    """The query of a request: int64 ids, or a CNF (a list of clauses, each
    a list of int64 id arrays) for text with ' AND ' / ' OR ' or a triply
    nested query_ids."""
    if query is not None and query_ids is not None:
        raise QueryError("give one of query (text) and query_ids (token ids), not both")
    if query is not None:
        if not isinstance(query, str):
            raise QueryError(f"query={query!r:.60} must be a string; pass token ids as query_ids")
        _over(limits, "max_query_chars", len(query))
        cnf = parse_cnf(query) if _is_cnf(query) else None
    elif query_ids is not None and not isinstance(query_ids, list):
        raise QueryError(f"query_ids={query_ids!r:.60} must be a list of token ids, or a CNF "
                         "(a list of clauses, each a list of lists of token ids)")
    else:
        cnf = query_ids if _is_cnf(query_ids) else None
    if cnf is None:
        ids = _ids(eng, "" if query is None and query_ids is None else
                   query if query is not None else query_ids)
        _over(limits, "max_query_tokens", len(ids))
        return ids
    _over(limits, "max_clauses", len(cnf))
    for clause in cnf:
        _over(limits, "max_terms", len(clause))
    cnf = [[_ids(eng, t) for t in c] for c in cnf]
    _over(limits, "max_query_tokens", sum(len(t) for c in cnf for t in c))
    for c in cnf:
        for t in c:
            if not len(t):
                raise QueryError("a CNF term is empty; every term between AND / OR needs a token")
    return cnf


def _tokens(eng: Engine, q):
    """The tokens of a query as strings (None for an ids-only index)."""
    if eng.tokenizer is None:
        return None
    if isinstance(q, list):
        return [[_tokens(eng, t) for t in c] for c in q]
    texts = _token_texts(eng)
    return [texts(i) for i in q.tolist()]


_TEXTS: "weakref.WeakKeyDictionary[Engine, Callable]" = weakref.WeakKeyDictionary()


def _token_texts(eng: Engine) -> Callable[[int], str]:
    """The text of one token id of ``eng``, each decoded once (a
    distribution names up to ``max_support`` tokens)."""
    texts = _TEXTS.get(eng)
    if texts is None:
        ref = weakref.ref(eng)  # the cache must not keep its engine alive
        texts = _TEXTS[eng] = functools.lru_cache(maxsize=None)(lambda i: _text(ref(), [i]))
    return texts


def _simple(q, query_type: str) -> np.ndarray:
    if isinstance(q, list):
        raise QueryError(f"query_type {query_type} does not take a CNF (AND / OR) query; "
                         "use count, search_docs or find_cnf")
    return q


def _nonempty(q, query_type: str) -> np.ndarray:
    q = _simple(q, query_type)
    if not len(q):
        raise QueryError(f"query_type {query_type} needs a non-empty query (the prompt, then "
                         "the next token)")
    return q


def _text(eng: Engine, ids) -> str:
    return eng.decode(ids) if eng.tokenizer is not None else " ".join(map(str, ids))


def _dist(eng: Engine, r, max_support: int) -> dict:
    """infini-gram's fields of a NextTokenDist, the ``max_support`` most frequent tokens."""
    top = np.sort(np.argsort(-r.counts, kind="stable")[:max_support])
    text = _token_texts(eng)
    return {"prompt_cnt": r.prompt_count, "approx": False, "suffix_len": r.effective_n - 1,
            "result_by_token_id": {i: {"token": text(i), "prob": p, "cont_cnt": c}
                                   for i, p, c in zip(r.ids[top].tolist(), r.probs[top].tolist(),
                                                      r.counts[top].tolist())}}


def _spans(eng: Engine, tokens: np.ndarray, cnf: list) -> list:
    """[text, clause label or None] pieces of ``tokens``: each match of a
    term of clause d is labelled str(d), earlier clauses first."""
    owner = [-1] * len(tokens)
    labels = []
    for d, clause in enumerate(cnf):
        for term in clause:
            m = len(term)
            if not m or m > len(tokens):
                continue
            hits = (np.lib.stride_tricks.sliding_window_view(tokens, m) == term).all(axis=1)
            for s in np.flatnonzero(hits).tolist():
                if owner[s:s + m].count(-1) == m:
                    owner[s:s + m] = [len(labels)] * m
                    labels.append(str(d))
    cuts = [0, *(np.flatnonzero(np.diff(owner)) + 1).tolist(), len(tokens)]
    ids = tokens.tolist()
    return [[_text(eng, ids[a:b]), labels[owner[a]] if owner[a] >= 0 else None]
            for a, b in zip(cuts, cuts[1:]) if b > a]


def _document(eng: Engine, doc_ix: int, needle: Optional[int], disp: int, q) -> dict:
    """Document ``doc_ix``: at most ``disp`` tokens around token ``needle``
    (from the start without one), the query's matches marked in ``spans``."""
    n = eng.doc_length(doc_ix)
    begin = max(0, min((needle or 0) - disp // 2, n - disp))
    end = min(n, begin + disp)
    half = (end - begin + 1) // 2
    d = eng.get_doc(doc_ix, window=half, around=begin + half)
    tokens = d.tokens[:end - begin]
    cnf = q if isinstance(q, list) else [[q]]
    return {"doc_ix": doc_ix, "doc_len": n, "disp_len": len(tokens), "disp_offset": begin,
            "needle_offset": needle, "metadata": d.metadata, "source": d.source,
            "token_ids": tokens, "spans": _spans(eng, tokens, cnf)}


def _count(eng, limits, q, max_diff_tokens):
    if isinstance(q, list):
        return {"count": eng.count_cnf(q, max_diff_tokens), "approx": False}
    return {"count": eng.count(q) if len(q) else eng.n_tokens, "approx": False}


def _prob(eng, limits, q):
    q = _nonempty(q, "prob")
    r = eng.prob(q[:-1], int(q[-1]))
    return {"prompt_cnt": r.prompt_count, "cont_cnt": r.cont_count,
            "prob": r.prob if r.prompt_count else -1.0}


def _ntd(eng, limits, q, max_support):
    return _dist(eng, eng.ntd(_simple(q, "ntd")), max_support)


def _infgram_prob(eng, limits, q):
    q = _nonempty(q, "infgram_prob")
    r = eng.infgram_prob(q[:-1], int(q[-1]))
    n = r.effective_n - 1
    return {"prompt_cnt": r.prompt_count, "cont_cnt": r.cont_count,
            "prob": r.prob if r.prompt_count else -1.0, "suffix_len": n,
            "longest_suffix": _text(eng, q[len(q) - 1 - n:-1].tolist())}


def _infgram_ntd(eng, limits, q, max_support):
    q = _simple(q, "infgram_ntd")
    out = _dist(eng, eng.infgram_ntd(q), max_support)
    out["longest_suffix"] = _text(eng, q[len(q) - out["suffix_len"]:].tolist())
    return out


def _find(eng, limits, q):
    r = eng.find(_simple(q, "find"))
    return {"cnt": r.count, "segment_by_shard": [[b, e] for _, b, e in r.ranges]}


def _cnf(q) -> list:
    return q if isinstance(q, list) else [[q]]


def _find_cnf(eng, limits, q, max_diff_tokens):
    found = eng.find_cnf(_cnf(q), max_diff_tokens)
    return {"cnt": found.count, "approx": False,
            "ptrs_by_shard": [p[:limits.max_ptrs] * eng.token_width
                              for p in found.shard_positions]}


def _search_docs(eng, limits, q, maxnum, max_disp_len, max_diff_tokens):
    r = eng.search_docs_cnf(_cnf(q), limit=maxnum, window=max_diff_tokens)
    return {"cnt": r.count, "approx": False,
            "message": f"{r.count} occurrences found; showing {len(r.docs)} documents",
            "documents": [_document(eng, h.doc_ix, h.position, max_disp_len, q) for h in r.docs]}


def _doc_at(eng, q, shard, position, max_disp_len):
    docs, offsets = eng.locate(shard, np.array([position]))
    return _top_doc(_document(eng, int(docs[0]), int(offsets[0]), max_disp_len, q))


def _top_doc(doc: dict) -> dict:
    """A document as a whole response: its tokens as ``doc_token_ids``,
    since ``token_ids`` holds the query's (as infini-gram answers)."""
    doc["doc_token_ids"] = doc.pop("token_ids")
    return doc


def _get_doc_by_rank(eng, limits, q, s, rank, max_disp_len):
    return _doc_at(eng, q, s, eng.rank_position(s, rank), max_disp_len)


def _get_doc_by_ptr(eng, limits, q, s, ptr, max_disp_len):
    if ptr % eng.token_width:
        raise QueryError(f"ptr={ptr} is not a multiple of the token width {eng.token_width}; "
                         "pass a byte offset of a token")
    return _doc_at(eng, q, s, ptr // eng.token_width, max_disp_len)


def _get_doc_by_ix(eng, limits, q, doc_ix, max_disp_len):
    return _top_doc(_document(eng, doc_ix, None, max_disp_len, q))


def _score(eng, limits, q, max_context):
    r = eng.score(_simple(q, "score"), max_context)
    return {f.name: getattr(r, f.name) for f in dataclasses.fields(r)}


def _dumps(out) -> bytes:
    """JSON of an answer, as ``results.jsonable`` would make it (arrays as
    lists, NaN and ±inf as null), with orjson: about 10x ``json.dumps``,
    which took most of a next-token distribution's time to answer."""
    return orjson.dumps(out, default=jsonable, option=_ORJSON)


_ORJSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def warm(engines: dict) -> None:
    """Run every query type but the document getters once on each engine
    (a one- and a two-token query), so that no request waits for a kernel
    to load or compile."""
    limits = Limits()
    for eng in engines.values():
        for name, fn in HANDLERS.items():
            if not name.startswith("get_doc_by_"):
                for q in ([0], [0, 0]):
                    fn(eng, limits, np.array(q, dtype=np.int64), **_params(fn, {}, limits))


WORKERS = 2 * (os.cpu_count() or 1)
"""Queries running at once on worker threads (the rest wait their turn):
enough to keep every core busy, few enough that each thread's scratch
memory (``shard.SCRATCH_MAX``) stays bounded."""

INLINE = {"count", "prob", "infgram_prob", "find"}
"""Query types answered on the event loop itself: a few searches each (at
most ``max_query_tokens`` long, well under a millisecond), cheaper than the
hand-over to a worker thread."""

INLINE_MAX_COUNT = 10_000
"""ntd and search_docs of an n-gram, and infgram_ntd of a prompt whose
longest usable suffix has at most this many occurrences are answered on the
event loop too (their work grows with the occurrences: well under a
millisecond here); every other query runs on a worker thread."""


def _inline(eng: Engine, query_type: str, q) -> bool:
    """Whether to answer query ``q`` on the event loop (see ``INLINE``)."""
    if isinstance(q, list):  # a CNF
        return False
    if query_type in INLINE:
        return True
    if query_type == "infgram_ntd":  # the suffix's count, from two searches
        return eng.infgram_prob(q, 0).prompt_count <= INLINE_MAX_COUNT
    return query_type in ("ntd", "search_docs") and len(q) > 0 \
        and eng.count(q) <= INLINE_MAX_COUNT


HANDLERS: dict[str, Callable] = {
    "count": _count, "prob": _prob, "ntd": _ntd, "infgram_prob": _infgram_prob,
    "infgram_ntd": _infgram_ntd, "find": _find, "find_cnf": _find_cnf,
    "search_docs": _search_docs, "get_doc_by_rank": _get_doc_by_rank,
    "get_doc_by_ptr": _get_doc_by_ptr, "get_doc_by_ix": _get_doc_by_ix, "score": _score}
"""Every query type: its function takes (engine, limits, query, **params)."""

_PARAMS = {  # name: (lowest value, the limit bounding it, default: None for the
    # limit itself, ... for none (the field is required))
    "maxnum": (1, "max_docs", None), "max_disp_len": (1, "max_disp_len", None),
    "max_support": (1, "max_support", None), "max_diff_tokens": (0, "max_window", 100),
    "max_context": (0, None, None), "s": (0, None, ...), "rank": (0, None, ...),
    "ptr": (0, None, ...), "doc_ix": (0, None, ...)}
_IGNORED = {"engine", "source", "timestamp", "max_clause_freq"}
"""Fields infini-gram's clients send that change nothing here."""


def _params(fn: Callable, fields: dict, limits: Limits) -> dict:
    """The checked keyword arguments of query function ``fn`` from ``fields``."""
    names = fn.__code__.co_varnames[3:fn.__code__.co_argcount]
    unknown = set(fields) - set(names) - _IGNORED
    if unknown:
        raise QueryError(f"unknown field(s) {sorted(unknown)} for this query type; it takes "
                         f"{['query', 'query_ids', *names]}")
    out = {}
    for name in names:
        low, limit, default = _PARAMS[name]
        value = fields.get(name)
        if value is not None:
            value = args.integer(name, value, low=low)
            if limit:
                _over(limits, limit, value)
        elif default is ...:
            raise QueryError(f"field {name!r} is missing; pass an integer")
        elif limit:
            value = getattr(limits, limit) if default is None else min(default, getattr(limits, limit))
        out[name] = value
    return out


# ---- the app ------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    query: Optional[str] = None
    """Text; ' AND ' / ' OR ' make it a CNF where the route takes one."""
    query_ids: Optional[Union[list[int], list[list[list[int]]]]] = None
    """Token ids, or a CNF: clauses (AND) of terms (OR) of token ids."""


class _Window(_Body):
    max_diff_tokens: Optional[int] = None


class _Support(_Body):
    max_support: Optional[int] = None


class _Score(_Body):
    max_context: Optional[int] = None


class _Search(_Window):
    maxnum: Optional[int] = None
    max_disp_len: Optional[int] = None


class _GetDoc(_Body):
    doc_ix: Optional[int] = None
    s: Optional[int] = None
    rank: Optional[int] = None
    ptr: Optional[int] = None
    max_disp_len: Optional[int] = None


def _get_doc_type(fields: dict) -> str:
    for key in ("doc_ix", "ptr", "rank"):
        if key in fields:
            return f"get_doc_by_{key.removeprefix('doc_')}"
    raise QueryError("get_doc needs doc_ix, or s and ptr, or s and rank")


_ROUTES = {  # /v1/{index}/NAME: (body model, query type, or a function of the fields)
    "count": (_Window, "count"), "prob": (_Body, "prob"), "ntd": (_Support, "ntd"),
    "infgram_prob": (_Body, "infgram_prob"), "infgram_ntd": (_Support, "infgram_ntd"),
    "find": (_Body, "find"), "find_cnf": (_Window, "find_cnf"), "score": (_Score, "score"),
    "search_docs": (_Search, "search_docs"), "get_doc": (_GetDoc, _get_doc_type)}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class _BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets a 413."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = (f"the request body is over the server's limit max_body={self.limit} bytes "
                   f"({flag('max_body')}); send a smaller query")
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            return await _error(413, message)(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            event = await receive()
            seen += len(event.get("body", b""))
            if seen > self.limit:
                raise HTTPError(413, message)
            return event
        await self.app(scope, limited, send)


def _describe(index: str, eng: Engine) -> dict:
    m = eng.manifest
    return {"name": index, "tokens": eng.n_tokens, "documents": eng.n_docs,
            "shards": len(eng.shards), "token_width": eng.token_width,
            "vocab_size": eng.vocab_size, "tokenizer": m.tokenizer["kind"] if m else "given"}


def make_app(engines: dict, limits: Limits = Limits()) -> FastAPI:
    """The FastAPI app serving ``engines`` (name: Engine) under ``limits``."""
    app = FastAPI(title="infinigram", description="n-gram and ∞-gram queries over "
                  "suffix-array indexes (read-only).", version="1")
    page = resources.files(__package__).joinpath("static/index.html").read_text("utf-8")
    workers = anyio.CapacityLimiter(WORKERS)

    async def answer(index: str, query_type: str, fields: dict) -> Response:
        eng = engines.get(index) if isinstance(index, str) else None
        if eng is None:
            raise HTTPError(404, f"no index named {index!r:.80}; this server has "
                                 f"{sorted(engines)} (GET /v1/indexes)")
        fn = HANDLERS.get(query_type) if isinstance(query_type, str) else None
        if fn is None:
            raise HTTPError(400, f"query_type {query_type!r:.60} is not one of {list(HANDLERS)}")
        start = time.perf_counter()
        query, query_ids = fields.pop("query", None), fields.pop("query_ids", None)
        params = _params(fn, fields, limits)
        q = parse_query(eng, limits, query, query_ids)

        def work() -> bytes:
            out = fn(eng, limits, q, **params)
            out["latency"] = (time.perf_counter() - start) * 1000
            out["token_ids"], out["tokens"] = q, _tokens(eng, q)
            return _dumps(out)  # here, not on the event loop
        if _inline(eng, query_type, q):
            return Response(work(), media_type="application/json")
        try:
            with anyio.fail_after(limits.timeout):
                body = await anyio.to_thread.run_sync(work, abandon_on_cancel=True,
                                                      limiter=workers)
        except TimeoutError:
            raise HTTPError(408, f"the query ran over the server's limit timeout={limits.timeout} "
                                 f"seconds ({flag('timeout')}); ask for less") from None
        return Response(body, media_type="application/json")

    @app.exception_handler(HTTPError)
    async def _http_error(request, e: HTTPError):
        return _error(e.status, str(e))

    @app.exception_handler(InfinigramError)
    async def _library_error(request, e: InfinigramError):
        return _error(400, " ".join(str(e).split()))

    @app.exception_handler(HTTPException)
    async def _starlette_error(request, e: HTTPException):
        return _error(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e: RequestValidationError):
        parts = [f"{'.'.join(map(str, err.get('loc', ())))}: {err.get('msg')}" for err in e.errors()]
        return _error(422, "; ".join(parts)[:500] or "invalid request")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home():
        return page

    @app.post("/", summary="infini-gram's request shape")
    async def legacy(request: Request):
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise HTTPError(415, f"content type {kind!r:.60} is not application/json; "
                                 "send the query as a JSON object")
        try:
            data = json.loads((await request.body()).decode("utf-8"))
        except UnicodeDecodeError as e:
            raise HTTPError(400, f"the body is not UTF-8 ({e.reason} at byte {e.start}); "
                                 "send UTF-8 JSON") from None
        except (ValueError, RecursionError) as e:
            raise HTTPError(400, f"the body is not JSON ({str(e)[:80]}); send a JSON "
                                 "object") from None
        if not isinstance(data, dict):
            raise HTTPError(400, f"the body is a JSON {type(data).__name__}, not an object; "
                                 "send {\"index\", \"query_type\", \"query\" | \"query_ids\"}")
        index = data.pop("index", data.pop("corpus", None))
        return await answer(index, data.pop("query_type", None), data)

    @app.get("/v1/indexes", summary="The indexes this server answers")
    async def indexes():
        return {"indexes": [_describe(name, eng) for name, eng in engines.items()]}

    for name, (model, query_type) in _ROUTES.items():
        _add_route(app, answer, name, model, query_type)
    app.add_middleware(_BodyLimit, limit=limits.max_body)
    return app


def _add_route(app: FastAPI, answer, name: str, model, query_type) -> None:
    """POST /v1/{index}/NAME: ``query_type`` (or the type it names for the body)."""
    async def route(index: str, body):
        fields = body.model_dump(exclude_none=True)
        kind = query_type(fields) if callable(query_type) else query_type
        return await answer(index, kind, fields)
    route.__annotations__ = {"index": str, "body": model}
    app.post(f"/v1/{{index}}/{name}", summary=f"{name} (query types: see POST /)")(route)
