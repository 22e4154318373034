"""One local run: a database, the emulated account, one execution, its report.

``pgautodumper local-run`` and the path tests both go through :func:`run_in`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgautodumper.local import mock_config
from pgautodumper.local.ecs_runner import LOCAL_IMAGE
from pgautodumper.local.emulator import Emulator, ExecutionResult, Transition
from pgautodumper.local.resources import LocalStack, notifications, provision
from pgautodumper.scratch import ThrowawayPostgres

MOCK_CONFIG = Path(__file__).resolve().parents[2] / "state_machine" / "MockConfigFile.json"
SAMPLE_NAME = "sample"
SAMPLE_ROLE = "pgad_sample"
# A few tables, a few thousand rows, some types: enough for a real dump and verify.
SAMPLE_SQL = """
CREATE TABLE customers (id bigserial PRIMARY KEY, email text UNIQUE NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(), profile jsonb);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint REFERENCES customers(id),
  amount numeric(12,2) NOT NULL, placed_on date NOT NULL, tags text[]);
CREATE TABLE events (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), payload bytea, at timestamp);
INSERT INTO customers (email, profile)
  SELECT 'user' || g || '@example.com', jsonb_build_object('n', g) FROM generate_series(1, 1000) g;
INSERT INTO orders (customer_id, amount, placed_on, tags)
  SELECT 1 + g % 1000, (g % 500) + 0.99, date '2024-01-01' + g % 365, ARRAY['a', 'b']
  FROM generate_series(1, 3000) g;
INSERT INTO events (payload, at)
  SELECT decode(md5(g::text), 'hex'), timestamp '2024-01-01' + g * interval '1 minute'
  FROM generate_series(1, 1000) g;
"""


@dataclass
class LocalRunResult:
    execution: ExecutionResult
    stack: LocalStack
    notifications: list[dict[str, Any]]
    objects: dict[str, int]
    task_logs: list[str] = field(default_factory=list)
    seconds: float = 0.0


@contextmanager
def sample_database(password: str) -> Iterator[str]:
    """A throwaway PostgreSQL with the sample database; yields its TCP URL."""
    with ThrowawayPostgres() as server:
        server.psql(f"CREATE ROLE {SAMPLE_ROLE} LOGIN SUPERUSER PASSWORD '{password}'")
        server.psql(f"CREATE DATABASE {SAMPLE_NAME} OWNER {SAMPLE_ROLE}")
        server.psql(SAMPLE_SQL, dbname=SAMPLE_NAME)
        yield server.url(SAMPLE_ROLE, password, SAMPLE_NAME)


# What a local run asks for unless told otherwise: the throwaway server has no TLS,
# and a local run is for watching, so it verifies and reports success too.
LOCAL_REQUEST_DEFAULTS: dict[str, Any] = {
    "name": SAMPLE_NAME,
    "verify": True,
    "sslmode": "disable",
    "notify_on_success": True,
}


def local_request(stack: LocalStack, request: dict[str, Any] | None) -> dict[str, Any]:
    """A BackupRequest document: the runtime's secret and bucket unless the request names them."""
    merged = {**LOCAL_REQUEST_DEFAULTS, **(request or {})}
    merged.setdefault("secret_arn", stack.secret_arn)
    merged.setdefault("bucket", stack.bucket)
    return merged


def run_in(
    emu: Emulator,
    database_url: str,
    request: dict[str, Any] | None = None,
    *,
    scenario: str | None = None,
    on_event: Callable[[Transition], None] | None = None,
    before_start: Callable[[LocalStack], None] | None = None,
    task_environment: dict[str, str] | None = None,
    lambda_environment: dict[str, str] | None = None,
    image: str = LOCAL_IMAGE,
) -> LocalRunResult:
    """Provision in ``emu``, run one execution of ``request`` (BackupRequest fields; see
    :data:`LOCAL_REQUEST_DEFAULTS`), and collect the evidence."""
    started = time.monotonic()
    mock_config.load_mock_config(MOCK_CONFIG)
    stack = provision(
        emu,
        database_url,
        task_environment=task_environment,
        lambda_environment=lambda_environment,
        image=image,
    )
    if before_start:
        before_start(stack)
    assert emu.tasks is not None
    first_task = len(emu.tasks.tasks)
    result = emu.run_execution(
        stack.state_machine_arn, local_request(stack, request), scenario=scenario, on_event=on_event
    )
    s3 = emu.client("s3")
    objects = {
        item["Key"]: item["Size"]
        for item in s3.list_objects_v2(Bucket=stack.bucket).get("Contents", [])
    }
    return LocalRunResult(
        execution=result,
        stack=stack,
        notifications=notifications(emu, stack.queue_url),
        objects=objects,
        task_logs=[task.log() for task in emu.tasks.tasks[first_task:]],
        seconds=time.monotonic() - started,
    )
