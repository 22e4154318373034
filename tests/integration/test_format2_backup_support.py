"""Helpers for the format-2 backup tests (this module holds no tests).

The backups here are read back by hand, the way a format-2 restore must work:
the schema archive's pre-data, the remaining-data archive, every COPY part
into its table with its exact column list, then the post-data. No test depends
on ``pgautodumper restore`` for format 2.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import zstandard

from pgautodumper.connection import ConnectionInfo
from pgautodumper.manifest import ManifestV2, StoredObject, TablePart
from pgautodumper.parallel_backup import qualified
from pgautodumper.pgtools import find_tool
from pgautodumper.toc import quote_ident
from tests.conftest import BACKUP_PASSWORD, BACKUP_ROLE

MiB = 1024 * 1024
THRESHOLD = MiB  # the smallest --stream-threshold-bytes: small test tables stream


def backup_argv(url: str, bucket: str, *extra: str, name: str = "f2") -> list[str]:
    return [
        sys.executable, "-m", "pgautodumper", "backup", "--database-url", url,
        "--bucket", bucket, "--name", name, "--format", "2", "--json", *extra,
    ]  # fmt: skip


def start_backup(url: str, bucket: str, *extra: str, env: dict[str, str] | None = None):
    """The real CLI in a child process (its pid is the parent of its pg_dump and psql)."""
    return subprocess.Popen(
        backup_argv(url, bucket, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def manifest_of(stdout: str) -> ManifestV2:
    return ManifestV2.model_validate(json.loads(stdout))


def stored_manifest(s3, bucket: str, manifest: ManifestV2) -> ManifestV2:
    body = s3.get_object(Bucket=bucket, Key=manifest.manifest_key)["Body"].read()
    return ManifestV2.model_validate_json(body)


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("pgautodumper: error")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    assert BACKUP_PASSWORD not in stderr, stderr
    return lines[0]


def assert_nothing_stored(s3, bucket: str) -> None:
    """No object (no manifest, no completed part) and no multipart upload left open."""
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == []
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def raw_object(s3, bucket: str, stored: StoredObject) -> bytes:
    """The object's bytes, decompressed, after checking sizes and sha256 against the manifest."""
    body = s3.get_object(Bucket=bucket, Key=stored.key)["Body"].read()
    assert len(body) == stored.stored_bytes, stored.key
    assert hashlib.sha256(body).hexdigest() == stored.sha256, stored.key
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(body)
    assert len(raw) == stored.raw_bytes, stored.key
    return raw


def part_rows(s3, bucket: str, part: TablePart) -> list[list[str]]:
    """A part's rows (COPY text format), after checking that its lines match its count."""
    raw = raw_object(s3, bucket, part)
    assert raw.count(b"\n") == part.rows, part.key
    return [line.split("\t") for line in raw.decode().split("\n")[:-1]]


def check_objects(s3, bucket: str, manifest: ManifestV2) -> None:
    """Every object is under the stem, matches the manifest, and nothing else is there."""
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert listed == {o.key for o in manifest.objects()} | {manifest.manifest_key}
    for stored in (manifest.schema_archive, manifest.data_archive):
        raw_object(s3, bucket, stored)
    for part in manifest.parts:
        part_rows(s3, bucket, part)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def database_url(pg, dbname: str) -> str:
    return pg.url(BACKUP_ROLE, BACKUP_PASSWORD, dbname)


def clone_database(pg, template: str) -> str:
    """A fresh copy of ``template`` (a file copy: fast, whatever its size)."""
    name = f"db_{secrets.token_hex(5)}"
    pg.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return database_url(pg, name)


def _tool_env(url: str) -> dict[str, str]:
    return ConnectionInfo.from_url(url).libpq_env()


def _run(argv: list[str], url: str, stdin: bytes | None = None) -> None:
    result = subprocess.run(argv, input=stdin, capture_output=True, env=_tool_env(url), check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")


def restore_by_hand(pg, s3, bucket: str, manifest: ManifestV2, *, encoding: str = "UTF8") -> str:
    """Restore a format-2 backup into a new database with pg_restore and psql; its URL."""
    name = f"restored_{secrets.token_hex(5)}"
    pg.psql(f'CREATE DATABASE "{name}" TEMPLATE template0')
    url = database_url(pg, name)
    pg_restore = str(find_tool("pg_restore", manifest.server_version_num // 10000).path)
    psql = str(find_tool("psql", manifest.server_version_num // 10000).path)
    with tempfile.TemporaryDirectory() as tmp:
        schema = Path(tmp, "schema.dump")
        data = Path(tmp, "data.dump")
        schema.write_bytes(raw_object(s3, bucket, manifest.schema_archive))
        data.write_bytes(raw_object(s3, bucket, manifest.data_archive))
        restore = [pg_restore, "--exit-on-error", "--no-owner", "-d", name]
        _run([*restore, "--section=pre-data", str(schema)], url)
        _run([*restore, str(data)], url)
        for part in manifest.parts:
            columns = f" ({', '.join(map(quote_ident, part.columns))})" if part.columns else ""
            copy = f"COPY {qualified(part.schema_name, part.table)}{columns} FROM STDIN"
            _run(
                [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", name,
                 "-c", f"SET client_encoding = '{encoding}'", "-c", copy],
                url, stdin=raw_object(s3, bucket, part),
            )  # fmt: skip
        _run([*restore, "--section=post-data", str(schema)], url)
    return url


def data_archive_toc(s3, bucket: str, manifest: ManifestV2) -> list[str]:
    """The TABLE DATA entries of the remaining-data archive: 'schema table' each."""
    pg_restore = str(find_tool("pg_restore", manifest.server_version_num // 10000).path)
    with tempfile.NamedTemporaryFile(suffix=".dump") as file:
        file.write(raw_object(s3, bucket, manifest.data_archive))
        file.flush()
        listing = subprocess.run(
            [pg_restore, "-l", file.name], capture_output=True, text=True, check=True
        ).stdout
    entries = []
    for line in listing.splitlines():
        if " TABLE DATA " in line and not line.startswith(";"):
            # "123; 0 16390 TABLE DATA schema table owner"
            entries.append(line.split(" TABLE DATA ", 1)[1].rsplit(" ", 1)[0])
    return entries


def wait_until(condition: Callable[[], object], what: str, *, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.02)


def children(pid: int, name: str) -> list[int]:
    """Live processes whose parent is ``pid`` and whose command line starts with ``name``
    (a killed child not reaped yet is a zombie: not alive, not listed)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
            argv0 = (stat.parent / "cmdline").read_bytes().split(b"\0", 1)[0].decode()
        except (OSError, IndexError, ValueError):
            continue
        if int(parent) == pid and state != "Z" and Path(argv0).name == name:
            found.append(int(stat.parent.name))
    return found


def cmdline(pid: int) -> str:
    return (Path("/proc", str(pid), "cmdline")).read_bytes().replace(b"\0", b" ").decode()


class HeldUploads:
    """A proxy rule that holds UploadPart requests of chosen objects until released.

    While an upload is held its stream cannot go on: zstd stops reading, the
    child's pipe fills, and the child (psql mid-COPY, holding its lock, or
    pg_dump) blocks. A deterministic window, whatever the machine's speed.
    """

    def __init__(self, holds: Callable[[str], bool]) -> None:
        self._holds = holds
        self._arrived: set[str] = set()
        self._changed = threading.Condition()
        self.released = threading.Event()

    def __call__(self, method: str, path: str) -> bool:
        if method == "PUT" and "partNumber=" in path and not self.released.is_set():
            key = path.split("?", 1)[0]
            if self._holds(key):
                with self._changed:
                    self._arrived.add(key)
                    self._changed.notify_all()
                self.released.wait(90)
        return False

    def wait_for(self, count: int, *, seconds: float = 90) -> None:
        """Until uploads of ``count`` different objects are held."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._arrived) >= count, seconds):
                pytest.fail(f"only {len(self._arrived)} of {count} uploads were ever held")

    def release(self) -> None:
        self.released.set()


def copy_parts(key: str) -> bool:
    return ".part-" in key


def data_archive(key: str) -> bool:
    return key.endswith(".data.dump.zst")


def sessions(conn: psycopg.Connection, dbname: str, application: str) -> list[tuple]:
    """(pid, state, query) of the sessions of ``application`` on ``dbname``."""
    return conn.execute(
        "SELECT pid, state, query FROM pg_stat_activity"
        " WHERE datname = %s AND application_name = %s",
        (dbname, application),
    ).fetchall()


def lock_waiters(conn: psycopg.Connection, table: str, application: str) -> int:
    """Sessions of ``application`` waiting for a lock on ``table``."""
    row = conn.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.relation = %s::regclass AND NOT l.granted AND a.application_name = %s",
        (table, application),
    ).fetchone()
    return row[0] if row else 0
