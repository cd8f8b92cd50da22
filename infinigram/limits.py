"""What one request to ``infinigram serve`` may ask for (no FastAPI needed:
the command's flags are made from these fields)."""
from __future__ import annotations

import dataclasses

from .errors import ArgumentError


def _limit(default, help):  # noqa: A002
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class Limits:
    """Each field is a flag of ``infinigram serve`` (``max_docs`` is
    ``--max-docs``); all must be positive."""

    max_query_chars: int = _limit(1000, "Characters in a text query.")
    max_query_tokens: int = _limit(500, "Tokens in a query (all terms of a CNF together).")
    max_clauses: int = _limit(4, "AND-clauses in a CNF query.")
    max_terms: int = _limit(4, "OR-terms in each CNF clause.")
    max_docs: int = _limit(10, "Documents per response (maxnum).")
    max_disp_len: int = _limit(1000, "Tokens shown of each document (max_disp_len).")
    max_support: int = _limit(1000, "Next tokens listed per distribution (max_support).")
    max_ptrs: int = _limit(1000, "Match positions listed per shard by find_cnf.")
    max_window: int = _limit(1000, "Token distance between CNF clauses (max_diff_tokens).")
    max_body: int = _limit(1 << 20, "Bytes in a request body.")
    timeout: float = _limit(10.0, "Seconds a request may take.")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
                raise ArgumentError(f"limit {f.name}={value!r} must be a positive number; "
                                    f"pass {flag(f.name)} > 0")

    def over(self, name: str, value) -> str | None:
        """The message when ``value`` exceeds the limit ``name``, else None."""
        limit = getattr(self, name)
        if value <= limit:
            return None
        return (f"{value} is over the server's limit {name}={limit} ({flag(name)}); "
                "ask for less")


def flag(name: str) -> str:
    """The command-line flag of limit ``name``."""
    return "--" + name.replace("_", "-")
