"""Peak memory of a format-2 backup: bounded by the documented formula, flat in database size.

The peak RSS is the backup process's own (``os.wait4`` on the CLI child; its
pg_dump and psql children are separate processes), measured for a small
database and a bigger one with many more tables, hence many more parts.
The bound (parallel_backup's docstring) counts buffers of running streams
only: a stream that ended must hold nothing while its upload awaits completion.
"""

from __future__ import annotations

import base64
import os
import secrets

import psycopg
import pytest

from pgautodumper import storage
from pgautodumper.parallel_backup import PART_IN_FLIGHT
from tests.integration.test_format2_backup_support import (
    THRESHOLD,
    MiB,
    backup_argv,
    database_url,
    manifest_of,
)
from tests.peak_rss import measured

# Databases of up to 200 MB, each made and backed up once: off the parent's longest path.
pytestmark = pytest.mark.background

JOBS = 2
LIMIT = 160 * MiB  # at --jobs 2 (the acceptance limit)
# Two runs of one backup differ by a few MiB (allocator, thread timing); a backup
# that kept the buffers of its ended streams would grow by 5-10 MiB per part.
NOISE = 16 * MiB
ROW_BYTES = 350  # of COPY text; random base64, which zstd keeps at about 75%


def documented_bound(jobs: int) -> int:
    """parallel_backup's docstring: the interpreter, plus per running stream (jobs parts and
    the two archives) PART_IN_FLIGHT + 1 part buffers and about 3 MiB of zstd and reads."""
    per_stream = (PART_IN_FLIGHT + 1) * storage.MIN_PART_SIZE + 3 * MiB
    return 80 * MiB + (jobs + 2) * per_stream


def make_tables(pg, tables: int, megabytes: int) -> str:
    """A database of ``tables`` tables of random (hardly compressible) text, about
    ``megabytes`` of COPY text in all; its URL."""
    rows = megabytes * 1_000_000 // ROW_BYTES // tables
    name = f"f2_mem_{tables}_{secrets.token_hex(4)}"
    pg.psql(f'CREATE DATABASE "{name}" TEMPLATE template0')
    url = database_url(pg, name)
    with psycopg.connect(url) as conn:
        for number in range(tables):
            conn.execute(f"CREATE TABLE t{number:03d} (id int PRIMARY KEY, payload text)")
            payloads = base64.b64encode(os.urandom(258 * rows)).decode()
            with conn.cursor().copy(f"COPY t{number:03d} (id, payload) FROM STDIN") as copy:
                copy.write(
                    "".join(f"{i}\t{payloads[i * 344 : (i + 1) * 344]}\n" for i in range(rows))
                )
            conn.commit()
    return url


def peak_rss(url: str, bucket: str) -> tuple[int, int]:
    """(peak RSS in bytes, number of COPY parts) of one ``pgautodumper backup``."""
    argv = backup_argv(
        url, bucket, "--stream-threshold-bytes", str(THRESHOLD), "--jobs", str(JOBS),
        name=f"mem{secrets.token_hex(3)}",
    )  # fmt: skip
    peak, code, result = measured(
        argv[1:], capture_output=True, text=True, timeout=300, check=False
    )
    assert code == 0, result.stderr
    return peak, len(manifest_of(result.stdout).parts)


def check_flat(pg, bucket: str, small: tuple[int, int], big: tuple[int, int]) -> None:
    """(tables, megabytes) of the small and the big database."""
    small_rss, small_parts = peak_rss(make_tables(pg, *small), bucket)
    big_rss, big_parts = peak_rss(make_tables(pg, *big), bucket)
    report = (
        f"peak RSS at --jobs {JOBS}: {small_rss / MiB:.0f} MiB for {small[1]} MB in "
        f"{small[0]} tables ({small_parts} parts), {big_rss / MiB:.0f} MiB for {big[1]} MB "
        f"in {big[0]} tables ({big_parts} parts); documented bound "
        f"{documented_bound(JOBS) / MiB:.0f} MiB"
    )
    print(report)
    assert big_parts >= big[0] > small_parts, report
    assert max(small_rss, big_rss) <= documented_bound(JOBS) <= LIMIT, report
    assert big_rss <= small_rss + NOISE, report


def test_peak_memory_is_bounded_and_flat(pg, bucket):
    """16 MB in 2 tables (8 parts) against 40 MB in 24 tables (24 parts)."""
    check_flat(pg, bucket, (2, 16), (24, 40))


@pytest.mark.slow
def test_peak_memory_is_bounded_and_flat_at_200_mb(pg, bucket):
    """20 MB in 2 tables (8 parts) against 200 MB in 25 tables (25 parts)."""
    check_flat(pg, bucket, (2, 20), (25, 200))
