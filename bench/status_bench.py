"""`make bench` (part): `pgautodumper status` over a bucket with thousands of backups.

Fills a moto server with BENCH_STATUS_BACKUPS backups (default 5,000) over
BENCH_STATUS_NAMES names, each a dump, a manifest and every seventh a verdict,
then times the real CLI (`status --json`) over BENCH_ROUNDS rounds (median).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import boto3

from pgautodumper.local.moto_server import MotoServer
from tests.lambdas.conftest import put_backup

BACKUPS = int(os.environ.get("BENCH_STATUS_BACKUPS", "5000"))
NAMES = int(os.environ.get("BENCH_STATUS_NAMES", "20"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def main() -> None:
    with MotoServer() as moto:
        env = {**os.environ, "AWS_ENDPOINT_URL": moto.endpoint, "AWS_ACCESS_KEY_ID": "x",
               "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
        os.environ.update(env)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="status-bench")
        now = datetime.now(UTC)

        def put(i: int) -> None:
            name, age = f"db{i % NAMES:03d}", timedelta(hours=6 * (i // NAMES))
            verdict = "passed" if i % 7 == 0 else None
            put_backup(s3, "status-bench", name, now - age, size=1000, verdict=verdict)

        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, range(BACKUPS)))
        objects = sum(
            page.get("KeyCount", 0)
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket="status-bench")
        )
        print(f"filled: {BACKUPS} backups, {objects} objects in {time.monotonic() - started:.0f} s")
        times = []
        for _ in range(ROUNDS):
            started = time.monotonic()
            result = subprocess.run(
                [sys.executable, "-m", "pgautodumper", "status", "--bucket", "status-bench",
                 "--json"], capture_output=True, text=True, env=env, check=False,
            )  # fmt: skip
            times.append(time.monotonic() - started)
            assert result.returncode in (0, 1), result.stderr
        print(
            f"| pgautodumper status, {BACKUPS} backups of {NAMES} names ({objects} objects) "
            f"| {statistics.median(times):.2f} s (median of {ROUNDS}) |"
        )


if __name__ == "__main__":
    main()
