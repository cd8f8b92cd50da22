"""Ray (extra ``[ray]``): engines whose shards live in actors across a
cluster, and builds whose work runs as Ray tasks.

A :class:`RayEngine` is an :class:`~infinigram.engine.Engine` whose per-shard
calls (``Engine._fan`` / ``_on``) run in actors, each holding the
:class:`~infinigram.shard.ShardSearcher` of one group of shards mapped from
a file system every node shares; the engine combines their answers with the
same code as a local engine, so both answer alike. The driver checks and
maps the same files (pages load only where it reads them). Calls whose
arguments are small go over direct connections to the actors
(:mod:`infinigram.direct`), the others, and any call whose connection
fails, as Ray actor calls. A lost actor is restarted and its call retried
(queries only read), up to ``RETRIES`` times; then the query fails with a
ClusterError, never a wrong answer.
"""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import numpy as np

from . import args, format as fmt
from .direct import Links, listen
from .engine import Engine
from .shard import ShardSearcher
from .errors import ArgumentError, ClusterError

RETRIES = 4
"""Restarts of a lost actor, and retries of a call it was running."""
INLINE_BYTES = 1 << 16
"""Arguments larger than this go to Ray's object store once per fan-out."""


def ray_module():
    """The ``ray`` module, or a ClusterError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ClusterError("Ray is not installed; install the extra with "
                           "`pip install 'infinigram[ray]'`") from None
    return ray


def connect(address=True):
    """``ray``, connected: ``True`` joins the running cluster (or starts a
    local one), a string joins the cluster at that address (``HOST:PORT``
    or ``ray://HOST:PORT``)."""
    ray = ray_module()
    if address is not True and not isinstance(address, str):
        raise ClusterError(f"ray={address!r} is not a Ray address; pass True or 'HOST:PORT'")
    if isinstance(address, str) and ":" in address:
        _probe(address)
    if not ray.is_initialized():
        try:
            ray.init(address=None if address is True else address, log_to_driver=False,
                     configure_logging=False)
        except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError...
            raise _unreachable(address, " ".join(str(e).split())[:200]) from None
    return ray


def _probe(address: str, timeout: float = 5.0) -> None:
    """Raise ClusterError at once when nothing listens at ``address`` (Ray
    itself would retry for minutes)."""
    host, _, port = address.split("://")[-1].rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise _unreachable(address, str(e)) from None


def _unreachable(address: str, reason: str) -> ClusterError:
    return ClusterError(f"cannot reach a Ray cluster at {address!r} ({reason}); start one with "
                        "`ray start --head` and pass its address, or ray=True for a local one")


class _ShardGroup:
    """The searchers of a group of shards, inside one actor."""

    def __init__(self, places: list[tuple[str, int, int]], key: bytes):
        import ray
        self.searchers = [ShardSearcher(fmt.open_shard(d, s, w)) for d, s, w in places]
        self._address = listen(ray.util.get_node_ip_address(), key,
                               lambda m: self.fan(*m[1:]) if m[0] is None else self.on(*m))

    def address(self) -> tuple[str, int]:
        return self._address

    def fan(self, method: str, *params) -> list:
        return [getattr(s, method)(*params) for s in self.searchers]

    def on(self, k: int, method: str, *params):
        return getattr(self.searchers[k], method)(*params)

    def pid(self) -> int:
        return os.getpid()


class RayEngine(Engine):
    """An engine whose shards answer from Ray actors (``shards_per_actor``
    shards each); made by ``infinigram.open(paths, ray=...)``. With
    ``direct=False`` every call is a Ray actor call."""

    def __init__(self, local: Engine, address=True, shards_per_actor: int = 1,
                 direct: bool = True):
        shards_per_actor = args.integer("shards_per_actor", shards_per_actor, low=1,
                                        error=ArgumentError)
        direct = args.flag("direct", direct, error=ArgumentError)
        ray = connect(address)
        super().__init__(local.paths, list(local.shards), local.token_width, local.vocab_size,
                         local._spec, local.manifests, local._tokenizer, local.shard_dirs)
        places = [(str(d), s.index, s.width) for d, s in zip(local.shard_dirs, local.shards)]
        actor = ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES, num_cpus=0,
                           scheduling_strategy="SPREAD")(_ShardGroup)  # across the nodes
        groups = [places[i:i + shards_per_actor] for i in range(0, len(places), shards_per_actor)]
        self._ray = ray
        keys = [os.urandom(32) for _ in groups]
        self.actors = [actor.remote(g, k) for g, k in zip(groups, keys)]
        self._where = [(a, j) for a, g in enumerate(groups) for j in range(len(g))]
        self._get([a.pid.remote() for a in self.actors])  # every actor has opened its shards
        self._links = Links(keys, lambda a: self._get(self.actors[a].address.remote())) \
            if direct else None

    def _get(self, refs):
        try:
            return self._ray.get(refs)
        except self._ray.exceptions.RayTaskError as e:
            raise e.as_instanceof_cause() from None
        except self._ray.exceptions.RayError as e:
            raise ClusterError(f"a Ray worker of {self.path} was lost for good "
                               f"({type(e).__name__}); retry, or reopen the engine") from None

    def _stored(self, params) -> tuple:
        """Large arrays placed in the object store once, not once per actor."""
        return tuple(self._ray.put(p) if isinstance(p, np.ndarray) and p.nbytes > INLINE_BYTES
                     else p for p in params)

    def _direct(self, messages: list[tuple[int, tuple]]):
        """Replies over the direct links, or None where the Ray call must answer."""
        if self._links is None or any(isinstance(p, np.ndarray) and p.nbytes > INLINE_BYTES
                                      for _, m in messages for p in m[2:]):
            return None
        return self._links.call(messages)

    def _fan(self, method: str, *params) -> list:
        parts = self._direct([(a, (None, method) + params) for a in range(len(self.actors))])
        if parts is None:
            params = self._stored(params)
            parts = self._get([a.fan.remote(method, *params) for a in self.actors])
        return [r for part in parts for r in part]

    def _on(self, k: int, method: str, *params):
        a, j = self._where[k]
        reply = self._direct([(a, (j, method) + params)])
        if reply is not None:
            return reply[0]
        return self._get(self.actors[a].on.remote(j, method, *self._stored(params)))

    def close(self) -> None:
        """End the actors (they also end with the driver)."""
        if self._links is not None:
            self._links.drop()
        for a in self.actors:
            self._ray.kill(a)
        self.actors = []


GROUP_BYTES = 64 << 20
"""Input bytes one tokenizing task reads (consecutive files, at least one)."""


def _groups(files, size: int) -> list[list]:
    """Consecutive runs of ``files`` of about ``size`` bytes each."""
    out, run, nbytes = [], [], 0
    for f in files:
        run.append(f)
        nbytes += os.path.getsize(f)
        if nbytes >= size:
            out.append(run)
            run, nbytes = [], 0
    return out + [run] if run else out


def _tokenize_group(files, out: str, model, width: int, text_field: str, text_suffixes):
    """Ray task: the documents of ``files`` as one unbounded shard in ``out``;
    returns its (tokens, documents), or None when the files hold none."""
    from . import builder, corpus, tokenizer as tk
    from .progress import Progress
    tok = tk.resolve_tokenizer(model)
    batches = corpus.iter_batches(files, text_field, text_suffixes=text_suffixes)
    counts = builder._write_tokens(batches, None, tok, width, 1 << 62, None, Path(out),
                                   Progress(quiet=True))
    return counts[0] if counts else None


def _append_shard(writer, directory: Path, width: int) -> None:
    """Add every document of ``directory``'s shard 0 to ``writer``, in order."""
    tokens = np.fromfile(fmt.shard_path(directory, "tokenized", 0), dtype=fmt.token_dtype(width))
    starts = np.fromfile(fmt.shard_path(directory, "offset", 0), dtype="<u8").astype(np.int64) // width
    meta = fmt.shard_path(directory, "metadata", 0).read_bytes()
    lines = meta.decode("utf-8").split("\n")[:-1]
    ends = np.append(starts[1:], len(tokens))
    for begin, end, line in zip(starts.tolist(), ends.tolist(), lines):
        writer.add(tokens[begin + 1:end], line)


def _sort_shard(directory: str, s: int, width: int, max_memory, threads: int):
    """Ray task: ``table.{s}`` of the shard in one SA-IS run, as a local build writes it."""
    from . import builder
    from .progress import Progress
    builder.build_table(Path(directory), s, width, max_memory, Progress(quiet=True), threads)


def _tokens(src: str, width: int) -> np.ndarray:
    return fmt.map_array(Path(src), fmt.token_dtype(width))


def _rank_task(src: str, width: int) -> tuple:
    """Ray task: the shard's ranked difference-cover sample."""
    from .native import cover
    return cover.rank_sample(_tokens(src, width))


def _part_task(src: str, width: int, lo: int, hi: int, sample, spill: str) -> None:
    """Ray task: suffixes lo..hi-1 sorted, written at their place in ``spill``."""
    from . import storage
    from .native import merge
    part = merge.sort_part(_tokens(src, width), lo, hi, sample)
    with open(spill, "r+b") as f:
        storage.write_at(f, part, lo * part.itemsize)


def _range_task(src: str, width: int, spill: str, cuts, r: int, sample, pointer: int,
                table: str) -> None:
    """Ray task: output range ``r`` of the merge, written into ``table``."""
    from .native import merge, sort
    tokens = _tokens(src, width)
    flat = np.memmap(spill, dtype=sort.sa_dtype(len(tokens)), mode="r")
    out = np.memmap(table, dtype=np.uint8, mode="r+")
    merge.merge_range(tokens, flat, cuts, r, sample, pointer, out)
    out.flush()


def _sort_in_parts(ray, work: Path, s: int, width: int, parts, progress) -> None:
    """``table.{s}`` sorted in ``parts`` as Ray tasks (rank the sample, sort
    each part, merge output ranges cut at splitter suffixes), the files on
    the shared file system, written as a local build writes them."""
    from . import storage
    from .native import merge, sort
    task = ray.remote(max_retries=RETRIES)
    src = fmt.shard_path(work, "tokenized", s)
    size = src.stat().st_size
    n, pointer, dtype = size // width, fmt.pointer_width(size), sort.sa_dtype(size // width)
    spill, final = work / f".parts.{s}", fmt.shard_path(work, "table", s)
    tmp = fmt.temp_path(final)
    progress.start(f"sort shard {s}: rank sample (Ray task)")
    sample = task(_rank_task).remote(str(src), width)
    _wait(ray, [sample], progress, "tok", [n])
    progress.finish("ranked")
    progress.start(f"sort shard {s}: {len(parts)} parts (Ray tasks)")
    for path, nbytes in ((spill, n * dtype.itemsize), (tmp, n * pointer)):
        with open(path, "wb") as f:
            storage.reserve(f, nbytes)
    _wait(ray, [task(_part_task).remote(str(src), width, lo, hi, sample, str(spill))
                for lo, hi in parts], progress, "tok", [hi - lo for lo, hi in parts])
    progress.finish(f"sorted {len(parts)} parts")
    flat = np.memmap(spill, dtype=dtype, mode="r")
    out = np.memmap(tmp, dtype=np.uint8, mode="r")
    cuts = merge.merge_ranges(_tokens(str(src), width), flat, [lo for lo, _ in parts] + [n],
                              ray.get(sample), pointer, out,
                              merge.RANGES_PER_THREAD * len(parts))
    del flat, out
    ranges = range(cuts.shape[1] - 1)
    progress.start(f"sort shard {s}: merge {len(ranges)} ranges (Ray tasks)")
    _wait(ray, [task(_range_task).remote(str(src), width, str(spill), cuts, r, sample, pointer,
                                         str(tmp)) for r in ranges],
          progress, "tok", [int((cuts[:, r + 1] - cuts[:, r]).sum()) for r in ranges])
    fmt.commit(tmp, final)
    spill.unlink()
    progress.finish("merged")


def build_shards(address, files, work: Path, tok, width: int, text_field: str, text_suffixes,
                 shard_tokens: int, max_memory, threads: int, progress) -> list[tuple[int, int]]:
    """The tokenizing and sorting of ``builder.build`` as Ray tasks: groups
    of input files tokenized in parallel, their documents then cut into
    shards in corpus order (as a local build cuts them); a shard that a
    local build would sort in one SA-IS run is sorted by one task on
    ``threads`` threads, one that it would sort in parts (``max_memory``,
    or ``threads`` >= 4 on a large shard) by a task a part and a task an
    output range of the merge. Returns each shard's (tokens, documents)."""
    from . import builder
    ray = connect(address)
    model = str(work / tok.file) if tok.file else tok.kind
    tokenize = ray.remote(max_retries=RETRIES)(_tokenize_group)
    sort = ray.remote(max_retries=RETRIES)(_sort_shard)
    groups = _groups(files, GROUP_BYTES)
    parts = work / ".groups"
    progress.start(f"tokenize ({len(groups)} Ray tasks)")
    refs = [tokenize.remote([str(f) for f in g], str(parts / str(i)), model, width, text_field,
                            tuple(text_suffixes)) for i, g in enumerate(groups)]
    for i in range(len(groups)):
        (parts / str(i)).mkdir(parents=True)
    done = _wait(ray, refs, progress, "files", [len(g) for g in groups])
    writer = builder._ShardWriter(work, width, shard_tokens)
    try:
        for i, counts in enumerate(done):
            if counts is not None:
                _append_shard(writer, parts / str(i), width)
    finally:
        writer.close()
    shutil.rmtree(parts)
    progress.finish(f"{sum(t for t, _ in writer.counts)} tokens in "
                    f"{sum(d for _, d in writer.counts)} documents, {len(writer.counts)} shard(s)")
    whole = []  # shards sorted by one task each; the others in parts, a task a part
    for s, (n, _) in enumerate(writer.counts):
        parts = builder._plan(n, width, max_memory, threads)
        if len(parts) > 1:
            _sort_in_parts(ray, work, s, width, parts, progress)
        else:
            whole.append(s)
    progress.start(f"sort ({len(whole)} Ray tasks)")
    refs = [sort.remote(str(work), s, width, max_memory, threads) for s in whole]
    _wait(ray, refs, progress, "tok", [writer.counts[s][0] for s in whole])
    progress.finish(f"sorted {len(whole)} shard(s)")
    return writer.counts


def _wait(ray, refs, progress, unit: str, sizes: list[int]) -> list:
    """Results of ``refs`` in order, reporting the summed ``sizes`` of the
    finished ones; a failed task raises its own error."""
    pending = {r: k for k, r in enumerate(refs)}
    done_size, total = 0, sum(sizes)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        done_size += sizes[pending.pop(ready[0])]
        progress.update(done_size, total, unit, force=True)
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        raise e.as_instanceof_cause() from None
