"""infinigram: suffix-array n-gram and infini-gram queries over tokenized corpora.

The public API::

    import infinigram as ig
    ig.build(["data/"], "idx/", tokenizer="tok.model")   # or vocab_size=8000, or "bytes"
    eng = ig.open("idx/")
    eng.count("any text"); eng.ntd("a prompt"); eng.infgram_prob("a prompt", 42)
"""
__version__ = "0.1.0"


def _checkout_kernels() -> None:
    """In a source checkout the kernels live in the top-level ``native/``
    (the wheel installs them as ``infinigram/native``): load them as
    ``infinigram.native`` from there, so that this package imports from the
    repository root whether or not another copy is installed."""
    import importlib.util
    import os
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    native = os.path.join(os.path.dirname(here), "native")
    if os.path.isdir(os.path.join(here, "native")) or not os.path.isfile(
            os.path.join(native, "__init__.py")):
        return
    spec = importlib.util.spec_from_file_location(
        __name__ + ".native", os.path.join(native, "__init__.py"),
        submodule_search_locations=[native])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


_checkout_kernels()

from .engine import Engine, open  # noqa: E402
from .results import (Attribution, AttributionSpan, Dedup, DocHit, Document,  # noqa: E402
                      FindResult, InfGramProb, NextTokenDist, Overlap, ProbResult,
                      ScoreResult, SearchResult)
from .errors import (ArgumentError, BuildError, CorpusError, IndexFormatError,  # noqa: E402
                     InfinigramError, QueryError, TokenizerError)
from .verify import verify  # noqa: E402



def __getattr__(name):
    # The builder pulls in pyarrow and the sort kernels: load it on first use
    # so that opening and querying an index starts fast.
    if name in ("build", "index_tables"):
        from . import builder
        return getattr(builder, name)
    raise AttributeError(f"module 'infinigram' has no attribute {name!r}")


__all__ = ["build", "index_tables", "open", "verify", "Engine", "InfinigramError",
           "ArgumentError", "BuildError", "CorpusError", "IndexFormatError", "QueryError", "TokenizerError",
           "Attribution", "AttributionSpan", "Dedup", "DocHit", "Document", "FindResult", "InfGramProb", "NextTokenDist", "Overlap", "ProbResult",
           "ScoreResult", "SearchResult"]
