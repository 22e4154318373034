"""A database's encoding and locale travel with its backup.

The test server, like the verify task's scratch server, is initdb'd UTF8 with
the C locale, where 'é' is not alphabetic. The source here is UTF8 with a
UTF-8 LC_CTYPE and an ICU default collation, as RDS databases are: its rows
pass a ``[[:alpha:]]`` check only in a database like it. Verify creates its
scratch database with the source's encoding and locale; a restore into a
LATIN1 database, which has no room for '日本' and lacks the UTF8 collations,
names both encodings.
"""

from __future__ import annotations

import json
import logging
import secrets

import psycopg
import pytest

from pgautodumper.database_locale import DatabaseLocale, create_database, read
from pgautodumper.scratch import ThrowawayPostgres
from tests.conftest import BACKUP_PASSWORD, BACKUP_ROLE, verify_leftovers
from tests.pgcompare import fingerprint

# Independent of the other modules' state: alongside the rest (tests/background.py).
pytestmark = pytest.mark.background

SQL = """
CREATE TABLE words (id int PRIMARY KEY, code varchar(3) {collate},
                    name text CHECK (name ~ '^[[:alpha:]]+$'));
INSERT INTO words SELECT g, 'été', 'Éloïse' FROM generate_series(1, 100) g;
CREATE TABLE far (id int PRIMARY KEY, note text);
INSERT INTO far VALUES (1, '日本');
"""


def _database(server: ThrowawayPostgres, options: str, sql: str = "") -> str:
    dbname = f"db_{secrets.token_hex(5)}"
    server.psql(f'CREATE DATABASE "{dbname}" TEMPLATE template0 {options}')
    if sql:
        server.psql(sql, dbname=dbname)
    return server.url(BACKUP_ROLE, BACKUP_PASSWORD, dbname)


UTF8_ICU = "ENCODING 'UTF8' LOCALE 'C.utf8' LOCALE_PROVIDER icu ICU_LOCALE 'de-DE'"


@pytest.mark.parametrize("backup_format", ["2", "1"])
def test_verify_creates_its_scratch_like_the_source(cli, pg, bucket, backup_format):
    # Format 2 with a collation initdb made for UTF8 databases only, which the scratch
    # server's own database lacks, and a LATIN1 target too; format 1 without it, so that
    # rows reach the LATIN1 target and fail to convert.
    collate = 'COLLATE pg_catalog."C.utf8"' if backup_format == "2" else ""
    source = _database(pg, UTF8_ICU, SQL.format(collate=collate))
    backup = cli("backup", "--database-url", source, "--bucket", bucket, "--name", "utf8",
                 "--format", backup_format, "--json")  # fmt: skip
    assert backup.returncode == 0, backup.stderr
    manifest = json.loads(backup.stdout)
    assert manifest["database_locale"] == {
        "encoding": "UTF8", "lc_collate": "C.utf8", "lc_ctype": "C.utf8",
        "provider": "icu", "locale": "de-DE",
    }  # fmt: skip
    if backup_format == "2":
        assert manifest["collations"] == ["C.utf8"]

    scratch = pg.url(BACKUP_ROLE, BACKUP_PASSWORD, "postgres")
    verified = cli("verify", "--bucket", bucket, "--key", manifest["manifest_key"],
                   "--scratch-url", scratch, "--json")  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["verdict"] == "passed"
    assert "created with" not in verified.stderr  # the scratch has the source's locale
    assert verify_leftovers(pg, manifest) == []

    # LATIN1 has neither the collation nor room for '日本': the encodings are named.
    latin1 = _database(pg, "ENCODING 'LATIN1' LOCALE 'C'")
    refused = cli("restore", "--bucket", bucket, "--key", manifest["manifest_key"],
                  "--database-url", latin1)  # fmt: skip
    assert refused.returncode == 26, refused.stderr
    assert "is a LATIN1 database" in refused.stderr
    if backup_format == "2":
        assert "pg_catalog.C.utf8" in refused.stderr and "nothing was restored" in refused.stderr
    else:
        assert "the backup's database is UTF8, the restore target" in refused.stderr
        assert "has no room for characters of the backup's UTF8 rows" in refused.stderr
    assert "ENCODING 'UTF8'" in refused.stderr and "Traceback" not in refused.stderr

    like_the_source = _database(pg, "ENCODING 'UTF8' LOCALE 'C.utf8'")
    restored = cli("restore", "--bucket", bucket, "--key", manifest["manifest_key"],
                   "--database-url", like_the_source)  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert "the backup's database is" not in restored.stderr
    assert fingerprint(like_the_source) == fingerprint(source)


def _created(server: ThrowawayPostgres, wanted: DatabaseLocale) -> DatabaseLocale:
    """What a database created for ``wanted`` is, as a backup of it would record."""
    name = f"db_{secrets.token_hex(5)}"
    admin_url = server.url(BACKUP_ROLE, BACKUP_PASSWORD, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        create_database(admin, name, wanted)
        with psycopg.connect(server.url(BACKUP_ROLE, BACKUP_PASSWORD, name)) as created:
            found = read(created, created.info.server_version)
        admin.execute(f'DROP DATABASE "{name}"')
    return found


def test_a_locale_the_server_lacks_falls_back_to_the_encoding_with_a_warning(pg, caplog):
    unknown = DatabaseLocale(encoding="UTF8", lc_collate="xx_XX.UTF-8", lc_ctype="xx_XX.UTF-8")
    with caplog.at_level(logging.WARNING):
        assert _created(pg, unknown) == DatabaseLocale(
            encoding="UTF8", lc_collate="C.UTF-8", lc_ctype="C.UTF-8"
        )
    assert "the server has no locale xx_XX.UTF-8" in caplog.text
    latin1 = unknown.model_copy(update={"encoding": "LATIN1"})
    assert _created(pg, latin1) == DatabaseLocale(encoding="LATIN1", lc_collate="C", lc_ctype="C")


def test_the_builtin_provider_of_18_is_kept_where_the_server_has_it(pg, pg18):
    builtin = DatabaseLocale(
        encoding="UTF8", lc_collate="C.utf8", lc_ctype="C.utf8", provider="builtin",
        locale="C.UTF-8",
    )  # fmt: skip
    assert _created(pg18, builtin) == builtin
    # 15 has no builtin provider: the same libc locale, the default provider.
    assert _created(pg, builtin) == builtin.model_copy(update={"provider": "libc", "locale": None})


def test_a_sql_ascii_backup_restored_into_utf8_is_warned_about(cli, pg, bucket):
    """SQL_ASCII holds bytes unchecked, and COPY stores them unchecked in a UTF8 database:
    the restore succeeds, and only the warning before it tells."""
    source = _database(pg, "ENCODING 'SQL_ASCII' LOCALE 'C'", r"""
        CREATE TABLE legacy (id int, note text);
        INSERT INTO legacy VALUES (1, convert_from('\xe9e8ff'::bytea, 'SQL_ASCII'));
    """)  # fmt: skip
    backup = cli("backup", "--database-url", source, "--bucket", bucket, "--name", "legacy",
                 "--json")  # fmt: skip
    assert backup.returncode == 0, backup.stderr
    manifest = json.loads(backup.stdout)
    assert manifest["database_locale"]["encoding"] == "SQL_ASCII"
    utf8 = _database(pg, "ENCODING 'UTF8' LOCALE 'C'")
    restored = cli("restore", "--bucket", bucket, "--key", manifest["manifest_key"],
                   "--database-url", utf8)  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert "SQL_ASCII, which holds bytes unchecked" in restored.stderr
    assert "ENCODING 'SQL_ASCII' LOCALE 'C'" in restored.stderr
