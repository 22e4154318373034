"""Connection limits: a run's jobs fit the sessions the server, the role and the
database leave free, and a run that cannot fit one job says so before it starts.

Each test has a role of its own (not a superuser: superusers pass role and database
limits), so the sessions counted against its limit are the test's alone.
"""

from __future__ import annotations

import json
import secrets

import psycopg
import pytest

from pgautodumper.scratch import ThrowawayPostgres
from tests.conftest import create_database

# Independent of the other modules' state: alongside the rest (tests/background.py).
pytestmark = pytest.mark.background

PASSWORD = f"limited-{secrets.token_hex(6)}"
STREAMED = 1024 * 1024
SQL = """
CREATE TABLE big (id int PRIMARY KEY, note text);
INSERT INTO big SELECT g, repeat('n', 300) FROM generate_series(1, 20000) g;
CREATE INDEX big_note ON big (note);
CREATE TABLE small (id int);
INSERT INTO small VALUES (1), (2);
"""
COUNTS = "SELECT (SELECT count(*) FROM big), (SELECT count(*) FROM small)"


@pytest.fixture
def limited(pg: ThrowawayPostgres):
    """A login role with CONNECTION LIMIT n, that may read everything; its URL for a db."""
    made: list[str] = []

    def make(limit: int) -> str:
        role = f"limited_{secrets.token_hex(4)}"
        pg.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}' CONNECTION LIMIT {limit}; "
                f"GRANT pg_read_all_data TO {role}")  # fmt: skip
        made.append(role)
        return role

    yield make
    for role in made:  # its target databases hold what it restored: they go first
        owned = pg.psql(f"SELECT datname FROM pg_database WHERE datdba = '{role}'::regrole")
        for dbname in owned.split():
            pg.psql(f'DROP DATABASE "{dbname}" WITH (FORCE)')
        pg.psql(f"DROP ROLE {role}")


def _url(pg: ThrowawayPostgres, role: str, database_url: str) -> str:
    return pg.url(role, PASSWORD, database_url.rsplit("/", 1)[1])


def _backup(cli, url: str, bucket: str):
    return cli("backup", "--database-url", url, "--bucket", bucket, "--name", "limits",
               "--jobs", "4", "--stream-threshold-bytes", str(STREAMED), "--json")  # fmt: skip


def _restore(cli, bucket: str, key: str, url: str):
    return cli("restore", "--bucket", bucket, "--key", key, "--database-url", url,
               "--jobs", "4", "--no-owner")  # fmt: skip


def _target(pg: ThrowawayPostgres, role: str) -> str:
    url = create_database(pg)
    pg.psql(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" OWNER TO {role}')
    return _url(pg, role, url)


def test_jobs_shrink_to_the_role_limit_and_the_run_still_completes(
    cli, pg, make_database, bucket, limited
):
    source = make_database(SQL)
    role = limited(5)  # the leader, two pg_dumps: two COPY streams fit, not four
    result = _backup(cli, _url(pg, role, source), bucket)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["jobs"] == 2
    assert f"role {role}'s CONNECTION LIMIT 5" in result.stderr

    # The lock watch, the remaining-data archive, and two sessions a loader: one fits.
    target = _target(pg, role)
    restored = _restore(cli, bucket, manifest["manifest_key"], target)
    assert restored.returncode == 0, restored.stderr
    assert "by 1 loader(s)" in restored.stderr
    with psycopg.connect(source) as a, psycopg.connect(target) as b:
        assert a.execute(COUNTS).fetchone() == b.execute(COUNTS).fetchone()
        assert (
            b.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'big'").fetchone()[0] == 2
        )


def test_too_few_sessions_for_one_job_is_named_before_anything_starts(
    cli, pg, make_database, bucket, limited, s3
):
    source = make_database(SQL)
    role = limited(3)  # the leader and two pg_dumps: no COPY stream fits
    refused = _backup(cli, _url(pg, role, source), bucket)
    assert refused.returncode == 25, refused.stderr
    assert f"role {role}'s CONNECTION LIMIT 3" in refused.stderr
    assert "nothing was started" in refused.stderr and "Traceback" not in refused.stderr
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0

    # A restore with two sessions free: one loader, the indexes after the data.
    stored = _backup(cli, source, bucket)
    assert stored.returncode == 0, stored.stderr
    key = json.loads(stored.stdout)["manifest_key"]
    target = _target(pg, role)
    restored = _restore(cli, bucket, key, target)
    assert restored.returncode == 0, restored.stderr
    assert "every index is built after the data" in restored.stderr
    with psycopg.connect(source) as a, psycopg.connect(target) as b:
        assert a.execute(COUNTS).fetchone() == b.execute(COUNTS).fetchone()

    # The database's limit counts too; a session refused outright is named, not "unreachable".
    dbname = target.rsplit("/", 1)[1]
    pg.psql(f'ALTER DATABASE "{dbname}" CONNECTION LIMIT 1')
    with psycopg.connect(target):  # the only session the database allows
        refused = _restore(cli, bucket, key, target)
    assert refused.returncode == 25, refused.stderr
    assert "too many connections" in refused.stderr and "security groups" not in refused.stderr
