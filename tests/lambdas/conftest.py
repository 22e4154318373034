"""Fixtures for the Lambda handlers: a fake Lambda context, moto resources, a Slack server,
and a scan of everything a test printed, logged or returned for the passwords."""

from __future__ import annotations

import json
import logging
import secrets
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from pgautodumper import layout
from pgautodumper.contract import BackupRequest, PreflightResult, TaskInput, TaskSizing
from pgautodumper.manifest import Compression, Manifest, TableRows
from tests.conftest import BACKUP_PASSWORD, BACKUP_ROLE

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/pgautodumper-test"


@dataclass
class FakeContext:
    """The attributes of a LambdaContext that powertools reads."""

    function_name: str = "pgautodumper-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:pgautodumper-test"
    aws_request_id: str = field(default_factory=lambda: secrets.token_hex(16))
    log_group_name: str = "/aws/lambda/pgautodumper-test"
    log_stream_name: str = "2024/01/01/[$LATEST]abc"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class LeakScan:
    """Collects every output of a test; at teardown none may contain a password."""

    def __init__(self, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture):
        self.capsys = capsys
        self.caplog = caplog
        self.secrets = [BACKUP_PASSWORD]
        self.seen: list[str] = []

    def forbid(self, value: str) -> str:
        self.secrets.append(value)
        return value

    def read(self) -> str:
        """What the test printed (logs, EMF) since the last read."""
        captured = self.capsys.readouterr()
        text = captured.out + captured.err
        self.seen.append(text)
        return text

    def invoke(
        self, handler: Callable[[dict, Any], dict], event: dict[str, Any], *, scan_event=True
    ) -> dict:
        """Call a handler as Lambda would; record its event, its result or its error.

        ``scan_event=False`` for an event that carries a password on purpose (a leaky
        upstream cause): then only what the handler makes of it is scanned.
        """
        if scan_event:
            self.seen.append(json.dumps(event))
        try:
            result = handler(event, FakeContext())
        except Exception as exc:
            self.seen.append(f"{type(exc).__name__}: {exc}")
            raise
        self.seen.append(json.dumps(result))
        return result

    def check(self) -> None:
        self.read()
        everything = "\n".join([*self.seen, self.caplog.text])
        for secret in self.secrets:
            assert secret not in everything, "a password leaked into an output"


class _CurrentStdout:
    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture(autouse=True)
def leaks(capsys, caplog) -> Iterator[LeakScan]:
    caplog.set_level(logging.DEBUG, logger="pgautodumper")
    # The powertools handler kept the sys.stdout of import time; make it write to whatever
    # sys.stdout is when a line is logged (capsys swaps it only for the test's call phase).
    # Assigned, not setStream(): that would flush a stream an earlier test closed.
    handlers = [
        h for h in logging.getLogger("pgautodumper").handlers if type(h) is logging.StreamHandler
    ]
    saved = [h.stream for h in handlers]
    for handler in handlers:
        handler.stream = _CurrentStdout()
    scan = LeakScan(capsys, caplog)
    yield scan
    scan.check()
    for handler, stream in zip(handlers, saved, strict=True):
        handler.stream = stream


@pytest.fixture
def execution() -> Callable[[], str]:
    """Start a (forever RUNNING, in moto) execution; returns its ARN."""
    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"pgad-{secrets.token_hex(4)}",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        roleArn=ROLE_ARN,
    )["stateMachineArn"]

    def start() -> str:
        return sfn.start_execution(stateMachineArn=machine)["executionArn"]

    return start


REQUEST_FIELDS = set(BackupRequest.model_fields)


def execution_document(**fields: Any) -> dict[str, Any]:
    """An execution document: BackupRequest fields go under ``request``, results beside it."""
    request = {k: v for k, v in fields.items() if k in REQUEST_FIELDS}
    return {"request": request, **{k: v for k, v in fields.items() if k not in REQUEST_FIELDS}}


def preflight_result(keys: layout.BackupKeys, bucket: str, **over: Any) -> dict[str, Any]:
    """What Preflight would have written for ``keys`` (its TaskInput included)."""
    result = PreflightResult(
        server_version="15.0",
        server_version_num=150000,
        database_size_bytes=10_000,
        is_replica=False,
        lock_key=layout.lock_key(keys.prefix, keys.name),
        sizing=TaskSizing(),
        task=TaskInput(
            bucket=bucket,
            keys=keys,
            run_id=keys.run_id,
            pg_dump_major=15,
            part_size_bytes=16 * 1024**2,
        ),
    )
    return {**result.model_dump(mode="json"), **over}


def execution_context(arn: str, start: datetime | None = None) -> dict[str, str]:
    started = start or datetime.now(UTC)
    return {"id": arn, "name": arn.rsplit(":", 1)[-1], "start_time": started.isoformat()}


@pytest.fixture
def make_secret() -> Callable[..., str]:
    sm = boto3.client("secretsmanager")

    def make(document: dict[str, Any] | str) -> str:
        value = document if isinstance(document, str) else json.dumps(document)
        return sm.create_secret(Name=f"pgad/{secrets.token_hex(6)}", SecretString=value)["ARN"]

    return make


@pytest.fixture
def db_secret(pg, make_secret) -> Callable[..., str]:
    """A secret in the RDS format for a database on the test server."""

    def make(dbname: str, *, user: str = BACKUP_ROLE, password: str = BACKUP_PASSWORD, **kw):
        return make_secret(
            {
                "engine": "postgres",
                "host": "127.0.0.1",
                "port": kw.get("port", pg.port),
                "username": user,
                "password": password,
                "dbname": dbname,
            }
        )

    return make


# -- stored backups --------------------------------------------------------------------


def put_backup(
    s3,
    bucket: str,
    name: str,
    started_at: datetime,
    *,
    prefix: str = "",
    size: int = 1000,
    complete: bool = True,
    verdict: str | None = None,
    tables: int = 2,
    run_id: str | None = None,
    **put_args: Any,
) -> layout.BackupKeys:
    """A backup as the dump task leaves it: dump, then manifest, then maybe a verdict."""
    keys = layout.backup_keys(prefix, name, started_at, run_id or secrets.token_hex(4))
    s3.put_object(Bucket=bucket, Key=keys.dump, Body=b"\0" * size, **put_args)
    if complete:
        s3.put_object(
            Bucket=bucket, Key=keys.manifest, Body=make_manifest(keys, size, tables), **put_args
        )
    if verdict:
        body = json.dumps(
            {
                "dump_key": keys.dump,
                "verdict": verdict,
                "checked_at": started_at.isoformat(),
                "restore_seconds": 1.0,
                "sha256_ok": verdict == "passed",
                "tables": [],
                "tool_version": "test",
            }
        )
        s3.put_object(Bucket=bucket, Key=keys.verified, Body=body.encode(), **put_args)
    return keys


def make_manifest(keys: layout.BackupKeys, size: int, table_count: int = 2, **over: Any) -> bytes:
    manifest = Manifest(
        name=keys.name,
        database="app",
        run_id=keys.run_id,
        dump_key=keys.dump,
        manifest_key=keys.manifest,
        stored_bytes=size,
        raw_bytes=size * 4,
        parts=1,
        part_size_bytes=16 * 1024 * 1024,
        sha256="0" * 64,
        compression=Compression(level=3, threads=1),
        pg_dump_version="15.0",
        server_version="15.0",
        server_version_num=150000,
        snapshot="00000003-0000001B-1",
        started_at=keys.started_at,
        finished_at=keys.started_at + timedelta(seconds=8),
        duration_seconds=8.0,
        tool_version="test",
        tables=[TableRows(schema="public", table=f"t{i}", rows=10 * i) for i in range(table_count)],
    )
    document = json.loads(manifest.to_json())
    document.update(over)
    return json.dumps(document).encode()


# -- a Slack incoming webhook --------------------------------------------------------------


class SlackServer:
    """An HTTP server on 127.0.0.1 answering like Slack ('ok'), with 500, or never."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests.append({"path": self.path, "body": json.loads(body)})
                if server.mode == "hang":
                    server.release.wait(30)
                status = 500 if server.mode == "error" else 200
                try:
                    self.send_response(status)
                    self.end_headers()
                    self.wfile.write(b"ok" if status == 200 else b"internal_error")
                except OSError:
                    pass  # the client gave up (timeout)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = (
            f"http://127.0.0.1:{self.httpd.server_address[1]}/services/T0/B0/{secrets.token_hex(8)}"
        )
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def slack() -> Iterator[Callable[[str], SlackServer]]:
    servers: list[SlackServer] = []

    def start(mode: str = "ok") -> SlackServer:
        servers.append(SlackServer(mode))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@dataclass
class Topic:
    arn: str
    queue_url: str

    def messages(self, wait: int = 2) -> list[dict[str, Any]]:
        """SNS deliveries (subject + message) that reached the subscribed queue."""
        sqs = boto3.client("sqs")
        found = []
        while True:
            response = sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait
            )
            batch = response.get("Messages", [])
            if not batch:
                return found
            found += [json.loads(m["Body"]) for m in batch]
            wait = 0


@pytest.fixture
def topic() -> Topic:
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    arn = sns.create_topic(Name=f"pgad-{secrets.token_hex(4)}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"pgad-{secrets.token_hex(4)}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    return Topic(arn=arn, queue_url=queue_url)


def emf_records(output: str) -> list[dict[str, Any]]:
    """The CloudWatch EMF documents among printed lines."""
    records = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            records.append(json.loads(line))
    return records


def log_records(output: str) -> list[dict[str, Any]]:
    records = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' not in line:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records
