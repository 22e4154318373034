"""The password never appears in output, logs, manifests, errors or child argv."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from pgautodumper.pgtools import installed
from tests.conftest import BACKUP_PASSWORD


def _recording_wrappers(directory: Path, log: Path) -> None:
    """pg_dump/pg_restore/psql on PATH that record their argv, then run the real tool."""
    for name in ("pg_dump", "pg_restore", "psql"):
        real = installed(name)[-1].path
        wrapper = directory / name
        wrapper.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\nexec "{real}" "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)


def test_password_stays_out_of_argv_output_and_objects(
    cli, make_database, pg, bucket, s3, tmp_path
):
    log = tmp_path / "argv.log"
    _recording_wrappers(tmp_path, log)
    env = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    source = make_database(
        "CREATE TABLE secrets_table AS SELECT 'not a secret ' || g AS v"
        " FROM generate_series(1, 40000) g"
    )
    target = make_database()
    scratch = pg.url("pgad_backup", BACKUP_PASSWORD, "postgres")

    latest = ("--bucket", bucket, "--latest", "--name", "s")
    runs = [
        # 2 MiB of rows over a 1 MiB threshold: psql workers copy it, and their argv is logged
        cli(
            "backup",
            "--database-url",
            source,
            "--bucket",
            bucket,
            "--name",
            "s",
            "--stream-threshold-bytes",
            str(1024 * 1024),
            env=env,
        ),
        cli("restore", *latest, "--database-url", target, env=env),
        cli("verify", *latest, "--scratch-url", scratch, env=env),
        cli("list", "--bucket", bucket, "--name", "s", "--all", "--json", env=env),
        # the target is no longer empty: this one fails, and --debug adds the traceback
        cli("--debug", "restore", *latest, "--database-url", target, env=env),
    ]

    assert [r.returncode for r in runs] == [0, 0, 0, 0, 14]
    argv = log.read_text()
    lines = argv.splitlines()
    for tool, flag in (("pg_dump", "--format=custom"), ("pg_restore", "--exit-on-error")):
        assert any(line.startswith(tool) and flag in line for line in lines), argv
    assert any(line.startswith("psql") for line in lines), "format 2 copies with psql"
    assert BACKUP_PASSWORD not in argv
    for run in runs:
        assert BACKUP_PASSWORD not in run.stdout + run.stderr
    for obj in s3.list_objects_v2(Bucket=bucket)["Contents"]:
        body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        assert BACKUP_PASSWORD.encode() not in body, obj["Key"]
    manifest_keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
        if o["Key"].endswith(".manifest.json")
    ]
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_keys[0])["Body"].read())
    assert "password" not in json.dumps(manifest).lower()
