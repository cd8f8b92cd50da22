"""The ``infinigram`` command: build, index, query and check indexes.

Human-readable output by default, ``--json`` for machines. An error is one
line on stderr and exit status 1 (2 for usage errors), never a traceback.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import sys
from pathlib import Path

import click
import numpy as np

from . import args
from .documents import parse_cnf
from .engine import open as open_index
from .errors import ArgumentError, InfinigramError
from .format import DEFAULT_SHARD_TOKENS
from .limits import Limits, flag
from .results import jsonable
from .verify import verify as verify_index


class _Size(click.ParamType):
    """A size such as 512M or 2G (args.size_bytes, as the API reads it)."""

    name = "size"

    def convert(self, value, param, ctx):
        try:
            return args.size_bytes(param.name if param else "size", value)
        except ArgumentError as e:
            self.fail(str(e), param, ctx)


_size = _Size()


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _bytes(text: str) -> bytes:
    """UTF-8 of text that may hold the surrogate escapes of an undecodable path
    (written back as the path's own bytes) or lone surrogates (escaped)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _Group(click.Group):
    """Usage errors as one line on stderr (exit 2), like the library's (exit 1)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except _NO_ARGS as e:  # click >= 8.2: a bare group prints its help
            click.echo(e.ctx.get_help())
            sys.exit(0)
        except click.ClickException as e:
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            click.echo(f"error: {_one_line(e.format_message())}{hint}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _command(fn):
    """Run a command body; turn library errors into one line and exit 1."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (InfinigramError, OSError) as e:
            click.echo(_bytes(f"error: {_one_line(str(e))}"), err=True)
            sys.exit(1)
    return run


def _emit(as_json: bool, data, human: str) -> None:
    click.echo(json.dumps(jsonable(data), allow_nan=False) if as_json else _bytes(human))


def _id_list(option: str, value: str | None) -> list[int]:
    """Token ids of an option given as '17 4 99' (or with commas)."""
    try:
        return [int(t) for t in (value or "").replace(",", " ").split()]
    except ValueError:
        raise click.BadParameter(f"{option} {value!r} must be integers separated by spaces "
                                 "or commas") from None


def _open_query(argv, ids):
    """(engine, query) of a query command's ``INDEX... [TEXT]`` arguments:
    every argument names an index directory, except the last one, which is
    the text unless --ids gives the query as token ids."""
    if ids is not None:
        return open_index(list(argv)), _id_list("--ids", ids)
    if len(argv) < 2:
        raise click.UsageError("give INDEX... TEXT (one or more index directories, then the "
                               "text), or the query as --ids")
    return open_index(list(argv[:-1])), argv[-1]


json_opt = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
ids_opt = click.option("--ids", help="Token ids instead of text, e.g. '17 4 99'.")
def _path_arg(ctx, param, value):
    """A path argument: non-empty, no NUL (args.path, as the API reads it)."""
    try:
        return str(args.path(param.name, value))
    except ArgumentError as e:
        raise click.BadParameter(str(e)) from None


indexes_arg = click.argument("indexes", nargs=-1, required=True, metavar="INDEX...",
                             type=click.Path(file_okay=False))
query_args = click.argument("argv", nargs=-1, required=True, metavar="INDEX... [TEXT]")
threads_opt = click.option("--threads", type=int,
                           help="Threads that tokenize and sort (default: all cores).")


index_arg = click.argument("index", type=click.Path(file_okay=False), callback=_path_arg)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="infinigram")
def main():
    """Suffix-array n-gram and infini-gram queries over tokenized corpora."""


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="New index directory.")
@click.option("--tokenizer", "model", type=click.Path(),
              help="A sentencepiece .model file (e.g. Llama-2 tokenizer.model), or a Hugging "
              "Face tokenizer.json or a directory holding one.")
@click.option("--train-tokenizer", "vocab_size", type=int, metavar="VOCAB_SIZE",
              help="Train a sentencepiece model of VOCAB_SIZE pieces on a sample of the corpus.")
@click.option("--bytes", "use_bytes", is_flag=True, help="Index UTF-8 bytes (no tokenizer).")
@click.option("--text-field", default="text", show_default=True, help="Field holding the text.")
@click.option("--text-suffix", "text_suffixes", multiple=True, metavar="SUFFIX",
              help="Also read files ending in SUFFIX (e.g. .py) as one plain-text document.")
@click.option("--ids-field", metavar="NAME", help="Pre-tokenized input: the field (Parquet, "
              "Arrow, JSON Lines) holding each document's token ids.")
@click.option("--ids-separator", type=int, metavar="ID", help="The id between documents of "
              ".npy/.u16/.u32/.bin files (default: the file's all-ones value).")
@click.option("--token-width", type=click.Choice(["1", "2", "4"]), help="Bytes per token of "
              "the index (default: what the vocabulary needs); also of .bin input files.")
@click.option("--shard-tokens", type=int, default=DEFAULT_SHARD_TOKENS,
              show_default=True, help="Most tokens per shard.")
@click.option("--max-memory", type=_size, help="Memory budget for sorting, e.g. 8G; larger "
              "shards are sorted in parts and merged from disk.")
@threads_opt
@click.option("--ray", "ray_address", is_flag=False, flag_value="", metavar="[ADDRESS]",
              help="Tokenize and sort as Ray tasks on the cluster at ADDRESS (HOST:PORT; "
              "alone: the running or a new local cluster). Output on a shared file system.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@json_opt
@_command
def build(inputs, output, model, vocab_size, use_bytes, text_field, text_suffixes, ids_field,
          ids_separator, token_width, shard_tokens, max_memory, threads, ray_address, quiet,
          as_json):
    """Build an index of INPUTS (files or directories of .jsonl, .jsonl.gz,
    .jsonl.zst, .parquet, .arrow, .txt; token ids from .npy, .u16, .u32,
    .bin or --ids-field). Text needs one of --tokenizer, --train-tokenizer,
    --bytes; token ids take --tokenizer (the one they came from) or none."""
    from .builder import build as build_index
    from .corpus import list_files, pretokenized
    given = sum(x is not None and x is not False for x in (model, vocab_size, use_bytes))
    if given > 1 or (given == 0 and not pretokenized(list_files(list(inputs), text_suffixes),
                                                     ids_field)):
        raise click.UsageError("give exactly one of --tokenizer, --train-tokenizer, --bytes "
                               "(token ids: --tokenizer or none)")
    path = build_index(list(inputs), output, tokenizer="bytes" if use_bytes else model,
                         vocab_size=vocab_size, text_field=text_field,
                         ids_field=ids_field, ids_separator=ids_separator,
                         token_width=token_width and int(token_width),
                         text_suffixes=text_suffixes, shard_tokens=shard_tokens,
                         max_memory=max_memory, threads=threads, quiet=quiet,
                         ray=ray_address or (ray_address == "" or None))
    _info([path], as_json)


@main.command()
@index_arg
@click.option("--token-width", type=click.Choice(["1", "2", "4"]),
              help="Bytes per token (needed when DIR has no manifest).")
@click.option("--vocab-size", type=int, help="Vocabulary size (default: largest id + 1).")
@click.option("--tokenizer", "model", help="'bytes', a sentencepiece .model file, or a "
              "Hugging Face tokenizer.json (or its directory).")
@click.option("--max-memory", type=_size, help="Memory budget for sorting, e.g. 8G.")
@threads_opt
@click.option("--tokens-changed", is_flag=True, help="The token files were replaced on "
              "purpose: check them afresh, sort every table again, rewrite the manifest.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@json_opt
@_command
def index(index, token_width, vocab_size, model, max_memory, threads, tokens_changed, quiet,
          as_json):
    """Build the missing table.N files of a directory of tokenized.N files
    (for example infini-gram's tokenized output) and write its manifest.
    With a manifest, every file must still match the sha256 it records."""
    from .builder import index_tables
    built = index_tables(index, token_width=token_width and int(token_width),
                                 vocab_size=vocab_size, tokenizer=model,
                                 max_memory=max_memory, threads=threads,
                                 tokens_changed=tokens_changed, quiet=quiet)
    _emit(as_json, {"built": built}, f"built table(s) for shard(s) {built}" if built
          else "nothing to build: every shard has its table")


@main.command("train-tokenizer")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Where to write the .model file.")
@click.option("--vocab-size", required=True, type=int, help="Number of pieces.")
@click.option("--text-field", default="text", show_default=True)
@click.option("--sample", "sample", type=_size, default="16M", show_default=True,
              help="How much text to train on.")
@json_opt
@_command
def train_tokenizer(inputs, output, vocab_size, text_field, sample, as_json):
    """Train a sentencepiece tokenizer on a sample of INPUTS."""
    from .builder import train_tokenizer
    from .corpus import list_files
    tok = train_tokenizer(list_files(list(inputs)), output, vocab_size,
                                  text_field=text_field, sample_bytes=sample, quiet=as_json)
    _emit(as_json, {"model": output, "vocab_size": tok.vocab_size},
          f"wrote {output} ({tok.vocab_size} pieces)")


def _info(paths, as_json):
    eng = open_index(list(paths))
    m = eng.manifest
    data = {"paths": [str(p) for p in eng.paths], "tokens": eng.n_tokens, "documents": eng.n_docs,
            "shards": len(eng.shards), "token_width": eng.token_width,
            "vocab_size": eng.vocab_size, "tokenizer": m.tokenizer["kind"] if m else "given"}
    _emit(as_json, data, "\n".join(f"{k:12} {v}" for k, v in data.items()))


@main.command()
@click.argument("index", type=click.Path(file_okay=False))
@click.argument("test_file", type=click.Path(dir_okay=False))
@click.option("--kn", type=int, help="Also the perplexity under Kneser-Ney of order N.")
@click.option("--modified", is_flag=True,
              help="With --kn: modified Kneser-Ney (three discounts per order).")
@click.option("--text-field", default="text", show_default=True, help="JSONL/parquet text field.")
@json_opt
@_command
def ppl(index, test_file, kn, modified, text_field, as_json):
    """Perplexity of held-out text under the ∞-gram model (mixed with 1% of
    the uniform distribution, so unseen tokens cost a finite amount) and,
    with --kn N, under Kneser-Ney of order N (--modified: three discounts per order)."""
    from .corpus import iter_batches
    from .smoothing import order, perplexity
    eng = open_index(index)
    if kn is not None:
        order(kn)
    docs = (eng.tokenize(t) for b in iter_batches([test_file], text_field) for t in b.texts)
    r = perplexity(eng, docs, kn, modified)
    lines = [f"tokens           {r['tokens']}",
             f"infgram ppl      {r['infgram_ppl']:.6g} ({r['infgram_zero_tokens']} tokens at 0, "
             f"mixed with {r['uniform_weight']:g} uniform)"]
    if kn is not None:
        label = f"{'modified ' if modified else ''}kn-{kn} ppl"
        lines.append(f"{label:<16} {r['kn_ppl']:.6g}")
    _emit(as_json, r, "\n".join(lines))


@main.command()
@indexes_arg
@json_opt
@_command
def info(indexes, as_json):
    """Summarise an index (or several opened as one)."""
    _info(indexes, as_json)


@main.command()
@query_args
@ids_opt
@json_opt
@_command
def count(argv, ids, as_json):
    """Count occurrences of TEXT (or --ids) in the index."""
    eng, q = _open_query(argv, ids)
    n = eng.count(q)
    _emit(as_json, {"count": n}, str(n))


@main.command()
@query_args
@click.option("--next-id", type=int, required=True, help="The next token's id.")
@ids_opt
@json_opt
@_command
def prob(argv, next_id, ids, as_json):
    """P(next token | TEXT) from n-gram counts."""
    eng, q = _open_query(argv, ids)
    r = eng.prob(q, next_id)
    _emit(as_json, r, f"{r.prob:.6g} ({r.cont_count} / {r.prompt_count})")


def _dist_lines(eng, r, top):
    order = np.argsort(-r.counts, kind="stable")[:top]
    lines = [f"{r.prompt_count} continuations, {len(r.ids)} distinct, "
             f"suffix length {r.effective_n - 1}"]
    for i in order:
        piece = eng.decode([int(r.ids[i])]) if eng.tokenizer is not None else ""
        lines.append(f"{int(r.ids[i]):>8} {int(r.counts[i]):>10} {r.probs[i]:.4f}  {piece!r}")
    return "\n".join(lines)


@main.command()
@query_args
@ids_opt
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True,
              help="Rows to print.")
@json_opt
@_command
def ntd(argv, ids, top, as_json):
    """Exact next-token distribution after TEXT."""
    eng, q = _open_query(argv, ids)
    r = eng.ntd(q)
    _emit(as_json, r, _dist_lines(eng, r, top))


@main.command()
@query_args
@ids_opt
@click.option("--next-id", type=int, help="Print P∞(next | TEXT) instead of the distribution.")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True,
              help="Rows to print.")
@json_opt
@_command
def infgram(argv, ids, next_id, top, as_json):
    """∞-gram next-token distribution (or probability) after TEXT."""
    eng, q = _open_query(argv, ids)
    if next_id is not None:
        r = eng.infgram_prob(q, next_id)
        _emit(as_json, r, f"{r.prob:.6g} ({r.cont_count} / {r.prompt_count}, "
                          f"suffix length {r.effective_n - 1})")
    else:
        r = eng.infgram_ntd(q)
        _emit(as_json, r, _dist_lines(eng, r, top))


@main.command()
@query_args
@click.option("--ids", help="Token ids instead of text, e.g. '17 4 99'; a CNF as "
                            "'1 2 OR 3 AND 4'.")
@click.option("--limit", default=10, show_default=True, help="Most documents to list.")
@click.option("--window", default=100, show_default=True,
              help="Most tokens between a CNF's first-clause match and each other clause's.")
@click.option("--context", type=int, help="Also print each document's first match with this "
                                          "many tokens either side.")
@json_opt
@_command
def search(argv, ids, limit, window, context, as_json):
    """Documents containing TEXT, in index order. TEXT may be a CNF: ' AND '
    between clauses, ' OR ' between the n-grams of a clause (OR binds
    tighter: 'a AND b OR c' is a, and b or c, within --window tokens)."""
    eng, q = _open_query(argv, None if ids is None else "")  # --ids: parsed below
    cnf = parse_cnf(q if ids is None else ids)
    if ids is not None:
        cnf = [[_id_list("--ids", t) for t in clause] for clause in cnf]
    r = eng.search_docs_cnf(cnf, limit=limit, window=window, context=context)
    lines = [f"{r.count} occurrences in {r.n_docs} documents"]
    lines += [f"doc {h.doc_ix} at token {h.position}"
              + (f": {_shown(h.context)}" if h.context is not None else "") for h in r.docs]
    _emit(as_json, r, "\n".join(lines))


def _shown(d) -> str:
    """A document's text, or its token ids for an ids-only index."""
    return d.text if d.text is not None else " ".join(map(str, d.tokens.tolist()))


@main.command()
@query_args
@ids_opt
@json_opt
@_command
def creativity(argv, ids, as_json):
    """Per token of TEXT: the length of the longest match starting there."""
    eng, q = _open_query(argv, ids)
    r = eng.creativity(q)
    _emit(as_json, {"lengths": r}, " ".join(map(str, r.tolist())))


@main.command()
@query_args
@ids_opt
@click.option("--min-len", default=1, show_default=True, help="Shortest span to report.")
@click.option("--max-count", type=int, help="Report only spans occurring at most this often.")
@click.option("--delimiters", help="Token ids that end a span, e.g. '13 29'.")
@click.option("--whole-words", is_flag=True, help="Spans on word boundaries (sentencepiece).")
@click.option("--docs", default=10, show_default=True, help="Documents to list per span.")
@json_opt
@_command
def attribute(argv, ids, min_len, max_count, delimiters, whole_words, docs, as_json):
    """The maximal spans of TEXT that occur verbatim in the index."""
    eng, q = _open_query(argv, ids)
    r = eng.attribute(q, min_len=min_len, max_count=max_count,
                      delimiters=_id_list("--delimiters", delimiters),
                      whole_words=whole_words, docs=docs)
    lines = [f"{len(r.spans)} spans"]
    for s in r.spans:
        piece = r.ids[s.start:s.end]
        text = eng.decode(piece) if eng.tokenizer is not None else " ".join(map(str, piece.tolist()))
        where = ", ".join(f"doc {d} at {p}" for d, p in zip(s.doc_ixs.tolist(),
                                                           s.positions.tolist()))
        lines.append(f"[{s.start}, {s.end}) count {s.count}: {text!r}" + (f"; {where}" if where else ""))
    _emit(as_json, r, "\n".join(lines))


@main.command()
@click.argument("argv", nargs=-1, required=True, metavar="INDEX... TEST_FILE")
@click.option("--n", "n", default=13, show_default=True, help="n-gram length.")
@click.option("--text-field", default="text", show_default=True, help="Field holding the text.")
@json_opt
@_command
def overlap(argv, n, text_field, as_json):
    """Share of each test document's n-grams found in the index (a
    contamination check); TEST_FILE is a corpus file (.jsonl, .parquet, ...)."""
    if len(argv) < 2:
        raise click.UsageError("give INDEX... TEST_FILE (one or more index directories, then "
                               "the test file)")
    from .corpus import iter_batches
    eng = open_index(list(argv[:-1]))
    texts = [t for batch in iter_batches([argv[-1]], text_field) for t in batch.texts]
    r = eng.overlap(texts, n=n)
    docs = [{"ngrams": g, "found": f, "fraction": x, "any": a} for g, f, x, a in zip(
        r.ngrams.tolist(), r.found.tolist(), r.fractions.tolist(), r.contaminated.tolist())]
    data = {"n": r.n, "ngrams": int(r.ngrams.sum()), "found": int(r.found.sum()),
            "fraction": r.fraction, "documents": len(docs),
            "documents_with_any": int(r.contaminated.sum()), "per_document": docs}
    human = [f"{data['found']} of {data['ngrams']} {n}-grams found ({r.fraction:.4%}); "
             f"{data['documents_with_any']} of {len(docs)} documents have one"]
    human += [f"doc {i}: {d['found']}/{d['ngrams']}" + (" *" if d["any"] else "")
              for i, d in enumerate(docs)]
    _emit(as_json, data, "\n".join(human))


@main.command()
@indexes_arg
@click.option("--min-length", "min_length", type=int, required=True,
              help="Shortest repeated span, in tokens.")
@click.option("--spans", help="Write the spans to this .parquet or .jsonl file.")
@click.option("--output", help="New directory: documents.jsonl (spans removed, metadata "
              "kept) and the spans file.")
@click.option("--quiet", is_flag=True, help="No summary (with --json: still the JSON).")
@json_opt
@_command
def dedup(indexes, min_length, spans, output, quiet, as_json):
    """Find every maximal span of the later copies of a repeated
    --min-length-gram (the first occurrence is kept), over all the indexes."""
    import time
    from . import dedup as dd
    name = "spans" + (dd.spans_path(spans).suffix if spans else ".jsonl")
    if output is not None:
        dd.output_dir(output)
    eng = open_index(list(indexes))
    t0 = time.perf_counter()
    r = eng.dedup(min_length)
    seconds = time.perf_counter() - t0
    if spans:
        dd.write_spans(r, spans)
    if output is not None:
        dd.write_deduplicated(eng, r, output, name)
    data = {"min_length": r.min_len, "spans": len(r.doc_ixs), "tokens_removed": r.removed,
            "tokens": r.n_tokens, "fraction": r.removed / r.n_tokens if r.n_tokens else 0.0,
            "documents_touched": r.docs_touched, "seconds": seconds}
    if as_json or not quiet:
        _emit(as_json, data, f"{data['spans']} spans of >= {min_length} tokens: "
              f"{r.removed} of {r.n_tokens} tokens ({data['fraction']:.4%}) in "
              f"{data['documents_touched']} documents, {seconds:.2f} s")


@main.command()
@click.argument("argv", nargs=-1, required=True, metavar="INDEX... DOC_IX...")
@click.option("--around", type=int, help="Token position to centre a window on.")
@click.option("--window", type=int, help="Tokens each side of --around.")
@json_opt
@_command
def doc(argv, around, window, as_json):
    """Print documents DOC_IX... (or a window of each); numbers continue
    across the indexes in the order given. The trailing integer arguments
    are the document numbers (write an index directory named by digits as
    ./123). --json prints one object per line, one per document."""
    split = len(argv)
    while split > 1 and argv[split - 1].isdigit():
        split -= 1
    if split == len(argv) or split == 0:
        raise click.UsageError("give INDEX... DOC_IX... (one or more index directories, then "
                               "one or more document numbers)")
    eng = open_index(list(argv[:split]))
    docs = eng.get_docs([int(a) for a in argv[split:]], around=around, window=window)
    if as_json:
        click.echo("\n".join(json.dumps(jsonable(d), allow_nan=False) for d in docs))
        return
    click.echo(_bytes("\n".join(
        f"# doc {d.doc_ix}, {len(d.tokens)} tokens from token {d.start}, source "
        f"{json.dumps(d.source)}, metadata {json.dumps(d.metadata)}\n{_shown(d)}" for d in docs)))


@main.command()
@index_arg
@click.option("--no-checksums", is_flag=True, help="Skip the sha256 checks (faster).")
@json_opt
@_command
def verify(index, no_checksums, as_json):
    """Check sizes, checksums and suffix order of every shard."""
    report = verify_index(index, checksums=not no_checksums)
    _emit(as_json, report, "\n".join(report.lines()))
    if not report.ok:
        sys.exit(1)


@main.command()
@click.option("-o", "--output", default="stdlib-index", show_default=True,
              type=click.Path(file_okay=False), help="Where to build (reused if present).")
@click.option("--vocab-size", default=8000, show_default=True, help="Tokenizer vocabulary.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@_command
def demo(output, vocab_size, quiet):
    """Index the Python standard library's sources, then query it."""
    from .demo import run as run_demo
    for line in run_demo(output, vocab_size=vocab_size, quiet=quiet):
        click.echo(line)


def _limit_options(fn):
    """A flag per field of Limits (``--max-docs``, ..., ``--timeout``)."""
    for f in reversed(dataclasses.fields(Limits)):
        fn = click.option(flag(f.name), f.name, type=type(f.default), default=f.default,
                          show_default=True, help=f.metadata["help"])(fn)
    return fn


def _named(dirs, names) -> dict:
    """{name: directory} of the served indexes: each DIR under its own name,
    each --name NAME=DIR under NAME."""
    pairs = [(Path(d).resolve().name, d) for d in dirs]
    for item in names:
        name, eq, directory = item.partition("=")
        if not (name and eq and directory):
            raise click.BadParameter(f"--name {item!r} must be NAME=DIR")
        pairs.append((name, directory))
    if not pairs:
        raise click.UsageError("give one or more index directories (INDEX_DIR or --name NAME=DIR)")
    out = {}
    for name, directory in pairs:
        if name in out:
            raise click.UsageError(f"two indexes are named {name!r}; name one with --name NAME=DIR")
        out[name] = directory
    return out


@main.command()
@click.argument("dirs", nargs=-1, metavar="INDEX_DIR...", type=click.Path(file_okay=False))
@click.option("--name", "names", multiple=True, metavar="NAME=DIR",
              help="Serve DIR under NAME (default name: the directory's name).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@_limit_options
@_command
def serve(dirs, names, host, port, **limits):
    """Serve indexes read-only over HTTP: infini-gram's POST /, REST routes
    under /v1/ (schema at /docs) and a web page at /."""
    named = _named(dirs, names)
    limits = Limits(**limits)
    try:
        import uvicorn
        from .serve import make_app, warm
    except ImportError as e:
        raise click.ClickException(str(e) if "infinigram[serve]" in str(e) else
                                   f"infinigram serve needs uvicorn ({e}); install it with "
                                   "`pip install 'infinigram[serve]'`") from None
    engines = {name: open_index(d) for name, d in named.items()}
    warm(engines)
    uvicorn.run(make_app(engines, limits), host=host, port=port, log_level="warning")
