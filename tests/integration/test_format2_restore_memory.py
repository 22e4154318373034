"""Peak memory of a format-2 restore: bounded by parallel_restore's documented formula,
whatever the size of the parts (they stream: none is ever held whole).

The peak RSS is the restore process's own (``os.wait4`` on the CLI child, started
through a small launcher so that it does not inherit pytest's high-water mark);
pg_restore and the server are separate processes.
"""

from __future__ import annotations

import base64
import os
import subprocess

import psycopg

from tests.integration.format2 import backup, create_bucket, schema_key
from tests.peak_rss import measured

MiB = 1024 * 1024
JOBS = 2
LIMIT = 160 * MiB  # at --jobs 2 (the acceptance limit)
# parallel_restore's docstring: 85 MiB + (jobs + 1) * (2 MiB + zstd window + ~1 MiB), the
# window 0.5 MiB at the default level; plus what two runs differ by (allocator, threads).
BOUND = 85 * MiB + (JOBS + 1) * 4 * MiB + 16 * MiB


def _fill(url: str, megabytes: int) -> None:
    """Two tables of random (hardly compressible) text: parts of several MiB each."""
    rows = megabytes * MiB // 2 // 350
    with psycopg.connect(url) as conn:
        for table in ("a", "b"):
            conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, payload text)")
            payloads = base64.b64encode(os.urandom(258 * rows)).decode()
            with conn.cursor().copy(f"COPY {table} (id, payload) FROM STDIN") as copy:
                copy.write(
                    "".join(f"{i}\t{payloads[i * 344 : (i + 1) * 344]}\n" for i in range(rows))
                )
            conn.commit()


def test_restore_peak_memory_stays_within_the_documented_bound(dbs):
    source = dbs.create()
    _fill(source, 64)
    bucket = create_bucket()
    manifest = backup(source, bucket, "memory")
    assert max(p["stored_bytes"] for p in manifest["parts"]) > 4 * MiB
    target = dbs.create()

    peak, code, _ = measured(
        ["-m", "pgautodumper", "restore", "--bucket", bucket, "--key", schema_key(manifest),
         "--database-url", target, "--jobs", str(JOBS)],
        check=True, timeout=300, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    assert code == 0
    assert peak < min(BOUND, LIMIT), f"peak RSS {peak // MiB} MiB"
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM b").fetchone()[0] == manifest["tables"][1]["rows"]
