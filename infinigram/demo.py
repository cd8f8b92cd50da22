"""The embedded default job: index the Python standard library's own sources
(a real corpus every machine has), then ask it a few questions."""
from __future__ import annotations

import sysconfig
import time
from pathlib import Path

from .builder import build
from .engine import open as open_index
from .format import MANIFEST


def stdlib_sources() -> list[Path]:
    """The standard library's UTF-8 ``.py`` files, sorted (site-packages and
    the few test files in other encodings left out)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py")
                  if "site-packages" not in p.parts and p.is_file() and _is_utf8(p))


def _is_utf8(path: Path) -> bool:
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


QUERIES = ["import os", "def __init__(self", "raise ValueError(", "for i in range(len("]


def run(output: str | Path, vocab_size: int = 8000, quiet: bool = False) -> list[str]:
    """Build (or reuse) the stdlib index at ``output``; return report lines."""
    output = Path(output)
    lines = []
    if not (output / MANIFEST).exists():
        files = stdlib_sources()
        t = time.perf_counter()
        build(files, output, vocab_size=vocab_size, text_suffixes=[".py"],
              train_sample_bytes=4 << 20, quiet=quiet)
        lines.append(f"built {output} from {len(files)} stdlib files "
                     f"in {time.perf_counter() - t:.1f}s")
    eng = open_index(output)
    lines.append(f"{eng.n_tokens} tokens, {eng.n_docs} documents, vocabulary {eng.vocab_size}")
    for q in QUERIES:
        lines.append(f"count({q!r}) = {eng.count(q)}")
    q = "def __init__(self"
    dist = eng.ntd(q)
    top = dist.counts.argsort()[::-1][:5]
    lines.append(f"after {q!r}: " + ", ".join(
        f"{eng.decode([int(dist.ids[i])])!r} {dist.probs[i]:.2f}" for i in top))
    prompt = "if __name__ =="
    ids = eng.tokenize(prompt)
    r = eng.infgram_ntd(ids)
    best = int(r.ids[r.counts.argmax()])
    lines.append(f"∞-gram after {prompt.strip()!r}: {eng.decode([best])!r} "
                 f"p={r.probs.max():.2f} (suffix of {r.effective_n - 1} tokens)")
    hits = eng.search_docs("class OrderedDict", limit=3)
    lines.append(f"'class OrderedDict' in {hits.n_docs} documents: "
                 + ", ".join(eng.get_doc(h.doc_ix).source["path"].rsplit("/", 2)[-1]
                             for h in hits.docs))
    return lines
