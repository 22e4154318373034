"""An archive's table of contents, as pg_restore shows it, and what we take from it.

``pg_restore -l -v`` lists one entry per line, ``ID; TABLEOID OID DESC NAMESPACE
TAG OWNER``, each followed by ``;\\tdepends on: ID ...`` when it has
dependencies; ``pg_restore -L FILE`` restores exactly the entries whose lines a
file keeps, in that order. Names are printed unquoted (a space in a name makes
the line ambiguous), so entries are never identified by parsing names alone:
the catalog OID links a table to its data across archives, the dependency
lists link indexes, constraints, triggers, comments and sequences to their
table, and names are only compared with the names the manifest recorded.

The text pg_restore writes with ``-f -`` starts with a fixed header (``SET``
statements, the archive's ``client_encoding``); with ``--clean`` every DROP
comes next, before the first entry's ``--`` comment block: that is how the
drop phase of a restore is taken apart from its creations.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pgautodumper.child import ToolProcess
from pgautodumper.errors import RestoreFailedError

# Entry kinds pg_dump writes (pg_dump.c, pg_backup_archiver.c), longest first so that
# "TABLE DATA" is not read as "TABLE" followed by a schema named DATA.
_KINDS = sorted(
    [
        "ACCESS METHOD", "ACL", "AGGREGATE", "BLOB", "BLOB METADATA", "BLOBS", "CAST",
        "CHECK CONSTRAINT", "COLLATION", "COMMENT", "CONSTRAINT", "CONVERSION", "DATABASE",
        "DATABASE PROPERTIES", "DEFAULT", "DEFAULT ACL", "DOMAIN", "ENCODING", "EVENT TRIGGER",
        "EXTENSION", "FK CONSTRAINT", "FOREIGN DATA WRAPPER", "FOREIGN SERVER", "FOREIGN TABLE",
        "FUNCTION", "INDEX", "INDEX ATTACH", "LARGE OBJECT", "MATERIALIZED VIEW",
        "MATERIALIZED VIEW DATA", "OPERATOR", "OPERATOR CLASS", "OPERATOR FAMILY", "POLICY",
        "PROCEDURAL LANGUAGE", "PROCEDURE", "PUBLICATION", "PUBLICATION TABLE",
        "PUBLICATION TABLES IN SCHEMA", "ROW SECURITY", "RULE", "SCHEMA", "SEARCHPATH",
        "SECURITY LABEL", "SEQUENCE", "SEQUENCE OWNED BY", "SEQUENCE SET", "SERVER",
        "SHELL TYPE", "STATISTICS", "STATISTICS DATA", "STDSTRINGS", "SUBSCRIPTION",
        "SUBSCRIPTION TABLE", "TABLE", "TABLE ATTACH", "TABLE DATA", "TEXT SEARCH CONFIGURATION",
        "TEXT SEARCH DICTIONARY", "TEXT SEARCH PARSER", "TEXT SEARCH TEMPLATE", "TRANSFORM",
        "TRIGGER", "TYPE", "USER MAPPING", "VIEW",
    ],
    key=len,
    reverse=True,
)  # fmt: skip
# Entries that define a relation (what other entries hang off).
RELATION_KINDS = {"TABLE", "FOREIGN TABLE", "VIEW", "MATERIALIZED VIEW"}
_ENTRY = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
_DEPENDS = re.compile(r"^;\s*depends on:([\d ]*)$")
_ENCODING = re.compile(r"^SET client_encoding = '([^']+)';$", re.MULTILINE)


@dataclass
class Entry:
    """One line of ``pg_restore -l``: ``line`` is written back verbatim into a -L list."""

    dump_id: int
    oid: int
    kind: str
    rest: str = field(repr=False)  # "NAMESPACE TAG OWNER", as printed
    line: str = field(repr=False)
    deps: list[int] = field(default_factory=list)

    def names(self, schema: str, name: str) -> bool:
        """Whether this entry is ``schema.name`` (as pg_restore prints names)."""
        return self.rest.startswith(f"{printed(schema)} {printed(name)} ")

    def in_schema(self, schema: str) -> bool:
        return self.rest.startswith(f"{printed(schema)} ")


def printed(name: str) -> str:
    """A name as ``pg_restore -l`` prints it: line breaks become spaces."""
    return name.replace("\r", " ").replace("\n", " ")


def first_word(text: str) -> str:
    """The first word pg_restore prints of a name, or of an entry's "NAMESPACE TAG OWNER":
    how a schema is looked up (a name with a space prints ambiguously)."""
    return printed(text).split(" ", 1)[0]


def parse(listing: str) -> list[Entry]:
    entries: list[Entry] = []
    for line in listing.splitlines():
        if match := _ENTRY.match(line):
            rest = match[4]
            kind = next((k for k in _KINDS if rest.startswith(k + " ")), "")
            entries.append(
                Entry(
                    dump_id=int(match[1]),
                    oid=int(match[3]),
                    kind=kind,
                    rest=rest[len(kind) + 1 :] if kind else rest,
                    line=line,
                )
            )
        elif (match := _DEPENDS.match(line)) and entries:
            entries[-1].deps = [int(d) for d in match[1].split()]
    return entries


def write_list(path: Path, entries: list[Entry]) -> Path:
    """A ``pg_restore -L`` file keeping ``entries`` (in the order given)."""
    path.write_text("".join(e.line + "\n" for e in entries), encoding="utf-8")
    return path


def read(pg_restore: str, archive: Path, env: dict[str, str]) -> list[Entry]:
    """The TOC of an archive file."""
    return parse(_run(pg_restore, ["-l", "-v", str(archive)], env, what=f"listing {archive.name}"))


def encoding(pg_restore: str, archive: Path, env: dict[str, str], empty_list: Path) -> str:
    """The client_encoding the archive's text was dumped in (the source's encoding)."""
    empty_list.write_text("")
    header = _run(
        pg_restore, ["-f", "-", "-L", str(empty_list), str(archive)], env, what="reading header"
    )
    match = _ENCODING.search(header)
    return match[1] if match else "UTF8"


# pg_dump writes each on a line of its own, with the role quoted as an identifier.
_IDENT = r'("(?:[^"]|"")+"|[^\s;"]+)'
_OWNERS = re.compile(
    rf"^(?:ALTER .* OWNER TO {_IDENT};|ALTER DEFAULT PRIVILEGES FOR ROLE {_IDENT} .*)$",
    re.MULTILINE,
)


def owners(pg_restore: str, archive: Path, env: dict[str, str], selected: Path | None) -> set[str]:
    """The roles the archive (or the entries a -L list keeps) gives objects to, or sets
    default privileges for: a restoring role must be a member of each."""
    argv = ["-f", "-"] + (["-L", str(selected)] if selected is not None else [])
    script = _run(pg_restore, [*argv, str(archive)], env, what="listing the owners")
    return {unquoted(name) for match in _OWNERS.finditer(script) for name in match.groups() if name}


def quote_ident(name: str) -> str:
    """A name quoted as an SQL identifier, always (as PostgreSQL's quote_ident would where
    it must)."""
    return '"' + name.replace('"', '""') + '"'


def unquoted(identifier: str) -> str:
    """A name as pg_dump writes it in SQL (quoted when it must be), as the catalog has it."""
    return identifier[1:-1].replace('""', '"') if identifier.startswith('"') else identifier


# Post-data entries that PostgreSQL carries out on a partitioned table's partitions too.
_RECURSING = {"FK CONSTRAINT", "TRIGGER"}


@dataclass
class PartitionedSteps:
    """What post-data leaves for after itself, in this order, where partitioned tables
    are restored (toc.partitioned_steps)."""

    attachments: list[Entry] = field(default_factory=list)  # one at a time
    last: list[Entry] = field(default_factory=list)  # in parallel

    def ids(self) -> set[int]:
        return {e.dump_id for e in self.attachments + self.last}


def partitioned_steps(entries: list[Entry]) -> PartitionedSteps:
    """The index attachments of partitions; then the foreign keys and triggers of
    partitioned tables and what depends on an index attachment; the event triggers last.

    pg_restore -j runs statements whose locks it does not know of side by side. Two
    attachments into one partitioned index, through different partitions, each see
    the other's partition unattached, and neither marks the parent valid: it stays
    invalid for good, and a foreign key to it then fails ("there is no unique
    constraint matching given keys"). One at a time, the last makes it valid. A
    foreign key or trigger on a partitioned table is added to every partition,
    locking each, and beside an attachment below it each waits for the other
    ("deadlock detected"). The event triggers, which would fire on all of these,
    come last, as pg_restore creates them.
    """
    attachments = [e for e in entries if e.kind == "INDEX ATTACH"]
    attached = {e.dump_id for e in attachments}
    partitioned = {e.deps[1] for e in entries if e.kind == "TABLE ATTACH" and len(e.deps) > 1}
    later = {
        e.dump_id
        for e in entries
        if attached.intersection(e.deps)
        or (e.kind in _RECURSING and partitioned.intersection(e.deps))
    }
    if not attachments and not later:
        return PartitionedSteps()
    later |= {e.dump_id for e in entries if e.kind == "EVENT TRIGGER"}
    # And what depends on those (a comment on such a foreign key): pg_restore takes a
    # dependency outside its list for done.
    grew = True
    while grew:
        grew = False
        for entry in entries:
            if entry.dump_id not in later and later.intersection(entry.deps):
                later.add(entry.dump_id)
                grew = True
    last = [e for e in entries if e.dump_id in later - attached]
    return PartitionedSteps(attachments, last)


# Keys and indexes: they exist only on their table, and are dropped with it. (Rules
# keep their DROP: the one of a view's _RETURN rule that pg_dump split out to break a
# dependency loop empties the view, so that what it depends on can be dropped.)
_ON_A_TABLE = {"CONSTRAINT", "CHECK CONSTRAINT", "INDEX"}
# Entries with data blocks, and no DROP: listed, pg_restore would read a stream to its end.
_DATA = {"TABLE DATA", "SEQUENCE SET", "BLOBS"}


def to_drop(entries: list[Entry], whole: list[Entry]) -> list[Entry]:
    """The entries whose DROP a clean runs: not the data, nor the keys and indexes of
    tables it drops too, which go with their table.

    pg_dump writes a DROP CONSTRAINT for every partition's share of a partitioned
    table's key, which PostgreSQL refuses while the partition is attached ("cannot
    drop inherited constraint"); pg_restore --clean only reports it. Foreign keys stay
    in: each must go before the table it references. ``whole`` is the archive's TOC,
    which tells a dependency on a table from one on something else.
    """
    relations = {e.dump_id for e in whole if e.kind in RELATION_KINDS}
    dropped = {e.dump_id for e in entries if e.kind in RELATION_KINDS}

    def goes_with_its_table(entry: Entry) -> bool:
        tables = relations.intersection(entry.deps)
        return entry.kind in _ON_A_TABLE and bool(tables) and tables <= dropped

    return [e for e in entries if e.kind not in _DATA and not goes_with_its_table(e)]


def drop_script(pg_restore: str, archive: Path, env: dict[str, str], selected: Path) -> bytes:
    """What ``pg_restore --clean --if-exists`` would drop before restoring the entries a -L
    list keeps, as a psql script.

    pg_restore's own header (its SET statements, its client_encoding, and the
    ``\\restrict`` that keeps names from smuggling in psql meta-commands) then
    every DROP, in pg_restore's order: foreign keys, indexes and constraints
    before the tables they depend on. Run before the pre-data section, so that
    a table another table's foreign key references can be dropped.
    """
    script = _run_bytes(
        pg_restore, [*_DROPS, "-L", str(selected), str(archive)], env, what="listing the drops"
    )
    return _drops_of(script)


_DROPS = ["--clean", "--if-exists", "-f", "-"]


def _drops_of(script: bytes) -> bytes:
    lines = script.split(b"\n")
    # The header ends at the first empty line after the fixed SET statements; the
    # drops end where the first entry begins: its tablespace or access method (a SET
    # the target may refuse: the tablespace may be missing), or its comment block.
    end = next(
        (i for i, line in enumerate(lines) if line.startswith((b"SET ", b"SELECT pg_catalog"))),
        len(lines),
    )
    while end < len(lines) and lines[end]:
        end += 1
    while end < len(lines) and not lines[end].startswith((b"--", b"\\", b"SET ")):
        end += 1
    return b"\n".join(lines[:end]).rstrip() + b"\n"


def list_stream(
    pg_restore: str, env: dict[str, str], chunks: Iterator[bytes], out: Path
) -> list[Entry] | str:
    """The TOC of an archive read from the start of a stream; pg_restore's failure, if it failed.

    pg_restore reads the header and the TOC, prints them and exits: the rest of
    the stream is never fetched.
    """
    failure = _from_stream([pg_restore, "-l", "-v"], env, chunks, out)
    return failure or parse(out.read_text(encoding="utf-8", errors="replace"))


def drop_script_stream(
    pg_restore: str, env: dict[str, str], chunks: Iterator[bytes], selected: Path, out: Path
) -> bytes | str:
    """drop_script, of an archive read from the start of a stream (format 1): the -L list
    keeps no data, so pg_restore needs no more than the TOC."""
    failure = _from_stream([pg_restore, *_DROPS, "-L", str(selected)], env, chunks, out)
    return failure or _drops_of(out.read_bytes())


def _from_stream(argv: list[str], env: dict[str, str], chunks: Iterator[bytes], out: Path) -> str:
    """Run pg_restore on a stream, its output into a file (so that it can never block on a
    full pipe while we are still writing its input); its failure, or ""."""
    with out.open("wb") as output:
        process = ToolProcess(argv, env, stdin=subprocess.PIPE, stdout=output.fileno())
        try:
            for chunk in chunks:
                process.stdin.write(chunk)
            process.stdin.close()
        except BrokenPipeError:
            pass
        except BaseException:
            process.kill()
            raise
    return process.failure() if process.wait() != 0 else ""


def _run(pg_restore: str, args: list[str], env: dict[str, str], *, what: str) -> str:
    return _run_bytes(pg_restore, args, env, what=what).decode("utf-8", errors="replace")


def _run_bytes(pg_restore: str, args: list[str], env: dict[str, str], *, what: str) -> bytes:
    result = subprocess.run(
        [pg_restore, *args], env=env, capture_output=True, check=False, timeout=600
    )
    if result.returncode != 0:
        tail = " | ".join(result.stderr.decode(errors="replace").strip().splitlines()[-5:])
        raise RestoreFailedError(
            f"pg_restore failed {what}: exit code {result.returncode}: {tail}",
            hint="check that the pg_restore found can read this archive (its major version)",
        )
    return result.stdout
