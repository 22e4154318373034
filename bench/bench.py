"""`make bench`: pgautodumper against what people run today, side by side.

Each round runs every contender once against the same database; a contender's
ratio is its wall time over the baseline (`pg_dump -Fc -Z0 > /dev/null`, the
source limit) of the same round, and the report gives medians. Peak RSS is the
uploader process's own (os.wait4), the stored size what landed in S3.

Environment: BENCH_SCALE (pgbench scale, default 50), BENCH_JSONB_ROWS
(default 500000), BENCH_ROUNDS (default 3), BENCH_SMALL_SCALE (default 5, for
the flat-RSS check), BENCH_LEVEL (zstd level, default 1).
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import boto3

from pgautodumper.local.moto_server import MotoServer
from pgautodumper.pgtools import find_tool
from pgautodumper.scratch import ThrowawayPostgres
from tests.faults import faulty_proxy

ROLE, PASSWORD = "bench", "bench-password"
HERE = Path(__file__).parent
MiB = 1024 * 1024

JSONB_SQL = """
CREATE TABLE wide_docs (id bigint PRIMARY KEY, doc jsonb);
INSERT INTO wide_docs
SELECT g, jsonb_build_object(
    'id', g, 'customer', md5(g::text), 'tags', jsonb_build_array('a' || g % 17, 'b' || g % 13),
    'address', jsonb_build_object('street', g || ' Main St', 'city', 'City ' || g % 1000,
                                  'zip', lpad((g % 99999)::text, 5, '0')),
    'lines', (SELECT jsonb_agg(jsonb_build_object('sku', md5((g * i)::text), 'qty', i,
                                                  'price', (g * i) % 1000 / 7.0))
                FROM generate_series(1, 5) i),
    'note', repeat('lorem ipsum dolor ', 1 + g % 5))
  FROM generate_series(1, {rows}) g;
"""


class Result:
    def __init__(self, seconds: float, rss: int, stored: int | None) -> None:
        self.seconds, self.rss, self.stored = seconds, rss, stored


def timed(
    argv: list[str], env: dict[str, str], stdout: int | None = subprocess.DEVNULL
) -> tuple[float, int, str]:
    """Wall time and peak RSS (bytes) of one child process."""
    started = time.monotonic()
    process = subprocess.Popen(argv, env=env, stdout=stdout, stderr=subprocess.PIPE)
    out = process.stdout.read().decode() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(
            f"bench: {shlex.join(argv[:4])} failed: {process.stderr.read().decode()[-800:]}"
        )
    return seconds, usage.ru_maxrss * 1024, out


def make_database(pg: ThrowawayPostgres, name: str, scale: int, jsonb_rows: int) -> str:
    pg.psql(f"CREATE DATABASE {name}")
    url = pg.url(ROLE, PASSWORD, name)
    pgbench = find_tool("pgbench", 0).path
    subprocess.run(
        [str(pgbench), "-i", "-q", "-s", str(scale), "-d", url], check=True, capture_output=True
    )
    pg.psql(JSONB_SQL.format(rows=jsonb_rows), dbname=name)
    pg.psql("VACUUM ANALYZE", dbname=name)
    return url


def contenders(
    url: str, env: dict[str, str], bucket: str, level: int
) -> dict[str, Callable[[int], Result]]:
    pg_dump = str(find_tool("pg_dump", 15).path)
    python = sys.executable
    s3 = boto3.client("s3")

    def stored(key: str) -> int:
        return s3.head_object(Bucket=bucket, Key=key)["ContentLength"]

    def source_limit(_: int) -> Result:
        seconds, rss, _out = timed(["sh", "-c", f'{pg_dump} -Fc -Z0 -d "$DB" > /dev/null'], env)
        return Result(seconds, rss, None)

    last_stage: dict[str, Result] = {}

    def stage(_: int) -> Result:
        seconds, rss, out = timed(
            [python, str(HERE / "stage.py"), url, str(level)], env, subprocess.PIPE
        )
        report = json.loads(out)
        last_stage["inner"] = Result(report["seconds"], rss, report["stored"])
        return Result(seconds, rss, report["stored"])

    def stage_inner(_: int) -> Result:
        """The same run as `stage`, timed inside the process (no interpreter start)."""
        return last_stage["inner"]

    def ours(n: int) -> Result:
        argv = [
            python,
            "-m",
            "pgautodumper",
            "-q",
            "backup",
            "--database-url",
            url,
            "--bucket",
            bucket,
            "--name",
            "ours",
            "--run-id",
            f"r{n}",
            "--level",
            str(level),
            "--json",
        ]
        seconds, rss, out = timed(argv, env, subprocess.PIPE)
        return Result(seconds, rss, json.loads(out)["stored_bytes"])

    def aws_cli(n: int) -> Result:
        key = f"awscli/{n}.dump"
        seconds, rss, _ = timed(
            ["sh", "-c", f'{pg_dump} -Fc -d "$DB" | aws s3 cp - s3://{bucket}/{key}'], env
        )
        return Result(seconds, rss, stored(key))

    def upload_fileobj(n: int) -> Result:
        key = f"boto3/{n}.dump"
        script = (
            "import boto3, subprocess, sys\n"
            f"p = subprocess.Popen([{pg_dump!r}, '-Fc', '-d', {url!r}], stdout=subprocess.PIPE)\n"
            f"boto3.client('s3').upload_fileobj(p.stdout, {bucket!r}, {key!r})\n"
            "sys.exit(p.wait())\n"
        )
        seconds, rss, _ = timed([python, "-c", script], env)
        return Result(seconds, rss, stored(key))

    return {
        "pg_dump -Fc -Z0 > /dev/null (source limit)": source_limit,
        "dump+zstd+sha256 stage -> null sink": stage,
        "  the same stage, without interpreter start-up": stage_inner,
        "pgautodumper backup -> moto S3": ours,
        "pg_dump -Fc | aws s3 cp -": aws_cli,
        "boto3 upload_fileobj(pg_dump -Fc)": upload_fileobj,
    }


def run_rounds(
    runs: dict[str, Callable[[int], Result]], rounds: int
) -> dict[str, list[tuple[float, Result]]]:
    results: dict[str, list[tuple[float, Result]]] = {name: [] for name in runs}
    baseline_name = next(iter(runs))
    for n in range(rounds):
        baseline = None
        for name, run in runs.items():
            result = run(n)
            baseline = baseline or result.seconds
            results[name].append((result.seconds / baseline, result))
            print(f"  round {n + 1}: {name}: {result.seconds:.2f}s", file=sys.stderr, flush=True)
        assert results[baseline_name]
    return results


def main() -> None:
    scale = int(os.environ.get("BENCH_SCALE", "50"))
    small_scale = int(os.environ.get("BENCH_SMALL_SCALE", "5"))
    jsonb_rows = int(os.environ.get("BENCH_JSONB_ROWS", "500000"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    level = int(os.environ.get("BENCH_LEVEL", "1"))
    with ThrowawayPostgres() as pg, MotoServer() as moto:
        pg.psql(f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
        os.environ.update(
            AWS_ENDPOINT_URL=moto.endpoint,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
        )
        boto3.client("s3").create_bucket(Bucket="bench")
        print(f"bench: generating pgbench scale {scale} + {jsonb_rows} jsonb rows", file=sys.stderr)
        url = make_database(pg, "bench_big", scale, jsonb_rows)
        env = {**os.environ, "DB": url, "PGPASSWORD": PASSWORD}
        results = run_rounds(contenders(url, env, "bench", level), rounds)
        raw = json.loads(
            timed([sys.executable, str(HERE / "stage.py"), url, str(level)], env, subprocess.PIPE)[
                2
            ]
        )["raw"]

        print(
            f"\n## pgautodumper bench: pgbench scale {scale} + {jsonb_rows} jsonb rows, "
            f"{raw / MiB:.0f} MiB raw dump, zstd level {level}, {rounds} rounds (medians)\n"
        )
        print("| contender | wall s | ratio to source limit | peak RSS MiB | stored MiB |")
        print("|---|---:|---:|---:|---:|")
        for name, rows in results.items():
            ratio = statistics.median(r for r, _ in rows)
            seconds = statistics.median(res.seconds for _, res in rows)
            rss = statistics.median(res.rss for _, res in rows) / MiB
            stored = rows[-1][1].stored
            stored_text = "-" if stored is None else f"{stored / MiB:.1f} ({stored / raw:.1%})"
            label = name.replace("|", "\\|")  # a pipe in a name would split the cell
            print(f"| {label} | {seconds:.2f} | {ratio:.2f}x | {rss:.0f} | {stored_text} |")

        small = make_database(
            pg, "bench_small", small_scale, jsonb_rows // max(1, scale // small_scale)
        )
        print("\n| peak RSS of `pgautodumper backup` -> moto | MiB |\n|---|---:|")
        with faulty_proxy(moto.endpoint, part_delay=0.5) as slow_link:
            cases = [
                (f"small database (scale {small_scale})", small, moto.endpoint),
                (f"large database (scale {scale})", url, moto.endpoint),
                ("large database, slow link (+0.5 s per part)", url, slow_link),
            ]
            for n, (label, db, endpoint) in enumerate(cases):
                argv = [
                    sys.executable,
                    "-m",
                    "pgautodumper",
                    "-q",
                    "backup",
                    "--database-url",
                    db,
                    "--bucket",
                    "bench",
                    "--name",
                    f"rss-{n}",
                ]
                rss = timed(argv, {**env, "AWS_ENDPOINT_URL": endpoint})[1]
                print(f"| {label} | {rss / MiB:.0f} |")


if __name__ == "__main__":
    main()
