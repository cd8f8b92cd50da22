"""Every exception infinigram raises.

Each error names the bad value and the fix. Input errors subclass
``ValueError``; file-system trouble subclasses ``OSError``.
"""


class InfinigramError(Exception):
    """Base class of all infinigram errors."""


class ArgumentError(InfinigramError, ValueError):
    """An argument of a public function has the wrong type or is out of range."""


class QueryError(InfinigramError, ValueError):
    """A query is malformed: empty, nested, wrong dtype, ids out of range."""


class TokenizerError(InfinigramError, ValueError):
    """A tokenizer cannot be loaded, trained or used on this input."""


class CorpusError(InfinigramError, ValueError):
    """A corpus file is unreadable: wrong format, no text field, bad UTF-8."""


class IndexFormatError(InfinigramError, ValueError):
    """An index directory is missing files, truncated, or has a bad manifest."""


class BuildError(InfinigramError, OSError):
    """A build cannot proceed (output exists, disk full, memory budget)."""


class ClusterError(InfinigramError, OSError):
    """Ray is missing, its cluster is unreachable, or a worker is lost for good."""
