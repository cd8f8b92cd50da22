"""``infinigram verify``: every file of an index against its manifest, the
open checks, and the suffix order of every table."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from . import format as fmt
from .errors import IndexFormatError
from .native.check import first_disorder


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """Checks passed and problems found (empty ``problems`` = sound)."""

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


def advice(path: Path, name: str) -> str:
    """What to do about a damaged file ``name`` of the index at ``path``."""
    if name.startswith("table."):
        return (f"delete {name} (if present) and run `infinigram index {path}` (it checks "
                "the tokens against the manifest before sorting them again)")
    if name == fmt.MANIFEST:
        return (f"restore it from the build, or run `infinigram index {path}`, which checks "
                "every file against it and rewrites it")
    if name in fmt.TOKENIZER_FILES:
        return "restore the tokenizer the index was built with, or rebuild the index from the corpus"
    return "its contents are corrupt: rebuild the index from the corpus with `infinigram build`"


def verify(path, checksums: bool = True) -> VerifyReport:
    """Check an index: the manifest (fields, checksum, exact text), every
    file's presence and size, sha256 of every shard file and of the
    tokenizer model (unless ``checksums=False``), the checks ``open`` runs,
    and that every table is a sorted suffix array."""
    path = Path(path)
    try:
        manifest = fmt.read_manifest(path)
    except IndexFormatError as e:
        return VerifyReport(str(path), (), (str(e),))
    checked: list[str] = []
    problems: list[str] = []
    if fmt.manifest_is_exact(path, manifest):
        checked.append("manifest fields and checksum")
    else:
        problems.append(f"{fmt.MANIFEST} is not as infinigram writes it (edited, damaged, or "
                        f"written before manifests had a checksum); {advice(path, fmt.MANIFEST)}")
    records = {name: rec for info in manifest.shards for name, rec in info.files.items()}
    if fmt.has_file(manifest.tokenizer):
        records[manifest.tokenizer["file"]] = {"sha256": manifest.tokenizer["sha256"]}
    missing = [n for n in sorted(records) if not (path / n).is_file()]
    problems += [f"{n} is missing; {advice(path, n)}" for n in missing]
    if checksums:
        bad = [n for n in sorted(records) if n not in missing
               and fmt.sha256_file(path / n) != records[n]["sha256"]]
        problems += [f"{n}: sha256 differs from the manifest; {advice(path, n)}" for n in bad]
        checked.append(f"sha256 of {len(records) - len(missing) - len(bad)} of {len(records)} "
                       "files")
    try:
        shards = fmt.open_index(path, manifest)
    except IndexFormatError as e:
        problems.append(f"open: {e}")
        return VerifyReport(str(path), tuple(checked), tuple(problems))
    checked.append(f"sizes, offsets and metadata offsets of {len(shards)} shard(s)")
    for shard in shards:
        bad_entry = first_disorder(shard.tokens, shard.table, shard.pointer)
        if bad_entry >= 0:
            problems.append(f"table.{shard.index}: entry {bad_entry} is out of suffix order or "
                            f"not a valid pointer; {advice(path, f'table.{shard.index}')}")
        else:
            checked.append(f"suffix order of table.{shard.index} ({shard.n_tokens} entries)")
    return VerifyReport(str(path), tuple(checked), tuple(problems))
