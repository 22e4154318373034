"""Helpers for the format-2 restore, partial restore and export tests."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import psycopg
import pytest

from pgautodumper.scratch import ThrowawayPostgres
from tests.conftest import BACKUP_PASSWORD, BACKUP_ROLE, run_cli
from tests.pgcompare import fingerprint

DATA = Path(__file__).parent.parent / "data"
THRESHOLD = str(1024 * 1024)  # tables of a few MiB stream, in several parts

# No contrib extension of PostgreSQL 15 has a configuration table
# (pg_extension_config_dump), and extensions live in the server's sharedir: the
# tests install this one there (and remove it if they put it there).
EXTENSION = "pgad_fixture"
_EXTENSION_FILES = {
    f"{EXTENSION}.control": (
        "comment = 'pgautodumper tests: an extension with a configuration table'\n"
        "default_version = '1.0'\nrelocatable = false\n"
    ),
    f"{EXTENSION}--1.0.sql": (
        "CREATE TABLE pgad_fixture_config (key text PRIMARY KEY, value text,"
        " user_row boolean NOT NULL DEFAULT true);\n"
        "INSERT INTO pgad_fixture_config VALUES ('builtin', 'shipped with the extension', false);\n"
        "SELECT pg_catalog.pg_extension_config_dump('pgad_fixture_config', 'WHERE user_row');\n"
    ),
}

# Creates it in a database, with a row of the user's in its configuration table.
EXTENSION_SQL = f"""
CREATE EXTENSION {EXTENSION};
INSERT INTO pgad_fixture_config VALUES ('mine', 'set by the user', true);
"""


@contextmanager
def fixture_extension(pg: ThrowawayPostgres) -> Iterator[None]:
    sharedir = subprocess.run(
        [str(pg.bin_dir / "pg_config"), "--sharedir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    folder = Path(sharedir) / "extension"
    if not os.access(folder, os.W_OK):
        pytest.skip(f"cannot install the test extension into {folder} (not writable)")
    written = []
    for name, text in _EXTENSION_FILES.items():
        path = folder / name
        if not path.exists():
            path.write_text(text)
            written.append(path)
    try:
        yield
    finally:
        for path in written:
            path.unlink(missing_ok=True)


class Databases:
    """Fresh databases, dropped at the end: some hold objects the backup role owns, which
    would keep the next session (on the same server) from recreating that role."""

    def __init__(self, pg: ThrowawayPostgres) -> None:
        self.pg = pg
        self.names: list[str] = []

    def create(self, sql: str = "") -> str:
        """A fresh database (filled by ``sql``); its URL for the backup role."""
        dbname = f"db_{secrets.token_hex(5)}"
        self.pg.psql(f'CREATE DATABASE "{dbname}" TEMPLATE template0')
        self.names.append(dbname)
        if sql:
            self.pg.psql(sql, dbname=dbname)
        return self.pg.url(BACKUP_ROLE, BACKUP_PASSWORD, dbname)

    def drop_all(self) -> None:
        for name in self.names:
            self.pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def databases(pg: ThrowawayPostgres) -> Iterator[Databases]:
    created = Databases(pg)
    try:
        yield created
    finally:
        created.drop_all()


def create_bucket() -> str:
    name = f"pgad-test-{secrets.token_hex(6)}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def backup(
    url: str, bucket: str, name: str, *extra: str, env: dict[str, str] | None = None
) -> dict:
    result = run_cli(
        "backup", "--database-url", url, "--bucket", bucket, "--name", name, "--json",
        "--stream-threshold-bytes", THRESHOLD, "--jobs", "2", *extra, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert BACKUP_PASSWORD not in result.stdout + result.stderr
    return json.loads(result.stdout)


def schema_key(manifest: dict) -> str:
    """The key ``--key`` takes for a backup of either format."""
    return (
        manifest["schema_archive"]["key"]
        if manifest["format_version"] == 2
        else manifest["dump_key"]
    )


# Hash partitions on an enum column: their hash codes depend on enum OIDs, which no
# restore keeps (pg_dump loads them through the root): rows may change partition.
_ENUM_HASH_LEAVES = """
SELECT l.relname, r.relname FROM pg_partitioned_table pt
 CROSS JOIN LATERAL pg_partition_tree(pt.partrelid) p
  JOIN pg_class l ON l.oid = p.relid JOIN pg_class r ON r.oid = pt.partrelid
 WHERE p.isleaf
   AND (SELECT c.oid FROM pg_opclass c JOIN pg_am a ON a.oid = c.opcmethod
         WHERE c.opcname = 'enum_ops' AND a.amname = 'hash') = ANY (pt.partclass)
"""


def contents(url: str) -> dict[str, object]:
    """:func:`fingerprint`, with partitions loaded via their root compared through it."""
    result = fingerprint(url)
    with psycopg.connect(url, autocommit=True) as conn:
        for leaf, root in conn.execute(_ENUM_HASH_LEAVES).fetchall():
            result.pop(f"table public.{leaf}", None)
            result[f"rows via root public.{root}"] = conn.execute(
                f"SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {root} t"
            ).fetchone()
    return result


def differences(expected: dict, actual: dict) -> dict[str, tuple]:
    keys = set(expected) | set(actual)
    return {
        k: (expected.get(k), actual.get(k))
        for k in sorted(keys)
        if expected.get(k) != actual.get(k)
    }
