"""Format 2 restore: from S3 into a database, in parallel, with no data-sized disk.

    1. schema archive   S3 → sha256 + size → zstd → a temporary file (DDL only, small),
                        checked before pg_restore reads any of it
       [--clean]        the DROPs pg_restore --clean would run, pre- and post-data
                        together (foreign keys before the tables they reference), but
                        those of keys and indexes that go with their table (toc.to_drop),
                        through psql: in one transaction for a partial restore
       [schemas]        the schemas and their grants first, when a role that is not a
                        superuser restores owners: it gives objects only to roles that
                        may create in their schema (CREATE is lent for the restore to
                        the owners the source's grants leave without it: schema_grants.py)
       pre-data         pg_restore --section=pre-data FILE: types, tables, sequences
    2. in parallel      remaining-data archive: S3 → sha256 + size → zstd →
                          pg_restore --section=data (stdin), the last chunk held back
                          until the whole object matched the manifest
                        --jobs loaders, parts largest first: S3 → sha256 + size → zstd →
                          COPY t (columns) FROM STDIN in a transaction of its own,
                          committed only once the part matched the manifest and COPY's
                          row count equals the part's (loader.py); the loader that
                          commits a table's last part builds that table's own indexes
                          and keys (table_indexes.py)
    3. post-data        pg_restore -j JOBS --section=post-data FILE: the other indexes,
                        constraints, foreign keys, triggers, policies, materialized
                        view data; then the index attachments of partitions one at a
                        time, and the foreign keys and triggers of partitioned tables
                        (toc.partitioned_steps)
       [attach]         a partition restored alone, into the table that holds it
                        (selection.py)
    4. [--analyze]      ANALYZE

Any failure stops everything: the other loaders' queries are cancelled (their
parts roll back), pg_restore is killed, and the first failure is the one
reported, naming the object (table, part, key) it was about.

A partial restore (``--table``, ``--schema``; selection.py) runs the same
steps on the entries and parts of the named tables, through ``pg_restore -L``
lists: one for the schema archive, one for the remaining-data archive (whose
TOC pg_restore reads from the start of the stream).

Peak memory does not depend on the size of the database, its tables or its
parts: every object streams, and none is held whole (the schema archive goes to
a temporary file). The process holds the interpreter with boto3, psycopg and
zstandard (about 80 MiB) and, per concurrent stream (``jobs`` loaders plus the
remaining-data archive), one S3 read of ``READ_CHUNK`` (1 MiB), the zstd window
(0.5 MiB at the backup's default level 1, at most 8 MiB up to level 19; 128 MiB
at the ultra levels 20-22) and one decompressed chunk of ``WRITE_CHUNK``
(1 MiB), plus libpq's copy buffer:

    peak RSS ~= 85 MiB + (jobs + 1) * (2 MiB + zstd window + ~1 MiB)

that is about 97 MiB at ``--jobs 2`` and the default level, under 160 MiB up to
level 19; part size does not enter. Measured at --jobs 2 (2 CPUs): 86 MiB with
parts of 6 MiB, 88 MiB with parts of 45 MiB (tests/integration/
test_format2_restore_memory.py checks the bound). pg_restore's memory is its own
process's.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psycopg
from psycopg import sql
from pydantic import BaseModel, Field

from pgautodumper import (
    checked,
    connection_budget,
    database_properties,
    loader,
    role_restore,
    roles,
    schema_grants,
    selection,
    table_indexes,
    toc,
)
from pgautodumper.checked import CheckedObject
from pgautodumper.child import ToolProcess
from pgautodumper.connection import ConnectionInfo, connect, restore_settings
from pgautodumper.contract import DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS
from pgautodumper.database_locale import (
    collations_need_encoding,
    database_encoding,
    warn_if_unlike,
)
from pgautodumper.database_properties import AppliedProperties
from pgautodumper.errors import (
    COLLATIONS_HINT,
    INCOMPLETE_TARGET,
    TABLESPACES_HINT,
    ConnectionLimitError,
    DatabaseError,
    MissingCollationsError,
    MissingExtensionsError,
    MissingTablespacesError,
    OwnershipError,
    RestoreFailedError,
    TargetNotEmptyError,
    TargetPermissionError,
    TargetReadOnlyError,
    TargetServerTooOldError,
    UsageError,
    redact,
)
from pgautodumper.manifest import Manifest, ManifestV2, StoredObject, TablePart
from pgautodumper.pgtools import find_tool, leave_out_flags, server_major
from pgautodumper.plan import HASHED_ON_AN_ENUM

log = logging.getLogger(__name__)
_Read = TypeVar("_Read")  # what a pg_restore reads from a stream (from_stream)


_RELATIONS = """
SELECT n.nspname, c.relname FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
"""
# What makes a target database "not empty": relations of its own (an index counts with
# its table). Those of extensions are left out: an extension created ahead of the restore
# (one only a superuser may create; PostGIS's spatial_ref_sys) is kept by the dump's
# CREATE EXTENSION IF NOT EXISTS.
USER_RELATIONS = """
SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind NOT IN ('i', 'I') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
"""
_SCHEMAS = "SELECT nspname FROM pg_catalog.pg_namespace"
_FOREIGN_KEYS = """
SELECT n.nspname, r.relname, c.conname FROM pg_catalog.pg_constraint c
  JOIN pg_catalog.pg_class r ON r.oid = c.conrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
 WHERE c.contype = 'f' AND c.conparentid = 0
"""
# The extensions already there (CREATE EXTENSION IF NOT EXISTS skips them before it
# checks a privilege), those of another owner, and whether the role is a superuser.
_EXTENSIONS_AND_ROLE = """
SELECT ARRAY(SELECT extname FROM pg_catalog.pg_extension),
       ARRAY(SELECT extname FROM pg_catalog.pg_extension
              WHERE NOT pg_catalog.pg_has_role(extowner, 'USAGE')),
       (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER)
"""
# The CHECK constraints of a partitioned table that a table to attach lacks.
_MISSING_CHECKS = """
SELECT c.conname, pg_catalog.pg_get_constraintdef(c.oid)
  FROM pg_catalog.pg_constraint c
 WHERE c.conrelid = pg_catalog.to_regclass(%s) AND c.contype = 'c'
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint l
                    WHERE l.conrelid = pg_catalog.to_regclass(%s) AND l.contype = 'c'
                      AND l.conname = c.conname)
"""
# Whether a table or one it is a partition of is hash-partitioned on an enum.
_HASHED_ANCESTOR = f"""
SELECT EXISTS (SELECT FROM pg_catalog.pg_partition_ancestors(pg_catalog.to_regclass(%s)) a
                 JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = a.relid
                WHERE {HASHED_ON_AN_ENUM})
"""
# Where the role may not create: the database (a new schema or extension), the schemas.
_CREATE_PRIVILEGES = """
SELECT pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE'),
       ARRAY(SELECT nspname FROM pg_catalog.pg_namespace
              WHERE NOT pg_catalog.has_schema_privilege(oid, 'CREATE'))
"""
_TABLESPACES = "SELECT spcname FROM pg_catalog.pg_tablespace"
_COLLATIONS = """
SELECT collname FROM pg_catalog.pg_collation
 WHERE collnamespace = 'pg_catalog'::pg_catalog.regnamespace
   AND collencoding IN (-1, pg_catalog.pg_char_to_encoding(pg_catalog.getdatabaseencoding()))
"""


def available_extensions(conn: psycopg.Connection) -> set[str]:
    """The extensions the server can create (its packages are installed)."""
    return {r[0] for r in conn.execute("SELECT name FROM pg_catalog.pg_available_extensions")}


def available_collations(conn: psycopg.Connection) -> set[str]:
    """The collations of pg_catalog the server has for the database's encoding (initdb
    made them from the operating system's locales)."""
    return {row[0] for row in conn.execute(_COLLATIONS)}


def default_jobs() -> int:
    return len(os.sched_getaffinity(0))


class RestoreOptions(BaseModel):
    """What to restore, and how (the restore command's flags); both formats."""

    clean: bool = False
    no_owner: bool = False
    no_tablespaces: bool = Field(
        False, description="create everything in the database's default tablespace"
    )
    jobs: int = Field(default_factory=default_jobs, ge=1, description="format 2 loaders")
    analyze: bool = False
    tables: list[str] = Field(default_factory=list, description="SCHEMA.TABLE; format 2")
    schemas: list[str] = Field(default_factory=list, description="format 2")
    with_roles: bool = Field(False, description="create the roles the target lacks first")
    owners_if_possible: bool = Field(
        False, description="verify: without owners and grants when the role may not give them"
    )
    database_properties: bool = Field(
        True, description="a whole restore also sets the database's settings, grants, comment"
    )
    lock_wait_timeout_seconds: int = Field(
        DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS,
        ge=1,
        description="how long one statement may wait for a lock another session holds",
    )
    missing_extensions: list[str] = Field(
        default_factory=list,
        description="extensions the target cannot load (verify): restore what does not need "
        "them, past the errors of what does, and leave those tables out",
    )
    missing_collations: list[str] = Field(
        default_factory=list, description="collations the target lacks (verify): the same"
    )

    @property
    def leave_out_flags(self) -> list[str]:
        return leave_out_flags(no_owner=self.no_owner, no_tablespaces=self.no_tablespaces)

    @property
    def tolerant(self) -> bool:
        return bool(self.missing_extensions or self.missing_collations)

    @property
    def partial(self) -> bool:
        return bool(self.tables or self.schemas)


@dataclass
class Outcome:
    database: str
    tables: list[str]  # restored tables of a partial restore (empty for a whole one)
    parts: int
    rows_copied: int
    phases: dict[str, float]  # seconds of pre-data, data and post-data
    roles: roles.CreatedRoles | None  # what --with-roles created
    database_properties: AppliedProperties | None = None


@dataclass
class _Target:
    dbname: str
    server_version_num: int
    relations: set[tuple[str, str]]
    schemas: set[str]
    user_relations: int
    extensions: set[str]  # available on the server
    tablespaces: set[str]
    collations: set[str]  # of pg_catalog, for the database's encoding
    encoding: str
    connections: connection_budget.ConnectionBudget
    role: str
    installed_extensions: set[str]
    foreign_extensions: set[str]  # installed, owned by a role the restorer is not
    superuser: bool
    foreign_keys: set[str]  # "schema table name ", as pg_restore -l prints them


class _Stop:
    """The first failure of a restore, and how to stop everything else on it."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._connections: set[psycopg.Connection] = set()
        self._processes: list[ToolProcess] = []

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.event.is_set():
                return
            self.error = exc
            self.event.set()
            processes, connections = list(self._processes), list(self._connections)
        for process in processes:
            process.kill_now()
        for conn in connections:
            with contextlib.suppress(Exception):
                conn.cancel_safe(timeout=10)

    @contextlib.contextmanager
    def watching(self, conn: psycopg.Connection) -> Iterator[None]:
        with self._lock:
            self._connections.add(conn)
        try:
            yield
        finally:
            with self._lock:
                self._connections.discard(conn)

    def add_process(self, process: ToolProcess) -> None:
        with self._lock:
            self._processes.append(process)
            stopped = self.event.is_set()
        if stopped:
            process.kill()
            raise loader.Cancelled()


class _Parts:
    """The parts still to load, handed out to the loaders; which tables are complete."""

    def __init__(self, parts: list[TablePart]) -> None:
        self._queue = sorted(parts, key=lambda p: p.raw_bytes, reverse=True)
        self._left = collections.Counter(_table(p) for p in parts)
        self._loading: collections.Counter[selection.Name] = collections.Counter()
        self._lock = threading.Lock()
        self.rows = 0

    def take(self, stop: threading.Event) -> TablePart | None:
        """The largest part of a table no other loader is filling, else the largest.

        Concurrent COPYs into one table contend for its extension lock, and a table
        filled by one loader at a time completes sooner: its indexes then build
        while other tables still load.
        """
        with self._lock:
            if not self._queue or stop.is_set():
                return None
            part = next((p for p in self._queue if not self._loading[_table(p)]), self._queue[0])
            self._queue.remove(part)
            self._loading[_table(part)] += 1
            return part

    def skipped(self, part: TablePart) -> None:
        with self._lock:
            self._loading[_table(part)] -= 1

    def loaded(self, part: TablePart, rows: int) -> bool:
        """Count a committed part; whether it was its table's last."""
        with self._lock:
            self.rows += rows
            self._loading[_table(part)] -= 1
            self._left[_table(part)] -= 1
            return not self._left[_table(part)]


def _table(part: TablePart) -> selection.Name:
    return part.schema_name, part.table


@dataclass
class _Scope:
    """What one restore takes from the backup: all of it, or what -L lists keep."""

    parts: list[TablePart]
    schema_entries: list[toc.Entry]  # what the schema archive restores, in TOC order
    drops: list[toc.Entry]  # what --clean drops first (toc.to_drop)
    schema_list: Path | None = None
    data_list: Path | None = None
    with_data_archive: bool = True
    tables: list[tuple[str, str]] | None = None  # a partial restore's tables
    attach_last: list[toc.Entry] = field(default_factory=list)  # selection.Selection's
    attachments: list[tuple[selection.Name, selection.Name]] = field(default_factory=list)


class _Restore:
    """One format-2 restore: its inputs, its scratch directory and its pg_restore."""

    def __init__(
        self, bucket: str, manifest: ManifestV2, target: ConnectionInfo,
        request: RestoreOptions, workdir: Path,
    ) -> None:  # fmt: skip
        self.bucket, self.manifest, self.target = bucket, manifest, target
        self.request, self.workdir = request, workdir
        self.major = int(manifest.pg_dump_version.split(".", 1)[0])
        self.pg_restore = str(find_tool("pg_restore", self.major).path)
        self.secrets = target.secret_values()
        self.env: dict[str, str] = {}
        self.dbname = ""
        self.build_early = True  # a table's own indexes, as its last part commits
        self.superuser = False  # the restoring role
        self.owners: set[str] = set()  # the roles the restore gives objects to
        self.joined: list[str] = []  # existing owners it joined to give them objects

    # -- the steps ---------------------------------------------------------------

    def run(self) -> Outcome:
        found = self.inspect_target()
        schema_file = self.fetch_schema_archive()
        scope = self.scope(toc.read(self.pg_restore, schema_file, self.env), found)
        # Every check before the first change: roles, then owners (roles it will create
        # are not there yet; it joins the existing ones it may), then what it may create
        # (as a member of a schema's owner too), then the roles are created.
        self.check_schemas(scope, found)
        wanted = self.wanted_roles()
        if not self.request.no_owner:
            self.check_owners(schema_file, scope)
        created = None
        try:
            self.check_privileges(scope, found)
            if wanted is not None and not self.request.no_owner:  # check_owners may drop them
                created = role_restore.create(self.target, wanted)
            outcome = self.restore(schema_file, scope, created)
            outcome.database_properties = self.apply_database_properties(wanted)
            return outcome
        finally:
            if joined := self.joined + (created.assumed if created is not None else []):
                role_restore.leave(self.target, joined)

    def restore(
        self, schema_file: Path, scope: _Scope, created: roles.CreatedRoles | None
    ) -> Outcome:
        encoding = toc.encoding(self.pg_restore, schema_file, self.env, self.workdir / "none.list")
        if self.request.clean:
            self.drop(schema_file, scope.drops)
        started = time.monotonic()
        pre_data = self.schemas_first(schema_file, scope)
        with schema_grants.lent(self.target, scope.schema_entries, self.lend_to()):
            self.pg_restore_file(schema_file, "pre-data", pre_data)
            return self.data_and_post_data(schema_file, scope, encoding, created, started)

    def data_and_post_data(
        self, schema_file: Path, scope: _Scope, encoding: str,
        created: roles.CreatedRoles | None, started: float,
    ) -> Outcome:  # fmt: skip
        defined = time.monotonic()
        early = {}
        if self.build_early:
            early = table_indexes.own_indexes(
                scope.schema_entries, scope.parts, self.manifest.table_names()
            )
        rows = self.load_data(scope, encoding, functools.partial(self.build, schema_file, early))
        loaded = time.monotonic()
        self.post_data(schema_file, scope, {e.dump_id for es in early.values() for e in es})
        phases = {
            "pre-data": round(defined - started, 3),
            "data": round(loaded - defined, 3),
            "post-data": round(time.monotonic() - loaded, 3),
        }
        log.info(
            "restore %s: definitions in %.1fs, data loaded in %.1fs, indexes and constraints "
            "built in %.1fs", self.manifest.dump_key, *phases.values(),
        )  # fmt: skip
        if self.request.analyze:
            self.analyze(scope.tables)
        return Outcome(
            database=self.dbname,
            tables=[f"{s}.{t}" for s, t in scope.tables or []],
            parts=len(scope.parts),
            rows_copied=rows,
            phases=phases,
            roles=created,
        )

    def post_data(self, schema_file: Path, scope: _Scope, built: set[int]) -> None:
        """What the data waited for, but the indexes and keys built early: then the
        index attachments, the foreign keys and triggers of partitioned tables
        (toc.partitioned_steps), then the attachment of partitions restored alone
        (selection.Selection.attach_last)."""
        steps = toc.partitioned_steps(scope.schema_entries)
        later = built | steps.ids()
        rest = [e for e in scope.schema_entries if e.dump_id not in later]
        rest_list = toc.write_list(self.workdir / "post-data.list", rest) if later else None
        self.pg_restore_file(
            schema_file, "post-data", rest_list or scope.schema_list, jobs=self.request.jobs
        )
        if steps.attachments:
            listed = toc.write_list(self.workdir / "attach-indexes.list", steps.attachments)
            self.pg_restore_file(schema_file, "post-data", listed, what="index attachments")
        if steps.last:
            self.pg_restore_file(
                schema_file, "post-data", toc.write_list(self.workdir / "last.list", steps.last),
                jobs=self.request.jobs, what="foreign keys and triggers of partitioned tables",
            )  # fmt: skip
        if scope.attach_last:
            self.give_checks(scope.attachments)
            listed = toc.write_list(self.workdir / "attach.list", scope.attach_last)
            self.pg_restore_file(schema_file, None, listed, what="partitions' attachment")

    def give_checks(self, attachments: list[tuple[selection.Name, selection.Name]]) -> None:
        """Each partition restored alone gets the CHECK constraints of its table that it
        lacks, as they are there (NOT VALID too), since ATTACH PARTITION requires them:
        pg_dump writes a NOT VALID one apart, on the partitioned table only, and a whole
        restore adds it after the attachment, down to every partition."""
        with connect(self.target, writable=True) as conn:
            for partition, table in attachments:
                try:
                    _give_checks(conn, partition, table)
                except psycopg.Error as exc:
                    raise RestoreFailedError(
                        f"restore of {self.manifest.dump_key} into {self.dbname}: giving "
                        f"{'.'.join(partition)} the checks of {'.'.join(table)} failed: "
                        f"{_first_line(exc, self.target)}",
                        hint=INCOMPLETE_TARGET,
                    ) from None

    def inspect_target(self) -> _Target:
        found = inspect(self.target)
        if not self.request.partial and found.user_relations and not self.request.clean:
            raise TargetNotEmptyError(
                f"target database {found.dbname} on {self.target.describe()} is not empty "
                f"({found.user_relations} relations)",
                hint="restore into an empty database, pass --clean to drop and replace "
                "objects, or name tables with --table",
            )
        refuse_older_target(self.manifest, found.server_version_num, self.target.describe())
        if not self.request.partial:
            self.refuse_what_the_server_lacks(found)
        warn_if_unlike(self.manifest.database_locale, found.encoding, self.target.describe())
        self.fit_jobs(found.connections)
        self.dbname = found.dbname
        self.superuser = found.superuser
        self.env = self.target.libpq_env(settings=restore_settings(found.server_version_num))
        return found

    def fit_jobs(self, budget: connection_budget.ConnectionBudget) -> None:
        """As many loaders as the target's free sessions allow, beside the remaining-data
        archive's: two each, as a loader keeps its session while it builds a table's
        indexes; or one loader, whose tables' indexes then wait for post-data."""
        what = f"the restore into {self.target.describe()}"
        try:
            jobs = connection_budget.fit_jobs(
                budget, self.request.jobs, besides=1, per_job=2, what=what
            )
        except ConnectionLimitError:
            jobs = connection_budget.fit_jobs(budget, 1, besides=1, what=what)
            self.build_early = False
            log.warning(
                "%s: %s leaves %d session(s) free: one loader, and every index is built "
                "after the data", what, budget.limit, budget.free,
            )  # fmt: skip
        self.request = self.request.model_copy(update={"jobs": jobs})

    def refuse_what_the_server_lacks(self, found: _Target) -> None:
        """Before a whole restore changes anything: pre-data would stop at the first object
        that needs what the server lacks, with part of the schema restored."""
        where, key = self.target.describe(), self.manifest.dump_key
        missing = sorted(set(self.manifest.extensions) - found.extensions)
        if missing and not self.request.tolerant:
            raise MissingExtensionsError(
                f"the restore target {where} cannot create extension(s) {', '.join(missing)}, "
                f"which the backup {key} uses: their packages are not installed on that "
                "server; nothing was restored",
                hint="install them on the target server (Debian/Ubuntu: the "
                "postgresql-<major>-<extension> package; RDS/Aurora: SHOW "
                "rds.extensions lists what it offers), or restore into a server that has them",
            )
        spaces = sorted(set(self.manifest.tablespaces) - found.tablespaces)
        if spaces and not self.request.no_tablespaces:
            raise MissingTablespacesError(
                f"the restore target {where} has no tablespace(s) {', '.join(spaces)}, which "
                f"tables or indexes of the backup {key} are in; nothing was restored",
                hint=TABLESPACES_HINT,
            )
        collations = sorted(set(self.manifest.collations) - found.collations)
        backup = self.manifest.database_locale
        if collations and backup and backup.encoding != found.encoding:
            raise collations_need_encoding(where, collations, found.encoding, backup.encoding)
        if collations and not self.request.tolerant:
            raise MissingCollationsError(
                f"the restore target {where} has no collation(s) "
                f"{', '.join(f'pg_catalog.{c}' for c in collations)}, which columns or indexes "
                f"of the backup {key} use; nothing was restored",
                hint=COLLATIONS_HINT,
            )

    def scope(self, schema_toc: list[toc.Entry], found: _Target) -> _Scope:
        """Everything, or the named tables' entries and parts (refused if they exist)."""
        if not self.request.partial:
            kept = _without_foreign_extension_comments(schema_toc, found.foreign_extensions)
            drops = toc.to_drop(kept, schema_toc)
            if len(kept) == len(schema_toc):
                return _Scope(list(self.manifest.parts), schema_toc, drops)
            listed = toc.write_list(self.workdir / "schema.list", kept)
            return _Scope(list(self.manifest.parts), kept, drops, schema_list=listed)
        choice = selection.select(
            self.manifest, schema_toc,
            tables=self.request.tables, schemas=self.request.schemas,
            existing=found.relations, existing_schemas=found.schemas,
            existing_keys=frozenset(found.foreign_keys),
        )  # fmt: skip
        self.refuse_existing(choice, found)
        self.refuse_loaded_via_root(choice)
        # Read before anything changes in the target: a failure here leaves it as it was.
        data_entries = choice.data_entries(self.read_data_toc())
        return _Scope(
            parts=choice.parts,
            schema_entries=choice.schema_entries,
            drops=toc.to_drop(choice.schema_entries, schema_toc),
            schema_list=toc.write_list(self.workdir / "schema.list", choice.schema_entries),
            data_list=toc.write_list(self.workdir / "data.list", data_entries),
            with_data_archive=bool(data_entries),
            tables=choice.tables,
            attach_last=choice.attach_last,
            attachments=choice.attachments,
        )

    def wanted_roles(self) -> roles.RoleSet | None:
        """The backup's roles, for a whole restore with owners (a partial one goes into a
        database that has them, unless --with-roles)."""
        request = self.request
        if self.manifest.roles is None or request.no_owner:
            return None
        if request.partial and not request.with_roles:
            return None
        return role_restore.needed(
            self.bucket, self.manifest, self.target, with_roles=request.with_roles
        )

    def apply_database_properties(self, wanted: roles.RoleSet | None) -> AppliedProperties | None:
        """The database's own settings, grants and comment (database_properties.py); a
        whole restore only, while the roles it joined are still its."""
        request, stored = self.request, self.manifest.roles
        if request.partial or not request.database_properties or stored is None:
            return None
        found = wanted or role_restore.read(self.bucket, stored)
        if found.database is None:
            return None
        return database_properties.apply(self.target, found.database, owners=not request.no_owner)

    def check_schemas(self, scope: _Scope, found: _Target) -> None:
        """Before anything changes: every schema the backup's objects go into is there, or
        the backup creates it. (pg_dump never creates ``public``: a target whose public
        schema was dropped would stop at the first table in it.) Schemas are matched by
        the first word pg_restore prints of their name, so a name with a space never
        raises a false alarm; nor one an extension the restore creates may make (pg_cron
        makes cron): then pg_restore has the last word, as it does in a verify."""
        if self.request.tolerant or _new_extensions(scope.schema_entries, found):
            return
        known = {toc.first_word(s) for s in found.schemas}
        known |= {e.rest.split(" ")[1] for e in scope.schema_entries if e.kind == "SCHEMA"}
        missing = sorted(
            {
                toc.first_word(e.rest)
                for e in scope.schema_entries
                if e.kind in schema_grants.CREATES_IN_SCHEMA
            }
            - known
        )
        if missing:
            raise RestoreFailedError(
                f"the restore target {found.dbname} on {self.target.describe()} has no "
                f"schema(s) {', '.join(missing)}, where the backup {self.manifest.dump_key} "
                "puts objects, and the backup does not create them (pg_dump never creates "
                "public); nothing was restored",
                hint=f"create them first (CREATE SCHEMA {missing[0]}, as the database's owner), "
                "then restore again",
            )

    def check_privileges(self, scope: _Scope, found: _Target) -> None:
        """Before anything changes: may the role create the schemas and the objects?

        Else pre-data stops at the first CREATE it may not run, with what came
        before it restored: on PostgreSQL 15 and later, a role that does not own
        the target database may not create in its schema public unless granted.
        """
        entries, clean = scope.schema_entries, self.request.clean
        schemas = [e for e in entries if e.kind == "SCHEMA"]
        existing = {s for s in found.schemas if any(e.names("-", s) for e in schemas)}
        new_schemas = len(existing) < len(schemas) or (clean and schemas)
        with connect(self.target) as conn:  # now: the roles it joined count
            may_create_schemas, closed = conn.execute(_CREATE_PRIVILEGES).fetchone()
        denied = []
        if not may_create_schemas and (new_schemas or _new_extensions(entries, found)):
            denied.append(f"CREATE ON DATABASE {toc.quote_ident(found.dbname)}")
        # With --clean, the schemas the backup holds are dropped and created again: its own.
        for schema in sorted(set(closed) - (existing if clean else set())):
            if any(
                e.kind in schema_grants.CREATES_IN_SCHEMA and e.in_schema(schema) for e in entries
            ):
                denied.append(f"CREATE ON SCHEMA {toc.quote_ident(schema)}")
        if denied:
            raise TargetPermissionError(
                f"role {found.role!r} may not create what the restore of "
                f"{self.manifest.dump_key} creates in {found.dbname} on "
                f"{self.target.describe()}: it lacks {', '.join(denied)}; nothing was restored",
                hint=f"restore as the database's owner or a superuser, or have its owner run "
                f"GRANT {'; GRANT '.join(denied)} TO {toc.quote_ident(found.role)}",
            )

    def check_owners(self, schema_file: Path, scope: _Scope) -> None:
        """Before anything changes: may the role give every object to its owner?

        A backup of objects owned by the source's bootstrap superuser names it
        (often ``postgres``); restored by a role that is not a superuser (RDS's
        master user) that fails half-way, at the first ``OWNER TO``. Only a name
        that also ends a TOC entry (its owner) counts: a function's body may hold
        a line that looks like an ``OWNER TO``.
        """
        names = {
            name
            for name in toc.owners(self.pg_restore, schema_file, self.env, scope.schema_list)
            if any(e.rest.endswith(" " + toc.printed(name)) for e in scope.schema_entries)
        }
        self.owners = names
        with connect(self.target, writable=True) as conn:
            refused = roles.not_assignable(conn, names)
            user = conn.info.user
            # Roles it may grant itself (ADMIN): joined for the restore, left after it.
            joined = roles.join(conn, refused)
            refused = [name for name in refused if name not in joined]
            if refused:  # nothing changes before every check passed
                roles.leave(conn, joined)
            else:
                self.joined = joined
        if not refused:
            if self.joined:
                log.info("joined role(s) %s for the restore, to give them their objects",
                         ", ".join(self.joined))  # fmt: skip
            return
        if self.request.owners_if_possible:
            log.warning(
                "role %s may not give objects to role(s) %s: restoring without owners and "
                "grants", user, ", ".join(refused),
            )  # fmt: skip
            self.request = self.request.model_copy(update={"no_owner": True})
            return
        raise OwnershipError(
            f"role {user!r} may not give the restored objects to their owner(s) "
            f"{', '.join(refused)} in {self.dbname} on {self.target.describe()}: ALTER ... "
            "OWNER TO needs membership in the new owner; nothing was restored",
            hint=f"restore as a superuser, or GRANT {', '.join(refused)} TO {user}, or pass "
            "--no-owner (no owners, no grants)",
        )

    def fetch_schema_archive(self) -> Path:
        return fetch_schema_archive(self.bucket, self.manifest, self.workdir / "schema.dump")

    def refuse_existing(self, choice: selection.Selection, checked: _Target) -> None:
        present = [f"{s}.{t}" for s, t in choice.tables if (s, t) in checked.relations]
        if present and not self.request.clean:
            raise TargetNotEmptyError(
                f"table(s) {', '.join(present)} already exist in target database "
                f"{checked.dbname} on {self.target.describe()}",
                hint="drop them first, or pass --clean to drop and replace them",
            )

    def refuse_loaded_via_root(self, choice: selection.Selection) -> None:
        """A partition of a table hash-partitioned on an enum does not come back alone:
        pg_dump stored its rows to be loaded through that table (plan.HASHED_ON_AN_ENUM),
        whose hash of the enum sends them to other partitions in another database."""
        if not choice.attachments:
            return
        with connect(self.target) as conn:
            hashed = [
                f"{s}.{t}"
                for s, t in sorted({table for _, table in choice.attachments})
                if conn.execute(_HASHED_ANCESTOR, [_regclass(conn, s, t)]).fetchone()[0]
            ]
        if hashed:
            raise UsageError(
                f"partitions of {', '.join(hashed)} cannot be restored alone: it is "
                "hash-partitioned on an enum, so the backup loads their rows through it, "
                "into whichever partition the enum's hash picks",
                hint=f"restore the partitioned table whole: --table {hashed[0]} --clean",
            )

    def drop(self, schema_file: Path, drops: list[toc.Entry]) -> None:
        """Drop what the restore replaces, as pg_restore --clean would (run_drops)."""
        listed = toc.write_list(self.workdir / "drop.list", drops)
        script = toc.drop_script(self.pg_restore, schema_file, self.env, listed)
        run_drops(
            script, self.major, self.env, self.dbname,
            secrets=self.secrets, partial=self.request.partial, dump_key=self.manifest.dump_key,
        )  # fmt: skip

    def lend_to(self) -> set[str]:
        """The owners that may need CREATE lent on their objects' schemas (schema_grants.py):
        none when a superuser restores, or without owners."""
        return set() if self.superuser or self.request.no_owner else self.owners

    def schemas_first(self, schema_file: Path, scope: _Scope) -> Path | None:
        """The schemas and their grants, in a run of their own; the -L list for the rest
        of pre-data.

        pg_restore grants last (ACL entries close the TOC), but a role that is not a
        superuser may give an object only to a role that may create it in its schema
        (ALTER ... OWNER TO): the source's GRANT CREATE ON SCHEMA to the roles that
        own objects there must come before the objects, else pre-data stops at the
        first one ("permission denied for schema"). The later runs grant again, alike.
        Run whenever a role that is not a superuser gives objects away: the schemas
        must exist for schema_grants to lend CREATE on them where the source's grants
        do not give it.
        """
        entries = scope.schema_entries
        first = [
            e for e in entries
            if e.kind == "SCHEMA" or (e.kind == "ACL" and e.rest.startswith("- SCHEMA "))
        ]  # fmt: skip
        if not self.lend_to() or not first:
            return scope.schema_list
        listed = toc.write_list(self.workdir / "schemas.list", first)
        self.pg_restore_file(schema_file, None, listed, what="schemas and their grants")
        rest = [e for e in entries if e.kind != "SCHEMA"]
        return toc.write_list(self.workdir / "pre-data.list", rest)

    def pg_restore_file(
        self, archive: Path, section: str | None, selected: Path | None, *, jobs: int = 1,
        stop: _Stop | None = None, what: str = "",
    ) -> None:  # fmt: skip
        argv = self._argv(section, selected)
        if jobs > 1:
            argv.append(f"--jobs={jobs}")
        process = ToolProcess([*argv, str(archive)], self.env, secrets=self.secrets)
        if stop is not None:
            stop.add_process(process)
        code = process.wait()
        what = what or section
        if code != 0 and stop is not None and stop.event.is_set():
            raise loader.Cancelled()
        if code != 0 and self.request.tolerant:
            log.warning("restore (%s) went on past errors: %s", what, process.failure())
        elif code != 0:
            raise RestoreFailedError(
                f"restore of {self.manifest.dump_key} ({what}) into {self.dbname} failed: "
                f"{process.failure()}",
                hint=INCOMPLETE_TARGET,
            )

    def read_data_toc(self) -> list[toc.Entry]:
        """The remaining-data archive's TOC, from the start of its stream."""
        out = self.workdir / "data.toc"
        return from_stream(
            self.bucket, self.manifest.data_archive, self._what("data"),
            lambda chunks: toc.list_stream(self.pg_restore, self.env, chunks, out),
        )  # fmt: skip

    def build(
        self, schema_file: Path, early: dict[selection.Name, list[toc.Entry]],
        table: selection.Name, stop: _Stop,
    ) -> None:  # fmt: skip
        """A loaded table's own indexes and keys (table_indexes.py), if it has any."""
        if not (entries := early.get(table)):
            return
        listed = toc.write_list(self.workdir / f"indexes-{entries[0].dump_id}.list", entries)
        what = f"indexes of {table[0]}.{table[1]}"
        self.pg_restore_file(schema_file, "post-data", listed, stop=stop, what=what)

    def load_data(
        self, scope: _Scope, encoding: str, loaded: Callable[[selection.Name, _Stop], None]
    ) -> int:
        """The remaining-data archive and the parts, in parallel; the first failure wins.

        ``loaded(table, stop)`` runs in the loader that committed a table's last part.
        """
        stop = _Stop()
        numbers = {id(p): n for n, p in enumerate(self.manifest.parts, 1)}
        parts = _Parts(scope.parts)
        with_archive, data_list = scope.with_data_archive, scope.data_list

        def loader_job() -> None:
            with connect(self.target, writable=True) as conn, stop.watching(conn):
                conn.execute(
                    "SELECT pg_catalog.set_config('client_encoding', %s, false)", [encoding]
                )
                while (part := parts.take(stop.event)) is not None:
                    what = f"part {numbers[id(part)]} of table {part.qualified}"
                    if self.request.tolerant and not _exists(conn, part):
                        log.warning("%s not loaded: its table was not restored", what)
                        parts.skipped(part)
                        continue
                    count = loader.load_part(
                        conn, self.target, self.bucket, part, what=what, stop=stop.event
                    )
                    if parts.loaded(part, count):
                        loaded(_table(part), stop)

        jobs: list[Callable[[], None]] = []
        if with_archive and data_list is None:
            jobs.append(lambda: self.restore_data_archive(stop))
        elif with_archive:
            jobs.append(lambda: self.restore_data_selection(data_list, stop))
        jobs += [loader_job] * min(self.request.jobs, len(scope.parts))
        log.info(
            "restore %s: %d part(s) by %d loader(s)%s", self.manifest.dump_key, len(scope.parts),
            len(jobs) - with_archive, ", the remaining-data archive by pg_restore" * with_archive,
        )  # fmt: skip
        if not jobs:
            return 0
        with ThreadPoolExecutor(len(jobs), thread_name_prefix="restore") as pool:
            try:
                futures = [pool.submit(_guarded, job, stop) for job in jobs]
                wait(futures)
            except BaseException as exc:  # SIGINT/SIGTERM in this thread: stop them all
                stop.fail(exc)
                raise
        if stop.error is not None:
            raise stop.error
        return parts.rows

    def restore_data_archive(self, stop: _Stop) -> None:
        """The whole remaining-data archive, streamed into pg_restore."""
        stored = self.manifest.data_archive
        process = ToolProcess(
            self._argv("data", None), self.env, stdin=subprocess.PIPE, secrets=self.secrets
        )
        stop.add_process(process)
        source = CheckedObject(self.bucket, stored, self._what("data"))
        try:
            fed = feed(process, source, stop.event)
        except BaseException:
            process.kill()
            raise
        finally:
            source.close()
        code = process.wait()
        if code != 0 and stop.event.is_set():
            raise loader.Cancelled()
        if fed and code != 0 and self.request.tolerant:
            log.warning("restore (data) went on past errors: %s", process.failure())
        elif not fed or code != 0:
            raise RestoreFailedError(
                f"restore of {stored.key} into {self.dbname} failed: {process.failure()}",
                hint=INCOMPLETE_TARGET,
            )

    def restore_data_selection(self, data_list: Path, stop: _Stop) -> None:
        """Some entries of the remaining-data archive, committed only once it all checked.

        With a -L list pg_restore stops reading as soon as it has what it was
        asked for, long before the end of the object: holding back the last
        chunk cannot keep it from finishing on bytes not checked yet. So its
        SQL goes through psql in one transaction, and psql's input ends (and
        the transaction commits) only after the whole object matched the
        manifest; a mismatch kills psql, which rolls everything back.
        """
        stored = self.manifest.data_archive
        argv = [self.pg_restore, "-f", "-", "--section=data", f"--use-list={data_list}"]
        argv += self.request.leave_out_flags
        # A psql of pg_restore's major knows the meta-commands it writes (restrict).
        psql_argv = [
            str(find_tool("psql", self.major).path), "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1",
            "--single-transaction", "-f", "-", f"--dbname={self.dbname}",
        ]  # fmt: skip
        psql = ToolProcess(
            psql_argv, self.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            secrets=self.secrets,
        )  # fmt: skip
        stop.add_process(psql)
        script = ToolProcess(
            argv, self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, secrets=self.secrets
        )
        stop.add_process(script)
        pump = threading.Thread(target=_pump, args=(script, psql), name="restore-sql")
        pump.start()
        source = CheckedObject(self.bucket, stored, self._what("data"))
        try:
            for chunk in source.decompressed():
                if stop.event.is_set():
                    raise loader.Cancelled()
                if not _write(script, chunk):
                    break  # pg_restore has what it needs: the rest is only checked
            source.finish(consumed=False)
            with contextlib.suppress(BrokenPipeError):
                script.stdin.close()
            pump.join()
            if script.wait() != 0:
                raise RestoreFailedError(
                    f"restore of {stored.key} into {self.dbname} failed: {script.failure()}",
                    hint=INCOMPLETE_TARGET,
                )
            with contextlib.suppress(BrokenPipeError):
                psql.stdin.close()  # COMMIT
        except BaseException:
            script.kill()
            psql.kill()
            pump.join()
            raise
        finally:
            source.close()
        if psql.wait() != 0:
            if stop.event.is_set():
                raise loader.Cancelled()
            raise RestoreFailedError(
                f"restore of {stored.key} into {self.dbname} failed: {psql.failure()}",
                hint=INCOMPLETE_TARGET,
            )

    def analyze(self, tables: list[tuple[str, str]] | None) -> None:
        statement = sql.SQL("ANALYZE")
        if tables:
            names = sql.SQL(", ").join(sql.Identifier(s, t) for s, t in tables)
            statement = sql.SQL("ANALYZE {}").format(names)
        with connect(self.target, writable=True) as conn:
            try:
                conn.execute(statement)
            except psycopg.Error as exc:
                raise DatabaseError(
                    f"ANALYZE of {self.dbname} after the restore failed: "
                    f"{_first_line(exc, self.target)}",
                    hint="the data is restored; run ANALYZE yourself",
                ) from None

    # -- helpers -----------------------------------------------------------------

    def _argv(self, section: str | None, selected: Path | None) -> list[str]:
        argv = [self.pg_restore, "-w", f"--dbname={self.dbname}"]
        if not self.request.tolerant:
            argv.append("--exit-on-error")
        if section is not None:
            argv.append(f"--section={section}")
        if selected is not None:
            argv.append(f"--use-list={selected}")
        return [*argv, *self.request.leave_out_flags]

    def _what(self, archive: str) -> str:
        names = {"schema": "the schema archive", "data": "the remaining-data archive"}
        return f"{names[archive]} of {self.manifest.database}"


def _without_foreign_extension_comments(
    entries: list[toc.Entry], foreign: set[str]
) -> list[toc.Entry]:
    """The entries but the COMMENT ON EXTENSION of extensions the target already has
    under another owner: the advice for a restoring role that may not create one is to
    have a superuser create it first, and then only its owner may comment on it ("must
    be owner of extension"). CREATE EXTENSION gave it its control file's comment."""
    skipped = {
        e.dump_id for e in entries
        if e.kind == "COMMENT" and any(e.names("-", f"EXTENSION {name}") for name in foreign)
    }  # fmt: skip
    for entry in entries:
        if entry.dump_id in skipped:
            log.info("left out %s: the extension exists in the target under another owner",
                     entry.line.split(" ", 3)[-1].strip())  # fmt: skip
    return [e for e in entries if e.dump_id not in skipped]


def _new_extensions(entries: list[toc.Entry], found: _Target) -> list[toc.Entry]:
    """The backup's extensions the target does not have yet (CREATE EXTENSION IF NOT
    EXISTS creates only those)."""
    return [
        e for e in entries
        if e.kind == "EXTENSION"
        and not any(e.names("-", name) for name in found.installed_extensions)
    ]  # fmt: skip


def _exists(conn: psycopg.Connection, part: TablePart) -> bool:
    name = _regclass(conn, part.schema_name, part.table)
    row = conn.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL", [name]).fetchone()
    return bool(row and row[0])


def _give_checks(
    conn: psycopg.Connection, partition: selection.Name, table: selection.Name
) -> None:
    missing = conn.execute(
        _MISSING_CHECKS, [_regclass(conn, *table), _regclass(conn, *partition)]
    ).fetchall()
    for name, definition in missing:
        statement = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            sql.Identifier(*partition), sql.Identifier(name), sql.SQL(definition)
        )
        conn.execute(statement)
        log.info("gave %s.%s its table's constraint %s", *partition, name)


def _regclass(conn: psycopg.Connection, schema: str, table: str) -> str:
    """A table's name as to_regclass reads it."""
    return sql.Identifier(schema, table).as_string(conn)


def _guarded(job: Callable[[], None], stop: _Stop) -> None:
    """Run one job; its failure stops the others (a consequence of stopping is not one)."""
    try:
        job()
    except loader.Cancelled:
        pass
    except BaseException as exc:
        stop.fail(exc)


def run_drops(
    script: bytes, major: int, env: dict[str, str], dbname: str, *,
    secrets: list[str], partial: bool, dump_key: str,
) -> None:  # fmt: skip
    """Run a drop script (toc.drop_script) through psql, stopping at the first error.

    A partial restore drops in one transaction: if a view or a table outside the
    backup depends on a named table, nothing is dropped. A whole-database clean
    drops statement by statement, as pg_restore --clean does (one transaction
    could exceed the server's lock table on a big schema).
    """
    argv = [
        str(find_tool("psql", major).path), "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1",
        "-f", "-", f"--dbname={dbname}",
    ]  # fmt: skip
    if partial:
        argv.append("--single-transaction")
    psql = ToolProcess(argv, env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, secrets=secrets)
    with contextlib.suppress(BrokenPipeError):
        psql.stdin.write(script)
        psql.stdin.close()
    if psql.wait() != 0:
        nothing = " (nothing was dropped)" if partial else ""
        raise RestoreFailedError(
            f"restore of {dump_key} into {dbname}: dropping the objects to replace "
            f"failed{nothing}: {psql.failure()}",
            hint="drop what depends on them (named above), or restore into an empty database",
        )


def from_stream(
    bucket: str, stored: StoredObject, what: str, read: Callable[[Iterator[bytes]], _Read | str]
) -> _Read:
    """What ``read`` (a pg_restore of the archive's TOC) takes from the start of a stored
    archive; its failure is the archive's corruption when the bytes read say so."""
    source = CheckedObject(bucket, stored, what)
    try:
        result = read(source.decompressed())
        if isinstance(result, str):
            if (corrupt := source.corruption()) is not None:
                raise corrupt
            raise RestoreFailedError(
                f"pg_restore cannot read the table of contents of {stored.key}: {result}",
                hint="check that the pg_restore found can read this archive",
            )
    finally:
        source.close()
    return result


def fetch_schema_archive(bucket: str, manifest: ManifestV2, path: Path) -> Path:
    """The schema archive, decompressed into a file (pg_restore -j needs one), checked.

    It holds DDL only (and large objects' metadata): small whatever the data.
    """
    what = f"the schema archive of {manifest.database}"
    source = CheckedObject(bucket, manifest.schema_archive, what)
    try:
        with path.open("wb") as out:
            for chunk in source.decompressed():
                out.write(chunk)
        source.finish()
    finally:
        source.close()
    return path


def _pump(script: ToolProcess, psql: ToolProcess) -> None:
    """pg_restore's SQL into psql, never closing psql's input (that would commit).

    If psql stops (an SQL error), the rest is read and dropped, so that pg_restore
    never blocks on a full pipe: psql's exit status then says what failed.
    """
    open_ = True
    while data := script.stdout.read(checked.WRITE_CHUNK):
        if open_:
            try:
                psql.stdin.write(data)
            except (BrokenPipeError, ValueError, OSError):
                open_ = False
    with contextlib.suppress(BrokenPipeError, ValueError, OSError):
        psql.stdin.flush()


def feed(process: ToolProcess, source: CheckedObject, stop: threading.Event) -> bool:
    """An archive into pg_restore's stdin, the last chunk held back until it is checked.

    Returns False when pg_restore stopped reading before the end on bytes that
    match the manifest (its own failure); raises ChecksumMismatchError when
    they differ, whatever pg_restore made of them meanwhile.
    """
    pending: bytes | None = None
    for chunk in source.decompressed():
        if stop.is_set():
            raise loader.Cancelled()
        if pending is not None and not _write(process, pending):
            if stop.is_set():  # killed by us: another part of the restore failed
                raise loader.Cancelled()
            if (corrupt := source.corruption()) is not None:
                raise corrupt
            return False
        pending = chunk
    source.finish()
    if pending is not None and not _write(process, pending):
        return False
    try:
        process.stdin.close()
    except BrokenPipeError:
        return False
    return True


def _write(process: ToolProcess, data: bytes) -> bool:
    try:
        process.stdin.write(data)
    except BrokenPipeError:
        return False
    return True


def inspect(target: ConnectionInfo) -> _Target:
    """The target's name, version and relations."""
    with connect(target) as conn:
        try:
            relations = {(s, t) for s, t in conn.execute(_RELATIONS).fetchall()}
            schemas = {row[0] for row in conn.execute(_SCHEMAS).fetchall()}
            extensions = available_extensions(conn)
            tablespaces = {row[0] for row in conn.execute(_TABLESPACES).fetchall()}
            collations = available_collations(conn)
            encoding = database_encoding(conn)
            refuse_read_only(conn, target.describe())
            connections = connection_budget.measure(conn, closing=True)
            count = conn.execute(USER_RELATIONS).fetchone()
            installed, foreign, superuser = conn.execute(_EXTENSIONS_AND_ROLE).fetchone()
            keys = {" ".join(map(toc.printed, row)) + " " for row in conn.execute(_FOREIGN_KEYS)}
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot inspect the target database {conn.info.dbname} on "
                f"{target.describe()}: {_first_line(exc, target)}",
                hint="check that the role may connect to and read the target's catalog",
            ) from None
        return _Target(
            dbname=conn.info.dbname,
            server_version_num=conn.info.server_version,
            relations=relations,
            schemas=schemas,
            user_relations=count[0] if count else 0,
            extensions=extensions,
            tablespaces=tablespaces,
            collations=collations,
            encoding=encoding,
            connections=connections,
            role=conn.info.user,
            installed_extensions=set(installed),
            foreign_extensions=set(foreign),
            superuser=bool(superuser),
            foreign_keys=keys,
        )


def refuse_read_only(conn: psycopg.Connection, where: str) -> None:
    """A hot standby refuses every write: said before anything starts, not as the first
    CREATE's "read-only transaction"."""
    row = conn.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()
    if row and row[0]:
        raise TargetReadOnlyError(
            f"the restore target {where} is a hot standby (in recovery): it is read-only; "
            "nothing was restored",
            hint="restore into its primary, which replicates to it, or into a writable server",
        )


def refuse_older_target(backup: Manifest | ManifestV2, target_version_num: int, where: str) -> None:
    """Before anything changes: a dump loads only into the same or a newer major."""
    source, target = server_major(backup.server_version_num), server_major(target_version_num)
    if target < source:
        raise TargetServerTooOldError(
            f"the restore target {where} runs PostgreSQL {target}, and the backup "
            f"{backup.dump_key} is of PostgreSQL {backup.server_version}: a dump loads only "
            f"into the same or a newer major version; nothing was restored",
            hint=f"restore into a PostgreSQL {source} (or newer) server",
        )


def restore_format2(
    bucket: str, manifest: ManifestV2, target: ConnectionInfo, request: RestoreOptions
) -> Outcome:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pgad-restore-") as workdir:
        outcome = _Restore(bucket, manifest, target, request, Path(workdir)).run()
    log.info("restored %s in %.1fs", manifest.dump_key, time.monotonic() - started)
    return outcome


def _first_line(exc: BaseException, info: ConnectionInfo) -> str:
    lines = redact(str(exc), info.secret_values()).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
