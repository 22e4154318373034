"""`pgautodumper preflight` and `pgautodumper prune`: the Lambdas' checks from a laptop."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta

from pgautodumper.scratch import free_port
from tests.conftest import BACKUP_PASSWORD
from tests.lambdas.conftest import put_backup


def run(leaks, cli, *args: str, **kw):
    result = cli(*args, **kw)
    leaks.seen += [result.stdout, result.stderr]  # not argv: a URL there carries the password
    return result


def test_preflight_of_a_healthy_database_with_bucket(leaks, cli, make_database, bucket, s3):
    url = make_database("CREATE TABLE t (id int); INSERT INTO t VALUES (1);")
    result = run(
        leaks, cli, "preflight", "--database-url", url, "--bucket", bucket, "--prefix", "p",
        "--name", "app", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["server_version_num"] // 10000 == 15
    assert report["pg_dump_major"] == 15
    assert report["bucket_checked"] == f"s3://{bucket}/p/app/"
    assert "pg_dump (15." in report["local_pg_dump"]
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket), "the probe was deleted"


def test_preflight_names_each_unreadable_object_and_exits_13(leaks, cli, pg, make_database):
    url = make_database("CREATE TABLE open_t (id int); CREATE TABLE closed_t (id int);")
    dbname = url.rsplit("/", 1)[-1]
    role = f"cli_{secrets.token_hex(3)}"
    password = leaks.forbid(f"cli-{secrets.token_hex(10)}")
    pg.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    pg.psql(f"GRANT SELECT ON open_t TO {role}", dbname=dbname)

    result = run(leaks, cli, "preflight", "--database-url", pg.url(role, password, dbname))

    assert result.returncode == 13
    [line] = result.stderr.strip().splitlines()
    assert "table public.closed_t" in line and "open_t" not in line
    assert line.startswith("pgautodumper: error: role")


def test_preflight_of_an_unreachable_host_is_one_line_exit_11(leaks, cli):
    url = f"postgresql://u:{BACKUP_PASSWORD}@127.0.0.1:{free_port()}/db"
    result = run(leaks, cli, "preflight", "--database-url", url)
    assert result.returncode == 11
    [line] = result.stderr.strip().splitlines()
    assert "cannot reach 127.0.0.1" in line
    assert "Traceback" not in result.stderr


def test_preflight_from_a_secret(leaks, cli, make_database, db_secret):
    url = make_database()
    result = run(leaks, cli, "preflight", "--secret-id", db_secret(url.rsplit("/", 1)[-1]))
    # The secret fixture has no sslmode; libpq's default 'prefer' falls back to plain TCP.
    assert result.returncode == 0, result.stderr
    assert "readable   every schema, table, sequence and large object" in result.stdout


def test_prune_dry_run_prints_the_plan_and_deletes_nothing(leaks, cli, s3, bucket):
    now = datetime.now(UTC).replace(microsecond=0)
    backups = [put_backup(s3, bucket, "app", now - timedelta(days=d)) for d in range(4)]
    before = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}

    args = ("prune", "--bucket", bucket, "--name", "app", "--keep-last", "2", "--dry-run")
    text = run(leaks, cli, *args)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.strip().splitlines()
    assert lines[0].startswith("keep") and backups[0].stem in lines[0] and "last 1/2" in lines[0]
    assert lines[3].startswith("would delete") and "matches no keep rule" in lines[3]

    as_json = json.loads(run(leaks, cli, *args, "--json").stdout)
    assert as_json["result"]["dry_run"] is True
    assert as_json["result"]["deleted"] == [b.stem for b in backups[2:]]
    assert [row["action"] for row in as_json["plan"]] == ["keep", "keep", "delete", "delete"]
    assert {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]} == before

    done = run(leaks, cli, "prune", "--bucket", bucket, "--name", "app", "--keep-last", "2")
    assert done.returncode == 0 and "deleted" in done.stdout
    remaining = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert remaining == {k for b in backups[:2] for k in (b.dump, b.manifest)}


def test_prune_requires_keep_last(leaks, cli, bucket):
    result = run(leaks, cli, "prune", "--bucket", bucket, "--name", "app")
    assert result.returncode == 2 and "--keep-last" in result.stderr
