"""Ray: a local 2-CPU cluster started here. A Ray engine answers as the
local engine (and the oracles), survives a killed actor, and a Ray build
writes the same bytes as a local build."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import ray

import infinigram as ig
from infinigram import cluster
from infinigram.errors import ArgumentError, ClusterError
from conftest import make_index
from naive import naive_count, naive_next_counts

pytestmark = pytest.mark.xdist_group("ray")  # one local cluster per test run


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _docs(seed=0, n=60):
    rng = np.random.default_rng(seed)
    return [list(rng.integers(0, 6, size=rng.integers(0, 40))) for _ in range(n)]


@pytest.mark.parametrize("direct", [True, False])
def test_ray_engine_answers_as_the_local_engine(tmp_path, direct):
    docs = _docs()
    meta = [{"i": i} for i in range(len(docs))]
    dirs = [make_index(tmp_path, docs[:25], shards=3, vocab_size=6, metadata=meta[:25]),
            make_index(tmp_path, docs[25:], shards=2, vocab_size=6, metadata=meta[25:])]
    local = ig.open(dirs)
    eng = cluster.RayEngine(local, True, direct=direct)
    assert len(eng.actors) == 5 and eng.n_docs == local.n_docs == len(docs)
    tokens = [np.asarray(s.tokens) for s in local.shards]
    queries = [[1], [1, 2], [3, 3], [0, 5, 1], [2, 2, 2, 2], [4]]
    assert eng.count_many(queries).tolist() == [naive_count(tokens, q) for q in queries]
    for q in queries:
        assert eng.count(q) == local.count(q) == naive_count(tokens, q)
        assert eng.find(q) == local.find(q)
        assert eng.prob(q, 1) == local.prob(q, 1) or np.isnan(local.prob(q, 1).prob)
        d = eng.ntd(q)
        assert dict(zip(d.ids.tolist(), d.counts.tolist())) == naive_next_counts(tokens, q)
        assert eng.infgram_prob(q + [5], 2) == local.infgram_prob(q + [5], 2)
        a, b = eng.infgram_ntd(q), local.infgram_ntd(q)
        assert a.effective_n == b.effective_n and a.counts.tolist() == b.counts.tolist()
        assert eng.search_docs(q, limit=7) == local.search_docs(q, limit=7)
    seq = [1, 2, 3, 1, 2, 5, 0, 0, 4]
    np.testing.assert_array_equal(eng.score(seq).probs, local.score(seq).probs)
    assert eng.creativity(seq).tolist() == local.creativity(seq).tolist()
    spans = [[(s.start, s.end, s.count, s.doc_ixs.tolist(), s.positions.tolist()) for s in
              e.attribute(seq, delimiters=[5], docs=3).spans] for e in (eng, local)]
    assert spans[0] == spans[1] and spans[0]
    a, b = eng.overlap([seq, seq[:2]], n=2), local.overlap([seq, seq[:2]], n=2)
    assert (a.ngrams.tolist(), a.found.tolist()) == (b.ngrams.tolist(), b.found.tolist())
    for ix in (0, 24, 25, len(docs) - 1):
        d = eng.get_doc(ix)
        assert d.tokens.tolist() == docs[ix] and d.metadata == {"i": ix}
    cnf = [[[1, 2]], [[3], [4]]]
    assert eng.count_cnf(cnf, window=5) == local.count_cnf(cnf, window=5)
    m, n = eng.find_cnf(cnf, window=5), local.find_cnf(cnf, window=5)
    assert (m.doc_ixs.tolist(), m.positions.tolist()) == (n.doc_ixs.tolist(), n.positions.tolist())
    assert m.count == n.count > 0
    a, b = (e.search_docs_cnf(cnf, window=5, limit=50, context=2) for e in (eng, local))
    assert [(h.doc_ix, h.position, h.context.tokens.tolist()) for h in a.docs] == \
        [(h.doc_ix, h.position, h.context.tokens.tolist()) for h in b.docs]
    ixs = [0, len(docs) - 1, 24, 25]
    assert [g.tokens.tolist() for g in eng.get_docs(ixs, around=0, window=2)] == \
        [docs[i][:2] for i in ixs]
    for L in (2, 4):  # across the shards of both indexes, through the actors
        a, b = eng.dedup(L), local.dedup(L)
        assert [x.tolist() for x in (a.doc_ixs, a.starts, a.ends)] == \
            [x.tolist() for x in (b.doc_ixs, b.starts, b.ends)]
        assert len(a.doc_ixs) and (a.doc_ixs >= 25).any()
    eng.close()


def test_a_killed_actor_is_restarted_and_the_query_retried(tmp_path):
    docs = _docs(1, 400)
    d = make_index(tmp_path, docs, shards=4, vocab_size=6)
    local = ig.open(d)
    eng = ig.open(d, ray=True)
    rng = np.random.default_rng(2)
    batch = rng.integers(0, 6, size=(20000, 3))
    expected = local.count_many(batch)
    answers = []
    worker = threading.Thread(target=lambda: answers.extend(eng.count_many(batch) for _ in range(8)))
    victim = ray.get(eng.actors[1].pid.remote())
    worker.start()
    os.kill(victim, signal.SIGKILL)
    worker.join()
    assert len(answers) == 8 and all((a == expected).all() for a in answers)
    assert ray.get(eng.actors[1].pid.remote()) != victim  # restarted
    assert eng.count([1, 2]) == local.count([1, 2])
    eng.close()


def test_an_actor_killed_between_direct_calls(tmp_path):
    """Small calls go over the direct links: a killed actor's link fails, the
    Ray call restarts it and answers, the next calls link to the new one."""
    d = make_index(tmp_path, _docs(5, 200), shards=4, vocab_size=6)
    local = ig.open(d)
    eng = ig.open(d, ray=True)
    queries = [[1], [2, 3], [0, 5, 1], [4, 4]]
    expected = [local.count(q) for q in queries]
    stop, answers, drops = threading.Event(), [], []
    drop = eng._links.drop
    eng._links.drop = lambda: drops.append(1) or drop()

    def ask():
        while not stop.is_set():
            answers.append([eng.count(q) for q in queries])

    workers = [threading.Thread(target=ask) for _ in range(2)]
    for w in workers:
        w.start()
    for k in (0, 3):
        victim = ray.get(eng.actors[k].pid.remote())
        os.kill(victim, signal.SIGKILL)
        while ray.get(eng.actors[k].pid.remote()) == victim:
            time.sleep(0.01)
        n, deadline = len(answers), time.monotonic() + 60
        while len(answers) < n + 20 and time.monotonic() < deadline:  # the new actor answers
            time.sleep(0.01)
    stop.set()
    for w in workers:
        w.join()
    assert len(answers) > 40 and all(a == expected for a in answers)
    assert drops  # a link to a killed actor failed, and the Ray call answered
    assert eng.get_doc(199).tokens.tolist() == local.get_doc(199).tokens.tolist()
    assert eng.count([1]) == local.count([1])
    assert sorted(eng._links._conns()) == [0, 1, 2, 3]  # linked to the restarted actors
    eng.close()


def _corpus(tmp_path):
    src = tmp_path / "corpus"
    src.mkdir()
    rng = np.random.default_rng(3)
    words = ["alpha", "beta", "gamma", "delta", "the", "a", "ab", ""]
    for k in range(5):
        with open(src / f"part{k}.jsonl", "w") as f:
            for i in range(40 * k):  # part0 holds no documents
                text = " ".join(rng.choice(words, size=rng.integers(0, 30)))
                f.write(json.dumps({"text": text, "k": k, "i": i}) + "\n")
    return src


@pytest.mark.parametrize("shard_tokens, max_memory", [(3000, None), (16000, 2_680_000)])
def test_ray_build_is_the_local_build(tmp_path, monkeypatch, shard_tokens, max_memory):
    """Many shards, a Ray task each; or fewer, each sorted in parts under the
    memory budget, a Ray task a part and a task a merged output range."""
    src = _corpus(tmp_path)
    monkeypatch.setattr(cluster, "GROUP_BYTES", 2000)  # several files a task, several tasks
    in_parts = []
    sort_in_parts = cluster._sort_in_parts
    monkeypatch.setattr(cluster, "_sort_in_parts",
                        lambda *a: in_parts.append(len(a[4])) or sort_in_parts(*a))
    kw = dict(tokenizer="bytes", shard_tokens=shard_tokens, max_memory=max_memory, threads=1,
              quiet=True)
    local = ig.build([src], tmp_path / "local", **kw)
    remote = ig.build([src], tmp_path / "ray", ray=True, **kw)
    tables = len(list(local.glob("table.*")))
    if max_memory is None:
        assert in_parts == []
    else:  # every shard sorted in parts, as Ray tasks
        assert len(in_parts) == tables and min(in_parts) > 1
    names = sorted(p.name for p in local.iterdir())
    assert len([n for n in names if n.startswith("table.")]) >= 2
    assert names == sorted(p.name for p in remote.iterdir())
    for name in names:
        assert (local / name).read_bytes() == (remote / name).read_bytes(), name
    assert not [p for p in tmp_path.iterdir() if ".building-" in p.name]


def test_ray_not_installed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ClusterError, match=r"infinigram\[ray\]"):
        cluster.connect(True)


def test_unreachable_address_is_one_clear_error(tmp_path):
    d = make_index(tmp_path, [[1, 2]])
    with pytest.raises(ClusterError, match="cannot reach a Ray cluster at '127.0.0.1:1'"):
        ig.open(d, ray="127.0.0.1:1")
    with pytest.raises(ClusterError, match="is not a Ray address"):
        ig.open(d, ray=5)


def test_cli_build_with_ray_address_error_is_one_line(tmp_path):
    src = _corpus(tmp_path)
    out = subprocess.run([sys.executable, "-m", "infinigram", "build", str(src), "-o",
                          str(tmp_path / "x"), "--bytes", "--ray", "127.0.0.1:1", "--quiet"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "cannot reach a Ray cluster" in out.stderr and not (tmp_path / "x").exists()


def test_groups_of_shards_share_an_actor(tmp_path):
    d = make_index(tmp_path, _docs(4), shards=5, vocab_size=6)
    local = ig.open(d)
    eng = cluster.RayEngine(local, True, shards_per_actor=2)
    assert len(eng.actors) == 3
    assert eng.count_many([[1], [2, 3]]).tolist() == local.count_many([[1], [2, 3]]).tolist()
    assert eng.get_doc(59).tokens.tolist() == local.get_doc(59).tokens.tolist()
    eng.close()
    with pytest.raises(ArgumentError, match="shards_per_actor=0"):
        cluster.RayEngine(local, True, shards_per_actor=0)
    with pytest.raises(ArgumentError, match="direct='no' is not a bool"):
        cluster.RayEngine(local, True, direct="no")
