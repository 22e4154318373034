"""A backup role the server will not let read everything: named by the true cause.

pg_dump, and every stream of ours, reads with row_security off, so a table whose
policies apply to the role raises "query would be affected by row-level security
policy" (SQLSTATE 42501, the same as a missing GRANT). The fix differs
(BYPASSRLS, not GRANT SELECT), so the error does too: ``RowSecurityError``.
"""

from __future__ import annotations

import secrets

import pytest

from tests.integration.test_errors import assert_one_line_error

# Big enough to stream in parts at a 1 MiB threshold; owned by another role.
SCHEMA = """
CREATE TABLE public.orders AS
  SELECT g AS id, 'tenant' || g % 7 AS tenant, repeat('o', 100) AS pad
    FROM generate_series(1, 30000) g;
CREATE TABLE public.notes (id int, body text);
INSERT INTO public.notes VALUES (1, 'small: pg_dump reads it');
"""


@pytest.fixture
def reader(pg, make_database):
    """(database URL for a non-superuser reader, its role, the database's name)."""
    suffix = secrets.token_hex(3)
    owner, role, password = f"app_{suffix}", f"reader_{suffix}", f"rd-{secrets.token_hex(10)}"
    pg.psql(
        f"CREATE ROLE {owner} NOLOGIN; "
        f"CREATE ROLE {role} LOGIN PASSWORD '{password}' IN ROLE pg_read_all_data"
    )
    admin_url = make_database(SCHEMA)
    dbname = admin_url.rsplit("/", 1)[1]
    pg.psql(
        f"ALTER TABLE public.orders OWNER TO {owner}; ALTER TABLE public.notes OWNER TO {owner}",
        dbname=dbname,
    )
    return pg.url(role, password, dbname), role, dbname


def _backup(cli, url: str, bucket: str, *extra: str):
    return cli(
        "backup", "--database-url", url, "--bucket", bucket, "--name", "rls",
        "--stream-threshold-bytes", str(1024 * 1024), "--jobs", "2", *extra,
    )  # fmt: skip


def _nothing_stored(s3, bucket: str) -> None:
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize(
    ("table", "format_"),
    [("orders", "2"), ("notes", "2"), ("orders", "1")],
    ids=["streamed-table", "table-for-pg_dump", "format-1"],
)
def test_row_security_that_applies_to_the_role_is_named_not_a_missing_grant(
    cli, pg, reader, bucket, s3, table, format_
):
    url, role, dbname = reader
    pg.psql(
        f"ALTER TABLE public.{table} ENABLE ROW LEVEL SECURITY; "
        f"CREATE POLICY own ON public.{table} USING (current_user = 'nobody')",
        dbname=dbname,
    )

    result = _backup(cli, url, bucket, "--format", format_)

    assert_one_line_error(result, 17, "row-level security", table, f"ALTER ROLE {role} BYPASSRLS")
    assert "grant SELECT" not in result.stderr
    _nothing_stored(s3, bucket)

    preflight = cli("preflight", "--database-url", url, "--bucket", bucket)
    assert_one_line_error(preflight, 17, f"table public.{table}", "BYPASSRLS")

    pg.psql(f"ALTER ROLE {role} BYPASSRLS")
    assert _backup(cli, url, bucket, "--format", format_).returncode == 0
    assert cli("preflight", "--database-url", url, "--bucket", bucket).returncode == 0


def test_the_owner_reads_its_own_table_unless_row_security_is_forced(cli, pg, reader, bucket, s3):
    url, role, dbname = reader
    pg.psql(
        f"ALTER TABLE public.orders OWNER TO {role}; "
        "ALTER TABLE public.orders ENABLE ROW LEVEL SECURITY; "
        "CREATE POLICY own ON public.orders USING (current_user = 'nobody')",
        dbname=dbname,
    )
    assert cli("preflight", "--database-url", url, "--bucket", bucket).returncode == 0
    assert _backup(cli, url, bucket).returncode == 0

    pg.psql("ALTER TABLE public.orders FORCE ROW LEVEL SECURITY", dbname=dbname)
    preflight = cli("preflight", "--database-url", url, "--bucket", bucket)
    assert_one_line_error(preflight, 17, "table public.orders", "BYPASSRLS")


def test_a_table_the_role_may_not_select_names_the_grant(cli, pg, reader, bucket, s3):
    url, role, dbname = reader
    pg.psql(f"REVOKE pg_read_all_data FROM {role}", dbname=dbname)

    result = _backup(cli, url, bucket)

    assert_one_line_error(result, 13, "permission denied", f"grant SELECT on it to {role}")
    _nothing_stored(s3, bucket)
