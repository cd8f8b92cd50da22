"""``infinigram verify``: sizes, checksums and suffix order of an index."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from . import format as fmt
from .errors import IndexFormatError
from .native.check import first_disorder


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """What was checked and what was found wrong (empty ``problems`` = sound)."""

    path: str
    checked: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [f"ok: {c}" for c in self.checked] + [f"PROBLEM: {p}" for p in self.problems]
        out.append(f"{self.path}: " + ("sound" if self.ok else f"{len(self.problems)} problem(s)"))
        return out


def verify(path, checksums: bool = True) -> VerifyReport:
    """Check an index against its manifest: file sizes, sha256 (unless
    ``checksums=False``) and that every table is a sorted suffix array."""
    path = Path(path)
    checked: list[str] = []
    problems: list[str] = []
    try:
        manifest = fmt.read_manifest(path)
        shards = fmt.open_index(path, manifest)
    except IndexFormatError as e:
        return VerifyReport(str(path), (), (str(e),))
    checked.append(f"manifest and sizes of {len(shards)} shard(s)")
    if checksums:
        for info in manifest.shards:
            for name, rec in sorted(info.files.items()):
                if fmt.sha256_file(path / name) != rec["sha256"]:
                    problems.append(f"{name}: sha256 differs from the manifest (file changed "
                                    "or corrupt); rebuild the index")
        checked.append("sha256 of every shard file")
    for shard in shards:
        bad = first_disorder(shard.tokens, shard.table, shard.pointer)
        if bad >= 0:
            problems.append(f"table.{shard.index}: entry {bad} is out of suffix order or not a "
                            f"valid pointer; rebuild it with `infinigram index {path}` after "
                            f"deleting table.{shard.index}")
        else:
            checked.append(f"suffix order of table.{shard.index} ({shard.n_tokens} entries)")
    return VerifyReport(str(path), tuple(checked), tuple(problems))
