"""A fresh PostgreSQL 16 server (the PyPI wheel pgserver ships one, plpgsql only).

- a PostgreSQL 15 backup restores into it as RDS's master user would: a
  CREATEROLE role, not a superuser, which from 16 holds ADMIN but not SET on
  the roles it creates, so it must join them to give them their objects;
- a backup of a 16 server takes pg_dump 16 (found on PATH), and restores and
  verifies there.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest

from pgautodumper.scratch import ThrowawayPostgres
from tests.integration.conftest import tools_of, wheel_bin_dir
from tests.integration.format2 import backup, contents, differences

# A server of its own: alongside the rest (tests/background.py).
pytestmark = pytest.mark.background

SUFFIX = secrets.token_hex(3)
OWNER, READER = f"owner16_{SUFFIX}", f"reader16_{SUFFIX}"

# Everything belongs to OWNER (created as it), nothing to the bootstrap superuser.
SCHEMA = f"""
SET ROLE {OWNER};
CREATE SCHEMA app;
CREATE TABLE app.orders AS
  SELECT g AS id, md5(g::text) AS tag, repeat('o', 80) AS pad FROM generate_series(1, 30000) g;
ALTER TABLE app.orders ADD PRIMARY KEY (id);
CREATE TABLE app.lines (order_id int REFERENCES app.orders, qty int);
INSERT INTO app.lines SELECT g, g % 5 FROM generate_series(1, 500) g;
CREATE SEQUENCE app.invoice_no;
SELECT setval('app.invoice_no', 4242);
GRANT USAGE ON SCHEMA app TO {READER};
GRANT SELECT ON app.orders TO {READER};
ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO {READER};
"""

_PRIVILEGES = """
SELECT c.relname, c.relowner::regrole::text, COALESCE(c.relacl::text, '')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'app' ORDER BY 1;
SELECT defaclrole::regrole::text, defaclacl::text FROM pg_default_acl ORDER BY 1;
SELECT nspowner::regrole::text, nspacl::text FROM pg_namespace WHERE nspname = 'app';
"""


@pytest.fixture(scope="module")
def pg16() -> Iterator[ThrowawayPostgres]:
    with ThrowawayPostgres(bin_dir=wheel_bin_dir("pgserver", "PostgreSQL 16")) as server:
        server.psql("CREATE ROLE admin16 LOGIN SUPERUSER PASSWORD 'admin16-pw'")
        server.psql("CREATE ROLE master LOGIN CREATEROLE CREATEDB PASSWORD 'master-pw'")
        yield server


def privileges(url: str) -> list[list[tuple]]:
    with psycopg.connect(url) as conn:
        return [conn.execute(q).fetchall() for q in _PRIVILEGES.strip().split(";\n")]


def test_a_15_backup_restores_into_a_new_16_server_by_a_role_that_is_not_a_superuser(
    pg, dbs, pg16, bucket_name, cli
):
    pg.psql(f"CREATE ROLE {OWNER} NOLOGIN; CREATE ROLE {READER} NOLOGIN")
    source = dbs.create()
    dbname = source.rsplit("/", 1)[1]
    pg.psql(f'GRANT CREATE ON DATABASE "{dbname}" TO {OWNER}')
    pg.psql(SCHEMA, dbname=dbname)
    backup(source, bucket_name, "to16")
    pg16.psql("CREATE DATABASE target OWNER master")
    target = pg16.url("master", "master-pw", "target")

    result = cli("restore", "--bucket", bucket_name, "--latest", "--name", "to16",
                 "--database-url", target, "--with-roles")  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert f"created role(s): {OWNER}, {READER}" in result.stdout
    assert privileges(target) == privileges(source)
    as_admin = pg16.url("admin16", "admin16-pw", "target")  # master may not read app now
    assert differences(contents(source), contents(as_admin)) == {}
    with psycopg.connect(pg16.admin_url) as conn:
        can_set = conn.execute("SELECT pg_has_role('master', %s, 'SET')", [OWNER]).fetchone()[0]
    assert not can_set, "it left the membership it took for the restore"


def test_a_16_server_is_dumped_by_pg_dump_16_restored_and_verified(pg16, bucket_name, cli):
    pg16.psql("CREATE DATABASE src16")
    pg16.psql(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS t FROM generate_series(1, 40000) g;"
        "CREATE TABLE small (id int PRIMARY KEY); INSERT INTO small VALUES (1), (2);"
        "CREATE SEQUENCE s; SELECT setval('s', 77);",
        dbname="src16",
    )
    source = pg16.url("admin16", "admin16-pw", "src16")
    on_path = tools_of(pg16)

    dumped = cli("backup", "--database-url", source, "--bucket", bucket_name, "--name", "from16",
                 "--stream-threshold-bytes", str(1024 * 1024), "--json", env=on_path)  # fmt: skip
    assert dumped.returncode == 0, dumped.stderr
    assert "pg_dump 16." in dumped.stderr

    pg16.psql("CREATE DATABASE restored16")
    target = pg16.url("admin16", "admin16-pw", "restored16")
    restored = cli("restore", "--bucket", bucket_name, "--latest", "--name", "from16",
                   "--database-url", target, env=on_path)  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert differences(contents(source), contents(target)) == {}

    verified = cli("verify", "--bucket", bucket_name, "--latest", "--name", "from16",
                   "--scratch-url", pg16.url("admin16", "admin16-pw", "postgres"),
                   env=on_path)  # fmt: skip
    assert verified.returncode == 0, verified.stderr
