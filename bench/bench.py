"""`make bench`: pgautodumper against what people run today, side by side, backup and restore.

One database: pgbench (BENCH_SCALE, default 40) with foreign keys, plus
BENCH_JSONB_ROWS (default 500,000) wide jsonb documents with an index. Every
round runs every contender once; ratios are taken against the baseline of the
same round (backup: `pg_dump -Fc -Z0 > /dev/null`, the single-stream source
limit; restore: `pg_restore -j2` from a local file), and the tables give
medians of BENCH_ROUNDS (default 3). Peak RSS is the measured process's own
(os.wait4); the moto server, which joins parts in memory, is not counted.
Restores go into a fresh empty database each time, created (and the previous
one dropped, and a CHECKPOINT run) outside the timing.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from pgautodumper.local.moto_server import MotoServer
from pgautodumper.pgtools import find_tool
from pgautodumper.scratch import ThrowawayPostgres

ROLE, PASSWORD = "bench", "bench-password"
MiB = 1024 * 1024
BUCKET = "bench"

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
CREATE INDEX wide_docs_customer ON wide_docs ((doc ->> 'customer'));
"""


@dataclass
class Result:
    seconds: float
    rss: int
    stored: int | None = None
    phases: dict[str, float] = field(default_factory=dict)


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
            f"bench: {shlex.join(argv[:6])} failed: {process.stderr.read().decode()[-1500:]}"
        )
    return seconds, usage.ru_maxrss * 1024, out


def shell(command: str, env: dict[str, str]) -> tuple[float, int]:
    seconds, rss, _ = timed(["bash", "-o", "pipefail", "-c", command], env)
    return seconds, rss


def make_database(pg: ThrowawayPostgres, name: str, scale: int, jsonb_rows: int) -> str:
    pg.psql(f"CREATE DATABASE {name}")
    url = pg.url(ROLE, PASSWORD, name)
    pgbench = find_tool("pgbench", 0).path
    subprocess.run(
        [str(pgbench), "-i", "-q", "--foreign-keys", "-s", str(scale), "-d", url],
        check=True,
        capture_output=True,
    )
    pg.psql(JSONB_SQL.format(rows=jsonb_rows), dbname=name)
    pg.psql("VACUUM ANALYZE", dbname=name)
    return url


class Bench:
    def __init__(self, pg: ThrowawayPostgres, url: str, workdir: Path) -> None:
        self.pg, self.url, self.workdir = pg, url, workdir
        self.env = {**os.environ, "DB": url, "PGPASSWORD": PASSWORD}
        self.pg_dump = str(find_tool("pg_dump", 15).path)
        self.pg_restore = str(find_tool("pg_restore", 15).path)
        self.s3 = boto3.client("s3")
        self.local_file = workdir / "local.dump"
        self._targets = 0

    def stored(self, keys: list[str]) -> int:
        return sum(self.s3.head_object(Bucket=BUCKET, Key=k)["ContentLength"] for k in keys)

    def cli(self, *args: str) -> tuple[float, int, dict]:
        argv = [sys.executable, "-m", "pgautodumper", "-q", *args, "--json"]
        seconds, rss, out = timed(argv, self.env, subprocess.PIPE)
        return seconds, rss, json.loads(out)

    # -- backup -------------------------------------------------------------------

    def backups(self) -> dict[str, Callable[[int], Result]]:
        def source_limit(_: int) -> Result:
            return Result(*shell(f'{self.pg_dump} -Fc -Z0 -d "$DB" > /dev/null', self.env))

        def directory_j2(n: int) -> Result:
            folder = self.workdir / f"dir-{n}"
            result = Result(*shell(f'{self.pg_dump} -Fd -j2 -Z0 -f {folder} -d "$DB"', self.env))
            result.stored = sum(p.stat().st_size for p in folder.iterdir())
            shutil.rmtree(folder)
            return result

        def aws_cli(n: int) -> Result:
            key = f"awscli/{n}.dump"
            command = f'{self.pg_dump} -Fc -d "$DB" | aws s3 cp - s3://{BUCKET}/{key}'
            return Result(*shell(command, self.env), stored=self.stored([key]))

        def ours(jobs: int) -> Callable[[int], Result]:
            def run(n: int) -> Result:
                seconds, rss, manifest = self.cli(
                    "backup", "--database-url", self.url, "--bucket", BUCKET,
                    "--name", f"ours-j{jobs}", "--run-id", f"r{n}", "--jobs", str(jobs),
                )  # fmt: skip
                return Result(seconds, rss, manifest["stored_bytes"])

            return run

        return {
            "pg_dump -Fc -Z0 > /dev/null (source limit)": source_limit,
            "pg_dump -Fd -j2 -Z0 to a local directory": directory_j2,
            "pg_dump -Fc | aws s3 cp -": aws_cli,
            "pgautodumper backup --jobs 1 -> moto S3": ours(1),
            "pgautodumper backup --jobs 2 -> moto S3": ours(2),
        }

    # -- restore ------------------------------------------------------------------

    def fresh_target(self) -> str:
        """An empty database, after the previous contender's is dropped and its writes are
        flushed: every restore starts from the same state."""
        if self._targets:
            self.pg.psql(f"DROP DATABASE IF EXISTS target_{self._targets}")
        self._targets += 1
        name = f"target_{self._targets}"
        self.pg.psql(f"CREATE DATABASE {name} TEMPLATE template0")
        self.pg.psql("CHECKPOINT")
        return name

    def restores(self) -> dict[str, Callable[[int], Result]]:
        def local(jobs: int) -> Callable[[int], Result]:
            def run(_: int) -> Result:
                target = self.fresh_target()
                command = f"{self.pg_restore} -j{jobs} -d {self.pg.url(ROLE, PASSWORD, target)} "
                return Result(*shell(command + str(self.local_file), self.env))

            return run

        def aws_cli(_: int) -> Result:
            target = self.pg.url(ROLE, PASSWORD, self.fresh_target())
            command = f"aws s3 cp s3://{BUCKET}/awscli/0.dump - | {self.pg_restore} -d {target}"
            return Result(*shell(command, self.env))

        def ours(jobs: int) -> Callable[[int], Result]:
            def run(_: int) -> Result:
                target = self.pg.url(ROLE, PASSWORD, self.fresh_target())
                seconds, rss, report = self.cli(
                    "restore", "--bucket", BUCKET, "--latest", "--name", "ours-j2",
                    "--database-url", target, "--jobs", str(jobs),
                )  # fmt: skip
                return Result(seconds, rss, phases=report["phases"])

            return run

        return {
            "pg_restore -j2 from a local file": local(2),
            "pg_restore from a local file": local(1),
            "aws s3 cp - | pg_restore": aws_cli,
            "pgautodumper restore --jobs 1 <- moto S3": ours(1),
            "pgautodumper restore --jobs 2 <- moto S3": ours(2),
        }


def rounds(runs: dict[str, Callable[[int], Result]], count: int) -> dict[str, list[Result]]:
    results: dict[str, list[Result]] = {name: [] for name in runs}
    for n in range(count):
        for name, run in runs.items():
            results[name].append(run(n))
            print(f"  round {n + 1}: {name}: {results[name][-1].seconds:.2f}s", file=sys.stderr)
    return results


def table(title: str, results: dict[str, list[Result]], raw: int) -> dict[str, float]:
    """Print the medians as Markdown; returns each contender's median ratio to the first."""
    baseline = [r.seconds for r in next(iter(results.values()))]
    print(f"\n{title}\n")
    print(
        "| contender | wall s | ratio | pre-data / data / post-data s | peak RSS MiB | stored MiB |"
    )
    print("|---|---:|---:|---|---:|---:|")
    ratios = {}
    for name, rows in results.items():
        ratio = statistics.median(r.seconds / b for r, b in zip(rows, baseline, strict=True))
        ratios[name] = ratio
        seconds = statistics.median(r.seconds for r in rows)
        rss = statistics.median(r.rss for r in rows) / MiB
        phases = (
            " / ".join(
                f"{statistics.median(r.phases[p] for r in rows):.1f}" for p in rows[0].phases
            )
            if rows[0].phases
            else "-"
        )
        stored = rows[-1].stored
        stored_text = "-" if stored is None else f"{stored / MiB:.1f} ({stored / raw:.1%})"
        label = name.replace("|", "\\|")
        print(f"| {label} | {seconds:.2f} | {ratio:.2f}x | {phases} | {rss:.0f} | {stored_text} |")
    return ratios


def main() -> None:
    scale = int(os.environ.get("BENCH_SCALE", "40"))
    jsonb_rows = int(os.environ.get("BENCH_JSONB_ROWS", "500000"))
    count = int(os.environ.get("BENCH_ROUNDS", "3"))
    with ThrowawayPostgres() as pg, MotoServer() as moto, tempfile.TemporaryDirectory() as tmp:
        pg.psql(f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
        os.environ.update(
            AWS_ENDPOINT_URL=moto.endpoint,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
        )
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        print(f"bench: pgbench scale {scale} + {jsonb_rows} jsonb rows", file=sys.stderr)
        url = make_database(pg, "bench_src", scale, jsonb_rows)
        bench = Bench(pg, url, Path(tmp))
        shell(f'{bench.pg_dump} -Fc -Z0 -d "$DB" | wc -c > {tmp}/raw', bench.env)
        raw = int((Path(tmp) / "raw").read_text())
        backups = rounds(bench.backups(), count)
        shell(f'{bench.pg_dump} -Fc -d "$DB" -f {bench.local_file}', bench.env)
        restores = rounds(bench.restores(), count)
        print(
            f"\n## pgautodumper bench: pgbench scale {scale} (foreign keys) + {jsonb_rows} "
            f"indexed jsonb rows, {raw / MiB:.0f} MiB raw dump, {os.cpu_count()} CPUs, "
            f"{count} rounds (medians)"
        )
        backup_ratios = table("### Backup (ratio to the source limit)", backups, raw)
        restore_ratios = table("### Restore (ratio to pg_restore -j2 from a local file)", restores,
                               raw)  # fmt: skip
        ours_backup = backup_ratios["pgautodumper backup --jobs 2 -> moto S3"]
        aws_backup = backup_ratios["pg_dump -Fc | aws s3 cp -"]
        ours_restore = restore_ratios["pgautodumper restore --jobs 2 <- moto S3"]
        peak = max(
            statistics.median(r.rss for r in rows) / MiB
            for name, rows in {**backups, **restores}.items()
            if name.startswith("pgautodumper")
        )
        print("\n### Targets\n")
        print(f"- backup --jobs 2 within 1.10x of the source limit: {ours_backup:.2f}x")
        print(
            f"- backup at least 2x faster than pg_dump | aws s3 cp: {aws_backup / ours_backup:.2f}x"
        )
        print(
            f"- restore --jobs 2 within 1.05x of pg_restore -j2 (local file): {ours_restore:.2f}x"
        )
        print(f"- peak RSS under 160 MiB: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
